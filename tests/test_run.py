"""The whole project, end to end, on the demo data: what `kedro run` leaves in MLflow."""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from deltalake import DeltaTable
from kedro.config import OmegaConfigLoader
from kedro.framework.project import configure_project, settings
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.models import get_model_info
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient
from pyspark.sql import functions as F

from book_recommender.beyond_accuracy import LIST_MEASURES
from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.item_topk import DenseWeights
from book_recommender.models import Interactions
from book_recommender.models.families import families
from book_recommender.models.records import from_json
from book_recommender.params import ConfigurationError, parse
from book_recommender.pipelines.reporting.nodes import plot_model_comparison
from book_recommender.run_lock import ProjectCopiedError, RunLockedError
from book_recommender.serving import Bundle
from tests.conftest import (
    PROJECT_ROOT,
    assert_refused_before_any_node,
    assert_tables_of_one_run,
    copy_project,
    start_kedro_run,
)
from tests.reference import tuned_alone

EXPERIMENT = "aisample-recommendation"
MODEL = f"{EXPERIMENT}-recommender"
RATING_MODEL = f"{EXPERIMENT}-rating"
RANKING_METRICS = {
    "precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10", "cold_user_share",
    "warm.ndcg_at_10", "warm.precision_at_10",
}  # fmt: skip
RATING_METRICS = {"rmse", "mae", "r2", "explained_variance"}


def _run(project, pipeline=None, params=None, nodes=None):
    """`kedro run [--pipeline P[,Q]] [--params ...] [--nodes N,...]`, in this process."""
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        session.run(
            pipeline_names=pipeline.split(",") if pipeline else None, node_names=nodes
        )


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


# What the `kedro run` started beside the trained fixture's own did, and the
# summary the fixture's own run ended with.
RIVAL: dict[str, object] = {}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """A scratch copy of the project after one plain `kedro run` (the default
    pipeline), with a second full `kedro run` of the fresh project (no
    mlflow.db yet) started in its own process at the same moment (``RIVAL``)."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        bootstrap_project(project)
        rival = start_kedro_run(project)
        said = _Records()
        logging.getLogger("book_recommender.hooks").addHandler(said)
        try:
            _run(project)
            RIVAL["refused_here"] = None
        except RunLockedError as error:  # the rival won: it trains the project
            RIVAL["refused_here"] = str(error)
        finally:
            logging.getLogger("book_recommender.hooks").removeHandler(said)
        RIVAL["summary"] = [
            m for m in said.messages if m.startswith("The run finished")
        ]
        RIVAL["output"] = rival.communicate(timeout=1200)[0]
        RIVAL["returncode"] = rival.returncode
        tracking_uri = f"sqlite:///{project / 'mlflow.db'}"
        mlflow.set_tracking_uri(tracking_uri)
        yield project, MlflowClient(tracking_uri=tracking_uri)


def _read_delta(spark, path, version=None):
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(str(path))


@pytest.mark.e2e
def test_two_full_runs_started_together_leave_one_runs_tables_and_champion(
    spark, trained
):
    """Of two `kedro run`s started at once on a fresh project, one refused
    before its first node naming the other's pid; the tables are one run's,
    one run is in MLflow, and the alias names the version the Delta table
    holds."""
    project, client = trained
    if RIVAL["refused_here"] is None:
        assert_refused_before_any_node(RIVAL["output"], RIVAL["returncode"])
        assert f"pid {os.getpid()} on" in RIVAL["output"]
    else:
        assert RIVAL["returncode"] == 0, RIVAL["output"][-3000:]
        assert "Another run is writing" in RIVAL["refused_here"]
    assert_tables_of_one_run(project)
    parents, _ = _parents_and_children(client)
    assert [p.info.status for p in parents] == ["FINISHED"]
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.run_id == parents[0].info.run_id
    table = _read_delta(spark, project / "data/07_model_output/user_recommendations")
    versions = [r[0] for r in table.select("model_version").distinct().collect()]
    assert versions == [int(champion.version)]


def test_a_run_ends_with_its_summary(spark, trained):
    """The champions against their baselines, as champions.json has them, the
    Delta table's rows, and where to look next."""
    project, _ = trained
    if RIVAL["refused_here"] is not None:
        pytest.skip("the rival process trained the project: its output is elsewhere")
    (summary,) = RIVAL["summary"]
    champions = json.loads((project / "data/06_models/champions.json").read_text())
    for role, champion in champions.items():
        metric = champion["selected_by"].removeprefix("validation_")
        verdict = "beats" if champion["beats_baseline"][metric] else "does NOT beat"
        assert (
            f"{role} champion: {champion['candidate']['name']}, test {metric} "
            f"{champion['test_metrics'][metric]:.4f}, {verdict} {champion['baseline']} "
            f"({champion['baseline_test_metrics'][metric]:.4f})"
        ) in summary
    coverage = champions["recommender"]["test_metrics"]["catalog_coverage"]
    assert f"its test lists cover {coverage:.1%} of the catalog" in summary
    novelty = champions["recommender"]["test_metrics"]["novelty"]
    assert f"beyond accuracy (popularity in brackets): novelty {novelty:.2f}" in summary
    # Every candidate judged on test carries its catalog coverage.
    tested = json.loads((project / "data/06_models/candidate_metrics.json").read_text())
    for candidate in tested:
        served = candidate["metrics"]["served_books"]
        name = candidate["candidate"]["name"]
        assert served >= 1, name
        assert (
            candidate["metrics"]["catalog_coverage"]
            <= candidate["metrics"]["trained_coverage"]
        ), name
    rows = _read_delta(
        spark, project / "data/07_model_output/user_recommendations"
    ).count()
    assert f"{rows:,} rows in the Delta table" in summary
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in summary


