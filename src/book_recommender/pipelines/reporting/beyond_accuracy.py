"""Reporting nodes beyond accuracy: the measures of ``book_recommender.
beyond_accuracy`` for the lists the Delta table publishes, accuracy against
catalog coverage for every candidate, and the popularity of what is
recommended against what readers read next."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from book_recommender.beyond_accuracy import Catalog  # noqa: E402
from book_recommender.columns import ITEM_IDX, USER_IDX  # noqa: E402
from book_recommender.metrics import RANK  # noqa: E402
from book_recommender.models.items import side_information  # noqa: E402
from book_recommender.models.records import Champion, TuningResult  # noqa: E402
from book_recommender.params import EvaluationParams, ItemBasedParams  # noqa: E402

SERVED = "served"  # prefix of the published lists' measures in MLflow
_READERS = "_readers"


def training_interactions(
    model_input_ratings: DataFrame, test_ratings: DataFrame
) -> DataFrame:
    """What the models learnt from: every (USER_IDX, ITEM_IDX) pair of the
    model input (explicit and implicit) but the test ratings'."""
    pairs = [USER_IDX, ITEM_IDX]
    return model_input_ratings.select(*pairs).join(
        test_ratings.select(*pairs), on=pairs, how="left_anti"
    )


def measure_served_lists(
    user_recommendations: DataFrame,
    model_input_ratings: DataFrame,
    test_ratings: DataFrame,
    indexed_items: DataFrame,
    item_based: ItemBasedParams,
) -> dict[str, dict[str, float]]:
    """Every ``beyond_accuracy`` measure of the lists the Delta table holds
    (every user's, in rank order) against the training interactions, the
    held-out test books as what readers read: ``served.<measure>`` for the
    MLflow run."""
    catalog = Catalog.of(
        indexed_items,
        training_interactions(model_input_ratings, test_ratings),
        side_information(indexed_items, item_based.side_information[:1]),
    )
    lists = (
        user_recommendations.groupBy(USER_IDX)
        .agg(F.sort_array(F.collect_list(F.struct(RANK, ITEM_IDX))).alias("ranked"))
        .select(F.col(f"ranked.{ITEM_IDX}").alias("books"))
        .toPandas()["books"]
    )
    read = test_ratings.select(ITEM_IDX).toPandas()[ITEM_IDX].to_numpy(np.int64)
    measures = catalog.measures(list(lists), read)
    return {
        f"{SERVED}.{name}": {"value": float(value), "step": 0}
        for name, value in measures.items()
    }


def plot_accuracy_against_coverage(
    tuning_results: list[TuningResult],
    champions: dict[str, Champion],
    evaluation: EvaluationParams,
) -> Figure:
    """Every candidate on validation: the ranking metric against the share of
    the catalog its lists cover (log scale), champions starred, popularity
    marked. Up and to the right is better on both."""
    key = evaluation.ranking_key
    table = pd.DataFrame(
        [
            {
                "name": r.name,
                "role": r.candidate.role,
                "accuracy": r.validation[key],
                "coverage": r.validation.get("catalog_coverage", np.nan),
            }
            for r in tuning_results
        ]
    ).dropna()
    stars = {c.name: role for role, c in champions.items()}
    baseline = champions["recommender"].baseline
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    colors = {"ranking": "#4C72B0", "rating": "#DD8452"}
    for role, rows in table.groupby("role"):
        ax.scatter(
            rows["coverage"], rows["accuracy"], color=colors.get(role), label=role
        )
    for row in table.itertuples():
        mark = f" \N{BLACK STAR} {stars[row.name]}" if row.name in stars else ""
        weight = "bold" if mark or row.name == baseline else "normal"
        ax.annotate(
            f"{row.name}{mark}",
            (row.coverage, row.accuracy),
            fontsize=7,
            fontweight=weight,
            xytext=(4, 2),
            textcoords="offset points",
        )
    popular = table[table["name"] == baseline]
    if len(popular):
        ax.axhline(
            float(popular["accuracy"].iloc[0]),
            color="#C44E52",
            linestyle="--",
            label=baseline,
        )
    if len(table) and (table["coverage"] > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel(
        "catalog coverage on validation (distinct books in the lists / books)"
    )
    ax.set_ylabel(f"{key} on validation")
    ax.set_title(
        f"Accuracy against catalog coverage, {len(table)} candidates "
        "(up: more accurate, right: more of the catalog)"
    )
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_recommended_popularity(
    user_recommendations: DataFrame,
    model_input_ratings: DataFrame,
    test_ratings: DataFrame,
) -> Figure:
    """How many training readers the recommended books have, against the
    books readers read next (test): two cumulative distributions, log scale.
    A curve far right of the readers' pushes the head."""
    readers = (
        training_interactions(model_input_ratings, test_ratings)
        .groupBy(ITEM_IDX)
        .agg(F.countDistinct(USER_IDX).alias(_READERS))
    )

    def popularity(frame: DataFrame) -> np.ndarray:
        counted = frame.select(ITEM_IDX).join(readers, on=ITEM_IDX, how="left")
        values = counted.select(F.coalesce(_READERS, F.lit(0))).toPandas()
        return np.sort(values.iloc[:, 0].to_numpy(np.int64))

    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.subplots()
    for frame, label, color in (
        (user_recommendations, "recommended (the Delta table)", "#4C72B0"),
        (test_ratings, "read next (test interactions)", "#55A868"),
    ):
        values = popularity(frame)
        if not len(values):
            continue
        share = np.arange(1, len(values) + 1) / len(values)
        median = float(np.median(values))
        # Unread books (0 readers) sit at 0.5 on the log axis.
        ax.step(
            np.maximum(values, 0.5),
            share,
            where="post",
            color=color,
            label=f"{label}: median {median:g} readers",
        )
    ax.set_xscale("log")
    ax.set_xlabel("training readers of the book (log; 0.5 = none)")
    ax.set_ylabel("share with at most this many")
    ax.set_title("Popularity of what is recommended and of what readers read next")
    ax.legend(fontsize=8, loc="lower right")
    return fig
