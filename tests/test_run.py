"""The whole project, end to end, on the demo data: what `kedro run` leaves in MLflow."""

from __future__ import annotations

import mlflow
import pytest
import yaml
from kedro.framework.session import KedroSession
from mlflow.models import get_model_info
from mlflow.tracking import MlflowClient

EXPERIMENT = "aisample-recommendation"
MODEL = f"{EXPERIMENT}-alsmodel"
SUBMODEL_METRICS = {
    "rmse", "mae", "r2", "explained_variance",
    "precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10",
}  # fmt: skip


def _run(project, pipeline=None, params=None):
    """`kedro run [--pipeline P] [--params ...]`, in this process."""
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        session.run(pipeline_names=[pipeline] if pipeline else None)


def _parents_and_children(client):
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time ASC"]
    )
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {
        p.info.run_id: [
            r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id
        ]
        for p in parents
    }
    return parents, children


@pytest.mark.e2e
def test_kedro_run_tracks_every_submodel_and_registers_a_champion(spark, project_copy):
    params = yaml.safe_load(
        (project_copy / "conf/base/parameters_data_science.yml").read_text()
    )
    grid_size = len(params["als"]["rank"]) * len(params["als"]["reg_param"])

    _run(project_copy)  # the default pipeline, default grid

    tracking_uri = f"sqlite:///{project_copy / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    parents, children = _parents_and_children(client)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    subruns = children[parent.info.run_id]
    assert len(subruns) == grid_size
    for run in subruns:
        assert SUBMODEL_METRICS <= set(run.data.metrics), run.info.run_name
        assert "validation_rmse" in run.data.metrics
        assert {"rank", "reg_param", "model_kind"} <= set(run.data.params)
        info = get_model_info(f"runs:/{run.info.run_id}/model")
        assert info.signature is not None
        assert [c.name for c in info.signature.inputs.inputs] == [
            "_user_id",
            "_item_id",
        ]

    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert int(champion.version) == 1
    assert champion.run_id == parent.info.run_id
    metrics = parent.data.metrics
    assert {
        "data.users",
        "data.sparsity",
        "bias_baseline.rmse",
        "popularity.ndcg_at_10",
    } <= set(metrics)
    # The planted structure of the demo data: biased ALS must beat the bias baseline.
    assert metrics["champion.rmse"] < metrics["bias_baseline.rmse"]
    assert champion.tags["beats_baseline.rmse"] == "true"
    # An explicit rating model ranks below popularity (as on the real data); the
    # run must say so rather than hide it.
    assert (
        champion.tags["beats_baseline.ndcg_at_10"]
        == str(
            metrics["champion.ndcg_at_10"] > metrics["popularity.ndcg_at_10"]
        ).lower()
    )

    # Implicit ALS tuned by cross-validation, switched by parameters alone.
    _run(
        project_copy,
        "data_science",
        {
            "als": {
                "implicit_prefs": True,
                "biased": False,
                "rank": [8],
                "reg_param": [0.1],
            },
            "tuning": {"method": "CrossValidator", "num_folds": 2},
        },
    )
    parents, children = _parents_and_children(client)
    assert len(parents) == 2
    implicit_run = client.get_run(parents[1].info.run_id)
    assert len(children[implicit_run.info.run_id]) == 1
    assert implicit_run.data.params["tuning.method"] == "CrossValidator"
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert int(champion.version) == 2
    implicit_metrics = implicit_run.data.metrics
    assert (
        implicit_metrics["champion.ndcg_at_10"]
        > implicit_metrics["popularity.ndcg_at_10"]
    )
    assert "champion.rmse" not in implicit_metrics  # no rating predictions to score

    # A failing run is marked FAILED and leaves the champion where it was.
    with pytest.raises(Exception, match="tuning.method is 'Bogus'"):
        _run(project_copy, "data_science", {"tuning": {"method": "Bogus"}})
    parents, _ = _parents_and_children(client)
    assert len(parents) == 3
    assert parents[2].info.status == "FAILED"
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) == 2
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 2