def _pandas_statistics(raw) -> dict:
    """The statistics recomputed from the CSVs with pandas, independently of Spark."""
    read = {"dtype": str, "keep_default_na": False}
    ratings = pd.read_csv(raw / "Ratings.csv", **read)
    users = pd.read_csv(raw / "Users.csv", **read)
    books = pd.read_csv(raw / "Books.csv", **read)

    ratings["User-ID"] = ratings["User-ID"].str.strip()
    ratings["ISBN"] = ratings["ISBN"].str.strip()
    value = pd.to_numeric(ratings["Book-Rating"].str.strip(), errors="coerce")
    valid = (ratings["User-ID"] != "") & (ratings["ISBN"] != "") & value.between(0, 10)
    ratings = ratings[valid].assign(rating=value[valid])

    users = users[users["User-ID"].str.strip() != ""].drop_duplicates("User-ID")
    books = books[books["ISBN"].str.strip() != ""].drop_duplicates("ISBN")
    # StringIndexer on a table of unique ids: ties in frequency, so sorted by value.
    user_index = {u: i for i, u in enumerate(sorted(users["User-ID"]))}
    item_index = {b: i for i, b in enumerate(sorted(books["ISBN"]))}

    merged = ratings.merge(users[["User-ID"]], on="User-ID").merge(
        books[["ISBN"]], on="ISBN"
    )
    per_value = merged["rating"].value_counts()
    n_users, n_items = merged["User-ID"].nunique(), merged["ISBN"].nunique()
    return {
        "ratings_read": int(valid.size),
        "ratings_dropped": int((~valid).sum()),
        "unknown_item": int((~ratings["ISBN"].isin(books["ISBN"])).sum()),
        "unknown_user": int((~ratings["User-ID"].isin(users["User-ID"])).sum()),
        "interactions": len(merged),
        "users": n_users,
        "items": n_items,
        "sparsity": 1 - len(merged) / (n_users * n_items),
        "max_user_id": max(user_index[u] for u in merged["User-ID"]),
        "max_item_id": max(item_index[b] for b in merged["ISBN"]),
        "ratings_per_value": {str(int(k)): int(v) for k, v in per_value.items()},
        "explicit": int((merged["rating"] > 0).sum()),
    }


@pytest.mark.e2e
def test_data_processing_statistics_match_pandas(trained):
    """The demo run's data statistics (and its data_quality block) against the
    same counts recomputed from the CSVs with pandas."""
    project, _ = trained
    stats = json.loads(
        (project / "data/05_model_input/data_statistics.json").read_text()
    )
    expected = _pandas_statistics(project / "data/01_raw")

    assert stats["rows"]["ratings"]["read"] == expected["ratings_read"]
    assert (
        sum(stats["rows"]["ratings"]["dropped"].values()) == expected["ratings_dropped"]
    )
    assert stats["joins"]["ratings_with_unknown_item"] == expected["unknown_item"]
    assert stats["joins"]["ratings_with_unknown_user"] == expected["unknown_user"]
    quality = stats["data_quality"]["ratings"]
    lost = (
        expected["ratings_dropped"]
        + expected["unknown_item"]
        + expected["unknown_user"]
    )
    assert (
        quality["lost"] == lost and quality["unknown_item"] == expected["unknown_item"]
    )
    assert quality["lost_share"] == pytest.approx(
        lost / expected["ratings_read"], abs=1e-6
    )
    model_input = stats["model_input"]
    for key in ("interactions", "users", "items", "max_user_id", "max_item_id"):
        assert model_input[key] == expected[key], key
    assert model_input["sparsity"] == pytest.approx(expected["sparsity"])
    assert model_input["ratings_per_value"] == expected["ratings_per_value"]
    assert model_input["explicit_interactions"] == expected["explicit"]

    split = stats["split"]
    assert split["train_rows"] + split["test_rows"] == expected["explicit"]
    for value, share in split["train_share_per_value"].items():
        if expected["ratings_per_value"][value] >= 1000:
            assert share == pytest.approx(0.8, abs=0.04), value

    # The persisted model inputs are what the statistics describe.
    train = pd.read_parquet(project / "data/05_model_input/train_ratings.parquet")
    test = pd.read_parquet(project / "data/05_model_input/test_ratings.parquet")
    assert len(train) == split["train_rows"] and len(test) == split["test_rows"]
    assert set(train["id"]).isdisjoint(test["id"])
    assert (train["Book-Rating"] > 0).all() and (test["Book-Rating"] > 0).all()


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
    champion = MlflowClient().get_model_version_by_alias(MODEL, "champion")
    assert recs["model_version"].unique().tolist() == [int(champion.version)]
    _check_because(recs, books, champion)

    # The table is readable without Spark, by the deltalake package.
    assert len(DeltaTable(str(table)).to_pandas()) == len(recs)

    # Scoring again writes a new Delta version; the previous one is still there.
    _run(project, "scoring")
    assert DeltaTable(str(table)).version() == 1
    previous = _read_delta(spark, table, version=0)
    assert previous.count() == len(recs)
    assert previous.exceptAll(_read_delta(spark, table, version=1)).count() == 0


