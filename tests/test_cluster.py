"""`kedro run --env cluster` against a real standalone Spark cluster and MLflow
server: the run is started with the session (``tests/cluster.py``); this checks
what it left."""

from __future__ import annotations

import json
import urllib.request

import pytest
from deltalake import DeltaTable
from mlflow.tracking import MlflowClient

MODEL = "aisample-recommendation-recommender"
RATING_MODEL = "aisample-recommendation-rating"


@pytest.mark.e2e
@pytest.mark.slow
def test_cluster_env_runs_on_a_spark_cluster_and_an_mlflow_server(cluster_run):
    cluster, project = cluster_run.cluster, cluster_run.project
    result = cluster_run.result()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    # The work ran on the cluster: the master saw the application finish.
    with urllib.request.urlopen(f"{cluster['master_ui']}/json/") as response:  # noqa: S310
        master = json.load(response)
    assert [app["name"] for app in master["completedapps"]] == ["book-recommender"]

    # Runs and the registered model are on the MLflow server, not in a local file.
    assert not (project / "mlflow.db").exists()
    client = MlflowClient(
        tracking_uri=cluster["mlflow"], registry_uri=cluster["mlflow"]
    )
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert int(champion.version) == 1
    run = client.get_run(champion.run_id)
    parent = run.data.tags.get("mlflow.parentRunId", run.info.run_id)
    assert client.get_run(parent).info.status == "FINISHED"
    assert client.get_run(parent).data.metrics["scoring.users"] > 0
    # The item-based families were fitted and evaluated there too.
    candidates = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"
    )
    kinds = {c.data.params["model_kind"] for c in candidates}
    assert {"knn", "ease", "implicit"} <= kinds
    # What the MLflow UI shows, read through the server's REST API: one
    # registered model per kind, each described; each version linked from its
    # logged model, which carries its own champion's metrics only; nested runs
    # last at least the fit they logged.
    rating = client.get_model_version_by_alias(RATING_MODEL, "champion")
    own = {MODEL: "champion.", RATING_MODEL: "rating_champion."}
    for name, version in ((MODEL, champion), (RATING_MODEL, rating)):
        assert client.get_registered_model(name).description
        logged = client.get_logged_model(version.source.removeprefix("models:/"))
        links = json.loads(logged.tags["mlflow.modelVersions"])
        assert (name, str(version.version)) in {
            (link["name"], str(link["version"])) for link in links
        }
        keys = {metric.key for metric in logged.metrics}
        assert keys and all(key.startswith(own[name]) for key in keys), keys
    refitted = [c for c in candidates if "fit_seconds" in c.data.metrics]
    assert refitted
    for candidate in refitted:
        duration = (candidate.info.end_time - candidate.info.start_time) / 1000
        assert duration >= candidate.data.metrics["fit_seconds"], candidate.info

    # The Delta table: k books for every user, scored by that model version.
    table = DeltaTable(str(project / "data/07_model_output/user_recommendations"))
    recs = table.to_pandas()
    users = recs["User-ID"].nunique()
    assert users == client.get_run(parent).data.metrics["scoring.users"]
    assert len(recs) == 10 * users
    assert set(recs["model_version"]) == {1}
