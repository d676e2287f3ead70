"""The whole project, end to end, on the demo data: what `kedro run` leaves in MLflow."""

from __future__ import annotations

import json

import mlflow
import nbformat
import pandas as pd
import pytest
import yaml
from deltalake import DeltaTable
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.models import get_model_info
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient

from book_recommender.pipelines.reporting.nodes import plot_model_comparison
from tests.conftest import copy_project

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


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """A scratch copy of the project after one plain `kedro run` (the default pipeline)."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        bootstrap_project(project)
        _run(project)
        tracking_uri = f"sqlite:///{project / 'mlflow.db'}"
        mlflow.set_tracking_uri(tracking_uri)
        yield project, MlflowClient(tracking_uri=tracking_uri)


def _read_delta(spark, path, version=None):
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(str(path))


@pytest.mark.e2e
def test_scoring_writes_k_unseen_books_per_user_to_delta(spark, trained):
    project, _ = trained
    table = project / "data/07_model_output/user_recommendations"
    recs = _read_delta(spark, table).toPandas()
    ratings = pd.read_parquet(project / "data/05_model_input/ratings.parquet")
    books = pd.read_csv(
        project / "data/01_raw/Books.csv", dtype=str, keep_default_na=False
    )

    k = 10
    assert set(recs["User-ID"]) == set(ratings["User-ID"])  # every user with a rating
    assert (recs.groupby("User-ID").size() == k).all()
    for _, ranks in recs.groupby("User-ID")["rank"]:
        assert sorted(ranks) == list(range(1, k + 1))
    personal = recs[~recs["cold_start"]].sort_values(["User-ID", "rank"])
    assert len(personal) > 0.5 * len(recs)
    assert (personal.groupby("User-ID")["score"].diff().dropna() <= 1e-6).all()
    rated = set(zip(ratings["User-ID"], ratings["ISBN"], strict=True))
    assert not any(
        (u, i) in rated for u, i in zip(recs["User-ID"], recs["ISBN"], strict=True)
    )
    assert recs["ISBN"].isin(books["ISBN"]).all()
    # Titles for one user, checked against Books.csv.
    user = personal["User-ID"].iloc[0]
    mine = recs[recs["User-ID"] == user].merge(books, on="ISBN", suffixes=("", "_csv"))
    assert len(mine) == k and (mine["Book-Title"] == mine["Book-Title_csv"]).all()
    assert recs["model_version"].unique().tolist() == [1]

    # The table is readable without Spark, by the deltalake package.
    assert len(DeltaTable(str(table)).to_pandas()) == len(recs)

    # Scoring again writes a new Delta version; the previous one is still there.
    _run(project, "scoring")
    assert DeltaTable(str(table)).version() == 1
    previous = _read_delta(spark, table, version=0)
    assert previous.count() == len(recs)
    assert previous.exceptAll(_read_delta(spark, table, version=1)).count() == 0


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("override", "asked"),
    [({"model_alias": "nope"}, "alias 'nope'"), ({"model_version": 99}, "version 99")],
)
def test_scoring_an_unknown_alias_or_version_names_what_exists(
    trained, override, asked
):
    project, _ = trained
    with pytest.raises(Exception) as error:
        _run(project, "scoring", {"scoring": override})
    message = str(error.value)
    assert f"'{MODEL}' has no {asked}" in message
    assert "versions [1]" in message and "champion" in message


FIGURES = [
    "top_authors", "most_rated_books", "most_popular_items", "rating_distribution",
    "long_tail", "user_ages", "model_comparison", "predicted_vs_actual",
]  # fmt: skip


@pytest.mark.e2e
def test_reporting_files_are_mlflow_artifacts_and_match_the_metrics(trained):
    project, client = trained
    reporting = project / "data/08_reporting"
    parents, children = _parents_and_children(client)
    first = parents[0]
    logged = {a.path for a in client.list_artifacts(first.info.run_id, "reporting")}
    for name in FIGURES:
        png = (reporting / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name
        assert f"reporting/{name}.png" in logged
    assert {
        "reporting/raw_tables_summary.csv",
        "reporting/recommendation_sample.md",
    } <= logged
    sample = (reporting / "recommendation_sample.md").read_text()
    assert (
        sample.startswith("| user | rated highly | recommended |")
        and sample.count("\n") == 5
    )

    # The grid chart's bars are the sub-models' test metrics as logged in MLflow.
    submodels = json.loads((reporting / "submodel_metrics.json").read_text())
    baselines = json.loads((reporting / "baseline_metrics.json").read_text())
    fig = plot_model_comparison(submodels, baselines, {"k": 10})
    logged_rmse = sorted(r.data.metrics["rmse"] for r in children[first.info.run_id])
    drawn_rmse = sorted(
        p.get_height() for p in fig.axes[0].patches if p.get_height() > 0
    )
    assert drawn_rmse == pytest.approx(logged_rmse)
    baseline_line = next(
        line
        for line in fig.axes[0].lines
        if line.get_label().startswith("bias baseline")
    ).get_ydata()[0]
    assert baseline_line == pytest.approx(first.data.metrics["bias_baseline.rmse"])
    logged_ndcg = sorted(
        r.data.metrics["ndcg_at_10"] for r in children[first.info.run_id]
    )
    drawn_ndcg = sorted(
        p.get_height() for p in fig.axes[1].patches if p.get_height() > 0
    )
    assert drawn_ndcg == pytest.approx(logged_ndcg)


@pytest.mark.e2e
def test_notebook_runs_top_to_bottom(spark, trained):
    project, _ = trained
    notebook = nbformat.read(
        project / "notebooks/book_recommendation.ipynb", as_version=4
    )
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(project / "notebooks")}},
    )
    client.execute()
    errors = [
        f"cell {i}: {o['ename']}: {o['evalue']}\n" + "\n".join(o["traceback"][-5:])
        for i, cell in enumerate(notebook.cells)
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors, "\n".join(errors)
    recs = _read_delta(
        spark, project / "data/07_model_output/user_recommendations"
    ).toPandas()
    personal = recs[~recs["cold_start"]]
    user = sorted(personal["User-ID"])[0]
    title = personal[(personal["User-ID"] == user) & (personal["rank"] == 1)][
        "Book-Title"
    ].iloc[0]
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    assert f"First recommendation for user {user}: {title}" in printed


@pytest.mark.e2e
def test_kedro_run_tracks_every_submodel_and_registers_a_champion(trained):
    """Runs last: it registers further versions."""
    project_copy, client = trained
    params = yaml.safe_load(
        (project_copy / "conf/base/parameters_data_science.yml").read_text()
    )
    grid_size = len(params["als"]["rank"]) * len(params["als"]["reg_param"])

    parents, children = _parents_and_children(client)
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    subruns = children[parent.info.run_id]
    assert len(subruns) == grid_size
    for run in subruns:
        assert SUBMODEL_METRICS <= set(run.data.metrics), run.info.run_name
        assert "validation_rmse" in run.data.metrics
        assert run.data.metrics["fit_seconds"] > 0, run.info.run_name
        assert run.data.metrics["evaluation_seconds"] > 0, run.info.run_name
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
    implicit_run = client.get_run(parents[-1].info.run_id)
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
    assert parents[-1].info.status == "FAILED"
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) == 2
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 2