def _check_because(recs: pd.DataFrame, books: pd.DataFrame, champion) -> None:
    """Each pick names the rated book it is due to: for the demo's champion
    (EASE), the seen book with the largest weight towards it, recomputed with
    numpy for a handful of users; the fallback's picks name none."""
    folder = mlflow.artifacts.download_artifacts(champion.source)
    bundle = Bundle.load(Path(folder) / "artifacts" / "bundle")
    assert isinstance(bundle.weights, DenseWeights)
    row_of = {p: r for r, p in enumerate(bundle.weights.subset)}
    isbns = bundle.items["ISBN"].to_numpy()
    title = dict(zip(books["ISBN"], books["Book-Title"], strict=True))
    assert (
        recs.loc[recs["cold_start"], ["because_ISBN", "because_Book-Title"]]
        .isna()
        .all(None)
    )
    personal = recs[~recs["cold_start"] & recs["score"].notna()]
    users = sorted(set(personal["User-ID"]))[
        :: max(1, len(set(personal["User-ID"])) // 5)
    ]
    for user in users[:5]:
        row = bundle.users.index[bundle.users["user"] == user][0]
        seen = np.sort(
            bundle.seen_items[bundle.seen_indptr[row] : bundle.seen_indptr[row + 1]]
        )
        seen = [h for h in seen if h in row_of]
        mine = personal[personal["User-ID"] == user].sort_values("rank")
        position = {isbn: p for p, isbn in enumerate(isbns)}
        for pick, because, because_title in mine[
            ["ISBN", "because_ISBN", "because_Book-Title"]
        ].itertuples(index=False):
            terms = [
                bundle.weights.matrix[row_of[h], row_of[position[pick]]] for h in seen
            ]
            assert because == isbns[seen[int(np.argmax(terms))]], (user, pick)
            assert because_title == title[because]


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


@pytest.mark.e2e
def test_scoring_refuses_a_version_that_is_not_a_recommender(trained):
    """The rating champion registered by hand under the recommender's name."""
    project, client = trained
    rating = client.get_model_version_by_alias(RATING_MODEL, "champion")
    stray = client.create_model_version(
        MODEL, rating.source, rating.run_id, tags={"role": "rating"}
    )
    try:
        with pytest.raises(Exception) as error:
            _run(project, "scoring", {"scoring": {"model_version": int(stray.version)}})
        assert "is a 'rating' model, not a recommender" in str(error.value)
    finally:
        client.delete_model_version(MODEL, stray.version)


FIGURES = [
    "top_authors", "most_rated_books", "most_popular_items", "rating_distribution",
    "long_tail", "user_ages", "model_comparison", "predicted_vs_actual",
    "accuracy_against_coverage", "recommended_popularity",
]  # fmt: skip


@pytest.mark.e2e
def test_reporting_files_are_mlflow_artifacts_and_match_the_metrics(trained):
    project, client = trained
    reporting = project / "data/08_reporting"
    models = project / "data/06_models"
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
    params = _parameters(project)["reporting"]
    sections = sample.split("\n## ")[1:]
    assert sample.startswith("# Recommendations") and "<br>" not in sample
    assert len(sections) == params["sample_users"]
    for section in sections:
        recommended = section.split("Recommended:")[1].strip().splitlines()
        assert [line.split(".")[0] for line in recommended] == [
            str(rank) for rank in range(1, params["sample_books"] + 1)
        ], section

    # The chart's bars are the candidates' validation metrics as logged in MLflow.
    candidates = from_json(
        "tuning_results", json.loads((models / "tuning_results.json").read_text())
    )
    champions = from_json(
        "champions", json.loads((models / "champions.json").read_text())
    )
    evaluation = yaml.safe_load(
        (project / "conf/base/parameters_data_science.yml").read_text()
    )["evaluation"]
    fig = plot_model_comparison(candidates, champions, parse("evaluation", evaluation))
    subruns = children[first.info.run_id]
    for ax, metric, baseline in (
        (fig.axes[0], "ndcg_at_10", "popularity"),
        (fig.axes[1], "rmse", "bias_baseline"),
    ):
        logged = sorted(
            r.data.metrics[f"validation.{metric}"]
            for r in subruns
            if f"validation.{metric}" in r.data.metrics
        )
        drawn = sorted(p.get_width() for p in ax.patches)
        assert drawn == pytest.approx(logged, abs=1e-6), metric
        line = next(
            line for line in ax.lines if line.get_label().startswith(baseline[:4])
        ).get_xdata()[0]
        baseline_run = next(r for r in subruns if r.info.run_name == baseline)
        assert line == pytest.approx(baseline_run.data.metrics[f"validation.{metric}"])


def _served_measures_by_pandas(project: Path, side_column: str | None) -> dict:
    """The beyond-accuracy measures of the Delta table's lists, computed again
    with pandas and sets from the files alone (independent of
    ``book_recommender.beyond_accuracy``)."""
    data = project / "data/05_model_input"
    recs = DeltaTable(str(project / "data/07_model_output/user_recommendations"))
    recs = recs.to_pandas().sort_values([USER_IDX, "rank"])
    pairs = [USER_IDX, ITEM_IDX]
    ratings = pd.read_parquet(data / "ratings.parquet")[pairs].drop_duplicates()
    test = pd.read_parquet(data / "test_ratings.parquet")
    train = ratings.merge(test[pairs].drop_duplicates(), how="left", indicator=True)
    train = train[train["_merge"] == "left_only"][pairs]
    items = pd.read_parquet(data / "indexed_items.parquet")
    books = items[ITEM_IDX].nunique()
    readers_of = train.groupby(ITEM_IDX)[USER_IDX].apply(set).to_dict()
    readers = {i: len(u) for i, u in readers_of.items()}
    total = sum(readers.values())
    picks = recs[ITEM_IDX].tolist()
    counts = recs[ITEM_IDX].value_counts()
    share = counts / counts.sum()
    every = [readers.get(i, 0) for i in items[ITEM_IDX].unique()]

    def percentile(r: int) -> float:
        fewer = sum(1 for x in every if x < r)
        return (fewer + 0.5 * sum(1 for x in every if x == r)) / books

    at = {r: percentile(r) for r in set(every) | {0}}
    gini_counts = sorted(
        [counts.get(i, 0) for i in readers]
        + [c for i, c in counts.items() if i not in readers]
    )
    n = len(gini_counts)
    head = sorted(readers.values(), reverse=True)[math.ceil(0.01 * len(readers)) - 1]
    diversities, author_shares = [], []
    author = {}
    if side_column:
        for i, a in zip(items[ITEM_IDX], items[side_column], strict=True):
            name = re.sub(r"[\W_]", "", a.lower()) if isinstance(a, str) else ""
            if name:
                author[i] = name
    for _, group in recs.groupby(USER_IDX):
        books_of = group[ITEM_IDX].tolist()
        sims = [
            len(readers_of.get(a, set()) & readers_of.get(b, set()))
            / math.sqrt(readers[a] * readers[b])
            if a in readers and b in readers
            else 0.0
            for a, b in itertools.combinations(books_of, 2)
        ]
        if sims:
            diversities.append(1 - sum(sims) / len(sims))
        names = [author.get(i, ("own", i)) for i in books_of]
        author_shares.append(len(set(names)) / len(books_of))
    expected = {
        "catalog_coverage": len(counts) / books,
        "trained_coverage": len(counts) / len(readers),
        "distributional_coverage": float(-(share * np.log2(share)).sum()),
        "gini_index": sum(
            (2 * j - n - 1) * c / sum(gini_counts)
            for j, c in enumerate(gini_counts, start=1)
        )
        / (n - 1),
        "novelty": float(
            np.mean([-math.log2(max(readers.get(i, 0), 1) / total) for i in picks])
        ),
        "head_share": float(np.mean([readers.get(i, 0) >= head for i in picks])),
        "popularity_percentile": float(np.mean([at[readers.get(i, 0)] for i in picks])),
        "read_popularity_percentile": float(
            np.mean([at[readers.get(i, 0)] for i in test[ITEM_IDX]])
        ),
        "diversity": float(np.mean(diversities)),
    }
    if side_column:
        expected["author_share"] = float(np.mean(author_shares))
    return expected


@pytest.mark.e2e
def test_served_lists_measures_match_an_independent_computation(trained):
    """What the run logs of the published lists beyond accuracy (served.*, the
    reporting pipeline) is what pandas computes from the Delta table and the
    training split."""
    project, client = trained
    parents, _ = _parents_and_children(client)
    logged = {
        name.removeprefix("served."): value
        for name, value in parents[0].data.metrics.items()
        if name.startswith("served.")
    }
    side = _parameters(project)["item_based"]["side_information"]
    expected = _served_measures_by_pandas(project, side[0] if side else None)
    assert logged == pytest.approx(expected, abs=1e-9, rel=1e-9)


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


LOAD_SCRIPT = """
import json, sys
import mlflow
import pandas as pd

mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
ids = pd.DataFrame({"User-ID": json.loads(sys.argv[3])})
print(model.predict(ids).to_json(orient="records"))
"""


def _delta_lists(recs: pd.DataFrame, user: str) -> tuple[list, list, list]:
    mine = recs[recs["User-ID"] == user].sort_values("rank")
    because = [None if pd.isna(b) else b for b in mine["because_ISBN"]]
    return mine["ISBN"].tolist(), mine["Book-Title"].tolist(), because


@pytest.mark.e2e
def test_the_registered_champion_answers_raw_ids_in_a_fresh_process(spark, trained):
    """`mlflow.pyfunc.load_model("models:/...@champion")` with nothing but MLflow:
    the lists of the Delta table of the same version, and flagged popular books
    for an id the model never saw, one answer per input row."""
    project, client = trained
    champion = client.get_model_version_by_alias(MODEL, "champion")
    # The demo's champion weighs the author (side information): the served
    # model carries that similarity and answers as the scoring pipeline did.
    chosen = json.loads((project / "data/06_models/champions.json").read_text())[
        "recommender"
    ]
    assert chosen["candidate"]["name"] == champion.tags["name"]
    assert chosen["candidate"]["side_information"]
    assert (
        chosen["candidate"]["hyperparameters"].get("beta", 0) > 0
        or chosen["candidate"]["hyperparameters"].get("sideWeight", 0) > 0
    )
    recs = _read_delta(
        spark, project / "data/07_model_output/user_recommendations"
    ).toPandas()
    recs = recs[recs["model_version"] == int(champion.version)]
    personal = sorted(set(recs.loc[~recs["cold_start"], "User-ID"]))[:3]
    cold = sorted(set(recs.loc[recs["cold_start"], "User-ID"]))[:1]
    asked = [*personal, "no-such-user", *cold, personal[0]]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_SCRIPT,
            f"sqlite:///{project / 'mlflow.db'}",
            f"models:/{MODEL}@champion",
            json.dumps(asked),
        ],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert [a["User-ID"] for a in answers] == asked
    for answer in answers:
        if answer["User-ID"] == "no-such-user":
            continue
        isbns, titles, because = _delta_lists(recs, answer["User-ID"])
        assert answer["ISBN"] == isbns, answer["User-ID"]
        assert answer["Book-Title"] == titles
        assert answer["because_ISBN"] == because
        assert answer["rank"] == list(range(1, len(isbns) + 1))
        assert answer["cold_start"] == (answer["User-ID"] in cold)
    unknown = answers[len(personal)]
    popular = recs[recs["cold_start"]].groupby("ISBN").size()
    assert unknown["cold_start"] is True and len(unknown["ISBN"]) == 10  # noqa: PLR2004
    assert unknown["score"] == [None] * 10
    assert set(unknown["ISBN"]) <= set(popular.index) | set(recs["ISBN"])
    assert answers[-1] == answers[0]
    # The version says what it is, and the run has a name people can read.
    assert "beats popularity" in champion.description
    run = client.get_run(champion.run_id)
    assert run.info.run_name == "all pipelines, env test"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    logged = client.get_logged_model(champion.source.removeprefix("models:/"))
    assert logged.name == "recommender" and logged.source_run_id == champion.run_id


