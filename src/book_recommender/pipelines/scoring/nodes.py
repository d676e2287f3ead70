"""Nodes of the scoring pipeline: top-k books for every user from the registered
recommender, as a Delta table."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.datasets import RegisteredRecommender
from book_recommender.params import ScoringParams
from book_recommender.serving import (
    BECAUSE,
    COLD_START,
    RANK,
    SCORE,
    Bundle,
    because_columns,
)

logger = logging.getLogger(__name__)

MODEL_VERSION = "model_version"


def _ranked_rows(
    bundle: Bundle, rows: np.ndarray, k: int, tile_cells: int, exclude_rated: bool
) -> Iterator[pd.DataFrame]:
    """The Delta table's rows for the users at ``rows`` of the bundle."""
    user = bundle.columns["user_id"]
    for ranked in bundle.top_k(rows, k, tile_cells, exclude_rated):
        requested = bundle.users.iloc[rows[ranked["request"].to_numpy()]]
        items = bundle.items.iloc[ranked["position"].to_numpy()]
        cold = ranked[COLD_START].to_numpy()
        reason = ranked[BECAUSE].to_numpy()
        because = bundle.items.iloc[np.clip(reason, 0, None)]
        yield pd.DataFrame(
            {
                user: requested["user"].to_numpy(),
                USER_IDX: requested["user_idx"].to_numpy(np.int32),
                RANK: ranked[RANK].to_numpy(np.int32),
                **{c: items[c].to_numpy() for c in bundle.meta["item_columns"]},
                ITEM_IDX: items["item_idx"].to_numpy(np.int32),
                # A fallback's score is a popularity count, not the model's: none.
                SCORE: np.where(cold, np.nan, ranked[SCORE].to_numpy(np.float32)),
                COLD_START: cold,
                # The seen book each pick is due to (null for the fallback's).
                **{
                    column: np.where(reason >= 0, because[c].to_numpy(), None)
                    for c, column in because_columns(bundle.meta).items()
                },
            }
        )


def recommend_for_users(
    champion: RegisteredRecommender, scoring: ScoringParams
) -> DataFrame:
    """The top ``k`` books for every user with an interaction, titles joined.

    Ranked exactly as the registered model answers a request (``Bundle.top_k``),
    in Spark tasks over blocks of users. Books the user already rated are left
    out (unless ``exclude_rated`` is false, as in the tutorial). Users without
    factors get the most popular books they have not rated, flagged
    ``cold_start``. ``because_<item id>`` and ``because_<title>`` name the
    rated book each pick is due to (``Bundle.because_of``; null for the
    fallback's picks).
    """
    k, tile_cells, exclude_rated = scoring.k, scoring.tile_cells, scoring.exclude_rated
    bundle = champion.bundle
    if bundle.users.empty or not len(bundle.table.ids):
        raise ValueError(
            f"{champion.name} version {champion.version} knows "
            f"{len(bundle.users)} users and {len(bundle.table.ids)} items: refusing "
            "to write an empty recommendations table. The previous Delta version "
            "stays current; score another version or retrain on real data."
        )
    spark = SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError("No active SparkSession: run through `kedro run`.")
    logger.info(
        "Scoring %s users with %s version %s",
        len(bundle.users),
        champion.name,
        champion.version,
    )
    shared = spark.sparkContext.broadcast(bundle)
    user = bundle.columns["user_id"]
    schema = ", ".join(
        [
            f"`{user}` string",
            f"{USER_IDX} int",
            f"{RANK} int",
            *[f"`{c}` string" for c in bundle.meta["item_columns"]],
            f"{ITEM_IDX} int",
            f"{SCORE} float",
            f"{COLD_START} boolean",
            *[f"`{c}` string" for c in because_columns(bundle.meta).values()],
        ]
    )

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield from _ranked_rows(
                shared.value, batch["id"].to_numpy(), k, tile_cells, exclude_rated
            )

    return (
        spark.range(len(bundle.users))
        .repartition(spark.sparkContext.defaultParallelism * 2)
        .mapInPandas(score, schema)
        .withColumn(MODEL_VERSION, F.lit(champion.version))
    )


def summarize_recommendations(
    user_recommendations: DataFrame, champion: RegisteredRecommender
) -> dict[str, dict[str, float]]:
    """Row count, users and the model version, for the MLflow run."""
    row = user_recommendations.agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct(USER_IDX).alias("users"),
        F.sum(F.col(COLD_START).cast("int")).alias("cold"),
    ).first()
    values = {
        "scoring.rows": float(row["rows"]),
        "scoring.users": float(row["users"]),
        "scoring.cold_start_rows": float(row["cold"] or 0),
        "scoring.model_version": float(champion.version),
    }
    logger.info("Wrote %s recommendations for %s users", row["rows"], row["users"])
    return {key: {"value": value, "step": 0} for key, value in values.items()}