def _stop(server: subprocess.Popen) -> None:
    """Stops a server started in its own process group, if still running."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


def _wait_until_answering(
    server: subprocess.Popen, url: str, what: str, timeout: float
) -> None:
    """Returns once ``url`` answers. If ``server`` exits first or ``timeout``
    seconds pass, stops it and fails with the end of its stderr."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310
                return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                _stop(server)
                said = server.stderr.read().decode()[-3000:]
                raise AssertionError(f"{what} did not start: {said}") from None
            time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.e2e
def test_mlflow_models_serve_answers_a_dataframe_split_request(trained):
    project, client = trained
    port = _free_port()
    bin_dir = Path(sys.executable).parent  # the server starts `uvicorn` from PATH
    env = os.environ | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    mlflow_cli = bin_dir / "mlflow"
    server = subprocess.Popen(
        [
            str(mlflow_cli),
            "models",
            "serve",
            "-m",
            f"models:/{MODEL}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],  # fmt: skip
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_answering(server, f"{base}/ping", "the served model", 180)
        known = client.get_model_version_by_alias(MODEL, "champion")
        history = _a_history(project)
        request = {
            "dataframe_split": {
                "columns": ["User-ID", "k", "history"],
                "data": [
                    ["no-such-user", 3, None],
                    [_a_known_user(project), 5, None],
                    ["a-new-reader", 4, [*history, "not-a-book"]],
                ],
            }
        }
        reply = urllib.request.urlopen(
            urllib.request.Request(
                f"{base}/invocations",
                data=json.dumps(request).encode(),
                headers={"Content-Type": "application/json"},
            ),
            timeout=60,
        )
        predictions = json.loads(reply.read())["predictions"]
        assert [p["User-ID"] for p in predictions] == [
            "no-such-user",
            _a_known_user(project),
            "a-new-reader",
        ]
        assert predictions[0]["cold_start"] is True and len(predictions[0]["ISBN"]) == 3
        assert (
            predictions[1]["cold_start"] is False and len(predictions[1]["ISBN"]) == 5
        )
        assert predictions[1]["rank"] == [1, 2, 3, 4, 5]
        # A reader the model never saw, answered from the books they sent.
        sent = predictions[2]
        assert sent["cold_start"] is False and len(sent["ISBN"]) == 4  # noqa: PLR2004
        assert sent["ISBN"][:3] != predictions[0]["ISBN"] and sent["score"][0] > 0
        assert not set(sent["ISBN"]) & set(history)
        assert set(sent["because_ISBN"]) <= set(history)
        assert sent["unknown_in_history"] == 1
        assert known.tags["role"] == "recommender"
        # What the model would have to guess at is a 400 naming row and value.
        for data, problem in [
            ([[None, 3]], "null or empty id in row(s) [0]"),
            ([["no-such-user", 2.5]], "row(s) [0] hold [2.5]"),
            ([["no-such-user", "5"]], "row(s) [0] hold ['5']"),
            ([["no-such-user", 0]], "row(s) [0] hold [0]"),
            # Above registry.max_k (100), however large: refused, not overflowed.
            ([["no-such-user", 2**63]], f"row(s) [0] hold [{2**63}]"),
            ([["no-such-user", 1e30]], "row(s) [0] hold [1e+30]"),
            ([["no-such-user", 10**9]], "from 1 to 100 (registry.max_k)"),
            ([[["8", "9"], 3]], "holds a list or an object in row(s) [0]"),
            ([["a", 3, "0451524934"]], "'history' in row 0 holds ['0451524934']"),
            ([["a", 3, None], ["b", 3, [history[0], 7]]], "row 1 holds [7]"),
            ([["a", 3, ["0451524934"] * 10_001]], "row 0 holds 10,001 books"),
        ]:
            columns = ["User-ID", "k", "history"][: len(data[0])]
            bad = {"dataframe_split": {"columns": columns, "data": data}}
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(
                    urllib.request.Request(
                        f"{base}/invocations",
                        data=json.dumps(bad).encode(),
                        headers={"Content-Type": "application/json"},
                    ),
                    timeout=60,
                )
            assert refused.value.code == 400  # noqa: PLR2004
            raw = refused.value.read().decode()
            assert problem in json.loads(raw)["message"], raw
            # No stack trace and no server path in what the client gets.
            assert "Traceback" not in raw and "stack_trace" not in raw, raw
            assert ".py" not in raw and str(Path.home()) not in raw, raw
    finally:
        _stop(server)


def _a_history(project: Path) -> list[str]:
    """The ISBNs of the first user with five or more ratings, as a new
    reader's history."""
    ratings = pd.read_parquet(project / "data/05_model_input/ratings.parquet")
    counts = ratings.groupby("User-ID")["ISBN"].agg(list)
    return next(books for books in counts if len(books) >= 5)[:20]  # noqa: PLR2004


def _a_known_user(project: Path) -> str:
    """The first user with factors in the champion's Delta rows."""
    recs = DeltaTable(
        str(project / "data/07_model_output/user_recommendations")
    ).to_pandas()
    return sorted(recs.loc[~recs["cold_start"], "User-ID"])[0]


@pytest.mark.e2e
def test_scoring_refuses_a_version_whose_registration_did_not_finish(trained):
    """A version without the tags training creates it with (as a registration
    killed half-way used to leave) is refused; the Delta table stays as it was."""
    project, client = trained
    champion = client.get_model_version_by_alias(MODEL, "champion")
    bare = client.create_model_version(MODEL, champion.source, champion.run_id)
    table = str(project / "data/07_model_output/user_recommendations")
    before = DeltaTable(table).version()
    with pytest.raises(Exception) as error:
        _run(project, "scoring", {"scoring": {"model_version": int(bare.version)}})
    assert f"version {bare.version}" in str(error.value)
    assert "has no 'role' tag: its registration did not finish" in str(error.value)
    assert DeltaTable(table).version() == before
    client.delete_model_version(MODEL, bare.version)


@pytest.mark.e2e
def test_scoring_needs_only_the_registry(spark, trained, tmp_path):
    """A machine that never trained: no model inputs, no training outputs, only
    the MLflow registry. Scoring writes the same lists from it."""
    project, _ = trained
    table = project / "data/07_model_output/user_recommendations"
    before = _read_delta(spark, table).toPandas()
    away = {
        folder: tmp_path / folder.replace("/", "_")
        for folder in ("data/05_model_input", "data/06_models", "data/08_reporting")
    }
    for folder, aside in away.items():
        if (project / folder).exists():
            (project / folder).rename(aside)
    try:
        _run(project, "scoring")
    finally:
        for folder, aside in away.items():
            if aside.exists():
                shutil.rmtree(project / folder, ignore_errors=True)
                aside.rename(project / folder)
    after = _read_delta(spark, table).toPandas()
    columns = ["User-ID", "rank", "ISBN", "cold_start", "model_version"]
    pd.testing.assert_frame_equal(
        after[columns].sort_values(["User-ID", "rank"], ignore_index=True),
        before[columns].sort_values(["User-ID", "rank"], ignore_index=True),
    )


@pytest.mark.e2e
def test_a_node_runs_alone_by_its_name(trained):
    """`kedro run --nodes=reporting.plot_long_tail`: names are stable, not
    hashes (the pipeline's namespace, then the function's name)."""
    project, _ = trained
    figure = project / "data/08_reporting/long_tail.png"
    before = figure.stat().st_mtime_ns
    _run(project, nodes=["reporting.plot_long_tail"])
    assert figure.stat().st_mtime_ns > before
    assert figure.read_bytes().startswith(b"\x89PNG")


MODEL_INPUT = "data/05_model_input"


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _aliases(client) -> dict[str, str]:
    """The version each registered model's `champion` names."""
    return {
        name: client.get_model_version_by_alias(name, "champion").version
        for name in (MODEL, RATING_MODEL)
    }


def _start_training(project: Path, client) -> tuple[subprocess.Popen, str]:
    """`kedro run --pipeline data_science` in its own process, once its MLflow
    run is RUNNING and a few seconds into training."""
    before = {p.info.run_id for p in _parents_and_children(client)[0]}
    process = subprocess.Popen(  # noqa: S603
        [
            str(Path(sys.executable).with_name("kedro")),
            "run",
            "--pipeline",
            "data_science",
        ],
        cwd=project,
        env=os.environ | {"KEDRO_DISABLE_TELEMETRY": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    while True:
        new = [
            p for p in _parents_and_children(client)[0] if p.info.run_id not in before
        ]
        if new:
            break
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no MLflow run started"
        time.sleep(0.5)
    time.sleep(3)  # into the data_science nodes
    assert process.poll() is None, process.stdout.read()[-3000:]
    return process, new[0].info.run_id


@pytest.mark.e2e
def test_an_interrupted_training_run_is_marked_killed(trained):
    """SIGTERM, as `kill`, schedulers and containers stop a run (Ctrl-C's SIGINT
    goes to the same handler: tests/test_hooks.py sends it in-process)."""
    project, client = trained
    inputs, aliases = _snapshot(project / MODEL_INPUT), _aliases(client)
    process, run_id = _start_training(project, client)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "marking the MLflow run KILLED" in output, output[-3000:]
    assert client.get_run(run_id).info.status == "KILLED"
    assert _snapshot(project / MODEL_INPUT) == inputs
    assert _aliases(client) == aliases
    assert not client.search_model_versions(f"run_id='{run_id}'")


@pytest.mark.e2e
def test_a_run_killed_outright_is_marked_killed_by_the_next_start(trained, caplog):
    project, client = trained
    process, run_id = _start_training(project, client)
    process.kill()
    process.communicate(timeout=60)
    assert client.get_run(run_id).info.status == "RUNNING"
    with caplog.at_level("WARNING"):
        _run(project, nodes=["reporting.plot_long_tail"])  # any run of the project here
    assert client.get_run(run_id).info.status == "KILLED"
    assert f"({run_id}) was still RUNNING but its process" in caplog.text


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("ratings", "says"),
    [
        ("User-ID,ISBN,Book-Rating\n", "interactions: 0, at least 1 needed"),
        ("zeros", "train rows: 0, at least 1 needed"),
    ],
)
def test_degenerate_ratings_fail_before_the_model_inputs_are_replaced(
    trained, ratings, says
):
    project, _ = trained
    inputs = _snapshot(project / MODEL_INPUT)
    raw = project / "data/01_raw/Ratings.csv"
    good = raw.read_text()
    if ratings == "zeros":  # every rating implicit (0)
        lines = good.splitlines()
        ratings = "\n".join(
            [lines[0], *(line.rsplit(",", 1)[0] + ",0" for line in lines[1:])]
        )
    raw.write_text(ratings)
    try:
        with pytest.raises(Exception) as error:
            _run(project, "data_processing")
    finally:
        raw.write_text(good)
    message = str(error.value)
    assert "Not enough data to train and evaluate on" in message
    assert says in message
    assert "the previous model inputs are untouched" in message
    assert _snapshot(project / MODEL_INPUT) == inputs


def _parameters(project: Path) -> dict:
    """The parameters the project's runs had: conf/base with conf/test over it."""
    configure_project("book_recommender")
    return OmegaConfigLoader(
        str(project / "conf"), env="test", **settings.CONFIG_LOADER_ARGS
    )["parameters"]


def _candidate_count(params: dict) -> int:
    ranking, rating = params["als"]["ranking"], params["als"]["rating"]
    knn, ease = params["item_based"]["knn"], params["item_based"]["ease"]
    rp3 = params["item_based"]["rp3"]
    return (
        2
        + len(ranking["rank"]) * len(ranking["reg_param"]) * len(ranking["alpha"])
        + len(knn["similarity"]) * len(knn["neighbours"]) * len(knn["side_weight"])
        + len(rp3["alpha"])
        * len(rp3["beta"])
        * len(rp3["neighbours"])
        * len(rp3["side_weight"])
        + len(ease["l2"]) * len(ease["beta"])
        + len(rating["rank"]) * len(rating["reg_param"])
    )


def _check_candidate_runs(
    client, subruns, parent, params: dict, reference: str
) -> None:
    assert len(subruns) == _candidate_count(params)
    # Every candidate has validation metrics; only the champions, the
    # baselines and the best candidate without side information (the
    # recommender champion uses it) were refitted and saw test.
    refitted = {
        parent.data.tags["champion.name"],
        parent.data.tags["rating_champion.name"],
        "popularity",
        "bias_baseline",
        reference,
    }
    for run in subruns:
        role = run.data.params["role"]
        expected = RANKING_METRICS | (RATING_METRICS if role == "rating" else set())
        assert {f"validation.{m}" for m in expected} <= set(run.data.metrics)
        assert run.data.metrics["validation.served_books"] >= 1, run.info.run_name
        measures = {*LIST_MEASURES, "diversity"}
        assert {f"validation.{m}" for m in measures} <= set(run.data.metrics)
        # The same key as the parent run's for the same measure on test.
        on_test = {f"test.{m}" for m in expected}
        assert {"kind", "role"} <= set(run.data.params)
        assert run.data.tags["family"].startswith(run.data.params["kind"])
        was_refitted = run.info.run_name in refitted
        assert run.data.tags["refitted"] == str(was_refitted).lower()
        assert (on_test <= set(run.data.metrics)) == was_refitted, run.info.run_name
        if not was_refitted:
            continue
        # Every measure beyond accuracy on test, for every candidate judged
        # there (on validation for all of them, above).
        for share in ("catalog_coverage", "trained_coverage", "reach_2plus"):
            assert 0 < run.data.metrics[f"test.{share}"] <= 1, (
                run.info.run_name,
                share,
            )
        assert {f"test.{m}" for m in measures} <= set(run.data.metrics)
        # Popularity's fit is nothing but its model (the counts are the
        # fallback every model shares): 0 s, rounded.
        assert run.data.metrics["fit_seconds"] >= 0, run.info.run_name
        if run.data.params["kind"] != "popularity":
            assert run.data.metrics["fit_seconds"] > 0, run.info.run_name
        assert run.data.metrics["evaluation_seconds"] > 0, run.info.run_name
        # The run spans its refit and test, as the MLflow UI's duration shows.
        seconds = (run.info.end_time - run.info.start_time) / 1000
        assert seconds >= run.data.metrics["fit_seconds"], run.info.run_name
        kind = run.data.params["kind"]
        if kind in ("knn", "rp3", "ease"):
            # Item-based: the weights live in the registered bundle, sized here.
            assert run.data.metrics["model_bytes"] > 0, run.info.run_name
            continue
        if kind in ("popularity", "bias", "biased"):
            # No Spark model behind a baseline (its counts or biases are what
            # a registered bundle would hold), nor behind biased ALS (its
            # residual ALSModel alone is not what it predicts): nothing is
            # logged as one, so no unserved model offers to be registered.
            assert not client.list_artifacts(run.info.run_id), run.info.run_name
            continue
        info = get_model_info(f"runs:/{run.info.run_id}/model")
        assert info.signature is not None
        assert [c.name for c in info.signature.inputs.inputs] == [
            "_user_id",
            "_item_id",
        ]


@pytest.mark.e2e
def test_spark_tuning_made_the_former_paths_choice_on_the_demo_data(spark, trained):
    """The run tuned EASE by TrainValidationSplit; each of its grid points
    fitted alone on the same split of the demo's training ratings, as the
    project tuned before, has the same validation metrics: the same choice."""
    project, _ = trained
    params = _parameters(project)
    folder = project / "data/05_model_input"
    train = spark.read.parquet(str(folder / "train_ratings.parquet"))
    implicit = (
        spark.read.parquet(str(folder / "ratings.parquet"))
        .filter(F.col("Book-Rating") == 0)
        .select(USER_IDX, ITEM_IDX)
    )
    als, item_based = (
        parse("als", params["als"]),
        parse("item_based", params["item_based"]),
    )
    evaluation = parse("evaluation", params["evaluation"])
    tuning = parse("tuning", params["tuning"])
    family = next(f for f in families(als, item_based) if f.label == "ease")
    former = tuned_alone(
        family, train, Interactions(implicit, "Book-Rating"), tuning, evaluation
    )
    reports = project / "data/06_models"
    tuned = [
        r
        for r in json.loads((reports / "tuning_results.json").read_text())
        if r["candidate"]["kind"] == "ease" and not r["candidate"]["side_information"]
    ]
    names = [r["candidate"]["name"] for r in tuned]
    assert names == list(former) and len(former) > 1
    for result in tuned:
        reference = former[result["candidate"]["name"]]
        # The pipeline's evaluator also measures the lists beyond accuracy.
        assert set(LIST_MEASURES) <= set(result["validation"])
        mine = {m: result["validation"][m] for m in reference}
        assert mine == pytest.approx(reference, abs=1e-9)
    key = evaluation.ranking_key
    pick = max(former, key=lambda name: former[name][key])
    assert [r["candidate"]["name"] for r in tuned if r["best_of_family"]] == [pick]


@pytest.mark.e2e
def test_the_champion_weighs_the_author_and_beats_the_best_model_without_it(trained):
    """Readers return to authors in the demo data as in the real data (20-30%
    of test interactions share an author with one of the reader's other
    books); the champion chosen on validation weighs the author, and on test
    beats the best candidate without side information, refitted beside it."""
    project, client = trained
    reports = project / "data/06_models"
    champions = json.loads((reports / "champions.json").read_text())
    without = champions["recommender"]["without_side_information"]
    parent = client.get_run(client.get_model_version_by_alias(MODEL, "champion").run_id)
    metrics = parent.data.metrics
    statistics = json.loads(
        (project / "data/05_model_input/data_statistics.json").read_text()
    )
    share = statistics["side_information"]["test_share_sharing_a_value"]
    assert 0.2 <= share <= 0.3  # noqa: PLR2004
    assert metrics["data.side_information_share"] == pytest.approx(share)
    chosen = champions["recommender"]["candidate"]
    assert chosen["side_information"]
    assert (
        chosen["hyperparameters"].get("beta", 0) > 0
        or chosen["hyperparameters"].get("sideWeight", 0) > 0
    )
    without = without["candidate"]
    assert not without["side_information"]
    assert not without["hyperparameters"].get("beta") and not without[
        "hyperparameters"
    ].get("sideWeight")
    tested = {
        m["candidate"]["name"]: m["metrics"]["ndcg_at_10"]
        for m in json.loads((reports / "candidate_metrics.json").read_text())
    }
    assert tested[chosen["name"]] > tested[without["name"]]
    assert metrics[
        "champion.without_side_information.test.ndcg_at_10"
    ] == pytest.approx(tested[without["name"]])


class _MlflowServer:
    """`mlflow server` on the project's tracking database, and its REST API."""

    def __init__(self, project: Path) -> None:
        self.base = f"http://127.0.0.1:{_free_port()}"
        self.process = subprocess.Popen(  # noqa: S603
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--backend-store-uri",
                f"sqlite:///{project / 'mlflow.db'}",
                "--host",
                "127.0.0.1",
                "--port",
                self.base.rsplit(":", 1)[1],
                "--workers",
                "1",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        _wait_until_answering(self.process, f"{self.base}/health", "mlflow server", 120)

    def call(self, path: str, body: dict | None = None, **query: str) -> dict:
        url = f"{self.base}/api/2.0/mlflow/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310
            url, data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.load(response)

    def artifact(self, run_id: str, path: str) -> bytes:
        query = urllib.parse.urlencode({"run_uuid": run_id, "path": path})
        url = f"{self.base}/get-artifact?{query}"
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310
            return response.read()

    def stop(self) -> None:
        _stop(self.process)


def _by_key(entries: list[dict]) -> dict[str, object]:
    return {entry["key"]: entry["value"] for entry in entries}


@pytest.mark.e2e
def test_the_mlflow_pages_show_the_champions_at_a_glance(trained):
    """What the MLflow UI reads, through its REST API, of the first run."""
    project, client = trained
    parent_id = _parents_and_children(client)[0][0].info.run_id
    champions = json.loads((project / "data/06_models/champions.json").read_text())
    names = {role: c["candidate"]["name"] for role, c in champions.items()}
    server = _MlflowServer(project)
    try:
        experiment = server.call("experiments/get-by-name", experiment_name=EXPERIMENT)[
            "experiment"
        ]
        runs = server.call(
            "runs/search",
            {"experiment_ids": [experiment["experiment_id"]], "max_results": 1000},
        )["runs"]
        parent = next(r for r in runs if r["info"]["run_id"] == parent_id)
        children = [
            r
            for r in runs
            if _by_key(r["data"].get("tags", [])).get("mlflow.parentRunId") == parent_id
        ]
        # The run's description names both champions and what they beat.
        note = _by_key(parent["data"]["tags"])["mlflow.note.content"]
        for role, champion in champions.items():
            assert names[role] in note and champion["baseline"] in note, note
        # The champions' nested runs say so; no other does.
        tagged = {
            r["info"]["run_name"]: _by_key(r["data"]["tags"]).get("champion")
            for r in children
        }
        assert {n: t for n, t in tagged.items() if t} == {
            names["recommender"]: "recommender",
            names["rating"]: "rating",
        }
        # One key for test NDCG@10, in the run and the champion's nested run.
        own = next(r for r in children if r["info"]["run_name"] == names["recommender"])
        parent_metrics = _by_key(parent["data"]["metrics"])
        own_metrics = _by_key(own["data"]["metrics"])
        assert parent_metrics["test.ndcg_at_10"] == pytest.approx(
            own_metrics["test.ndcg_at_10"]
        )
        rating = next(r for r in children if r["info"]["run_name"] == names["rating"])
        assert _by_key(parent["data"]["metrics"])["test.rmse"] == pytest.approx(
            _by_key(rating["data"]["metrics"])["test.rmse"]
        )
        # The candidate table: one row per nested run, the champions marked.
        files = server.call("artifacts/list", run_id=parent_id)["files"]
        assert "candidates.json" in {f["path"] for f in files}
        table = json.loads(server.artifact(parent_id, "candidates.json"))
        rows = pd.DataFrame(table["data"], columns=table["columns"])
        assert sorted(rows["candidate"]) == sorted(tagged)
        assert dict(zip(rows["candidate"], rows["champion"], strict=True)) == {
            n: t or "" for n, t in tagged.items()
        }
        assert rows["validation.ndcg_at_10"].notna().all()
        # Each nested run spans its own work, not its family's whole tuning.
        spans = [(r["info"]["start_time"], r["info"]["end_time"]) for r in children]
        assert len(set(spans)) == len(spans), spans
        # The rating champion's nested run offers no model to register: what is
        # served is the parent's rating_predictor.
        assert not server.call("artifacts/list", run_id=rating["info"]["run_id"]).get(
            "files"
        )
        assert "mlflow.log-model.history" not in _by_key(rating["data"]["tags"])
    finally:
        server.stop()


@pytest.mark.e2e
def test_kedro_run_picks_and_registers_two_champions_that_beat_their_baselines(
    spark, trained
):
    """Runs last: it registers further versions."""
    project_copy, client = trained
    params = _parameters(project_copy)

    parents, children = _parents_and_children(client)
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    subruns = children[parent.info.run_id]
    reports = project_copy / "data/06_models"
    champions = json.loads((reports / "champions.json").read_text())
    without = champions["recommender"]["without_side_information"]["candidate"]
    _check_candidate_runs(client, subruns, parent, params, without["name"])
    kinds = {r.data.params["kind"] for r in subruns}
    assert kinds == {"popularity", "implicit", "knn", "rp3", "ease", "bias", "biased"}

    metrics = parent.data.metrics
    assert {"data.users", "data.sparsity", "bias_baseline.test.rmse"} <= set(metrics)
    # The raw files' damage, each count once (dropped rows: data.dropped.*).
    assert {"data_quality.ratings.lost", "data_quality.items.read"} <= set(metrics)
    assert not [
        key for key in metrics if key.startswith("data_quality.ratings.dropped")
    ]
    # Kedro's run parameters as tags, without object reprs or a second "run id".
    assert parent.data.tags["runner"] == "SequentialRunner"
    assert "run_id" not in parent.data.tags and "kedro.session_id" in parent.data.tags
    # The recommender champion: chosen on validation NDCG, at least 3x the
    # bestseller list on test, and says so.
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.run_id == parent.info.run_id
    assert champion.tags["role"] == "recommender"
    assert champion.tags["kind"] == parent.data.tags["champion.kind"]
    assert metrics["test.ndcg_at_10"] >= 3 * metrics["popularity.test.ndcg_at_10"]
    assert champion.tags["beats_baseline.ndcg_at_10"] == "true"
    assert parent.data.tags["champion.beats_baseline.ndcg_at_10"] == "true"
    # The rating champion: no worse than the bias baseline on test RMSE.
    rating = client.get_model_version_by_alias(RATING_MODEL, "champion")
    assert rating.tags["role"] == "rating" and rating.tags["prediction_clip"] == "1,10"
    assert metrics["rating_champion.test.rmse"] <= metrics["bias_baseline.test.rmse"]
    assert metrics["test.rmse"] == metrics["rating_champion.test.rmse"]
    assert parent.data.tags["rating_champion.kind"] in {"biased", "bias"}
    # Scoring served the alias `champion`.
    table = _read_delta(
        spark, project_copy / "data/07_model_output/user_recommendations", 0
    )
    versions = [r[0] for r in table.select("model_version").distinct().collect()]
    assert versions == [int(champion.version)]

    # Tuned by cross-validation, grids set from the command line's string form.
    _run(
        project_copy,
        "data_science",
        {
            "als": {"ranking": {"enabled": False}, "rating": {"enabled": False}},
            "item_based": {
                "knn": {"enabled": False},
                "rp3": {"enabled": False},
                "ease": {"l2": "250", "beta": "0 10"},
            },
            "tuning": {"method": "CrossValidator", "num_folds": 2},
        },
    )
    parents, children = _parents_and_children(client)
    cv_run = client.get_run(parents[-1].info.run_id)
    # popularity, EASE 2 (beta 0 and 10: two families); no rating family
    assert len(children[cv_run.info.run_id]) == 1 + 2  # noqa: PLR2004
    assert cv_run.data.params["tuning.method"] == "CrossValidator"
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.run_id == cv_run.info.run_id

    # A run that fails half-way is marked FAILED and leaves both aliases.
    before = _aliases(client)
    with pytest.raises(Exception, match="nope"):
        _run(project_copy, "data_science", {"columns": {"rating": "nope"}})
    parents, _ = _parents_and_children(client)
    assert parents[-1].info.status == "FAILED"
    assert _aliases(client) == before


@pytest.mark.e2e
def test_a_contradiction_fails_before_any_data_is_read(project_copy):
    """The old switches together (implicit and biased) fail at start-up, naming
    both keys; nothing is written, no MLflow run is opened."""
    started = time.perf_counter()
    with pytest.raises(ConfigurationError) as error:
        _run(project_copy, None, {"als": {"implicit_prefs": True, "biased": True}})
    seconds = time.perf_counter() - started
    message = str(error.value)
    assert "als.implicit_prefs" in message and "als.biased" in message
    assert not (project_copy / "data/05_model_input").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{project_copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is None or not client.search_runs([experiment.experiment_id])
    print(f"failed after {seconds:.1f} s")  # noqa: T201


@pytest.mark.e2e
def test_a_run_whose_scoring_fails_moves_no_alias(trained, caplog):
    """Training registers new versions, scoring then fails: `champion` and
    `rating` stay where they were (the README's promise), the new versions
    exist but nothing serves them."""
    project, client = trained
    before = _aliases(client)
    table = project / "data/07_model_output/user_recommendations"
    aside = table.with_name("user_recommendations.aside")
    table.rename(aside)
    table.write_text("a file where the Delta table should be")
    small = {
        "als": {"ranking": {"enabled": False}, "rating": {"enabled": False}},
        "item_based": {
            "knn": {"enabled": False},
            "rp3": {"enabled": False},
            "ease": {"l2": "250", "beta": "0"},
        },
    }
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(Exception):  # noqa: B017, PT011
            _run(project, "data_science,scoring", small)
    finally:
        table.unlink()
        aside.rename(table)
    assert _aliases(client) == before
    assert "the aliases stay where they were" in caplog.text
    parents, _ = _parents_and_children(client)
    failed = parents[-1]
    assert failed.info.status == "FAILED"
    registered = client.search_model_versions(f"run_id='{failed.info.run_id}'")
    assert {v.tags["role"] for v in registered} == {"recommender"}
    assert all(not v.aliases for v in registered)


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.e2e
def test_a_run_and_a_kedro_command_leave_the_checkout_clean(trained, tmp_path):
    """A clone holding what a run writes (the trained project's outputs) and
    after a `kedro` command with Kedro's telemetry on: `git status` is empty."""
    project, _ = trained
    clone = tmp_path / "clone"
    subprocess.run(  # noqa: S603
        ["git", "clone", "-q", str(PROJECT_ROOT), str(clone)],  # noqa: S607
        check=True,
    )
    for entry in project.iterdir():
        if entry.name not in {"conf", "src", "notebooks", "pyproject.toml"}:
            if entry.is_dir():
                shutil.copytree(entry, clone / entry.name, dirs_exist_ok=True)
            else:
                shutil.copy(entry, clone / entry.name)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"KEDRO_DISABLE_TELEMETRY", "DO_NOT_TRACK"}
    } | {  # telemetry on; its upload fails at once instead of leaving the machine
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    subprocess.run(  # noqa: S603
        [str(Path(sys.executable).with_name("kedro")), "registry", "list"],
        cwd=clone,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    status = subprocess.run(  # noqa: S603
        ["git", "status", "--porcelain"],  # noqa: S607
        cwd=clone,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert status == ""


@pytest.mark.e2e
def test_a_copied_project_refuses_to_write_into_the_original(trained, tmp_path):
    """A copy brings mlflow.db, whose experiments keep their artifacts in the
    original's mlruns/: scoring or training in the copy refuses at start-up,
    says how to make the copy independent, and the original is untouched."""
    project, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    before = _snapshot(project)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(copy)
        for pipeline in ("scoring", "data_science"):
            with pytest.raises(ProjectCopiedError) as refused:
                _run(copy, pipeline)
            message = str(refused.value)
            assert str(project / "mlruns") in message
            assert "remove its mlflow.db and mlruns/" in message
    assert _snapshot(project) == before
    assert mlflow.get_tracking_uri() == f"sqlite:///{project / 'mlflow.db'}"
