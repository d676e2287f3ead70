"""The reference path the served top-k and the metrics are checked against:
Spark's ``recommendForUserSubset`` with seen items filtered afterwards, and
ranking metrics averaged straight from ``metrics.per_user_ranking``. The
project ranked this way before its tiled top-k; only tests use it now. And
the project's tuning before Spark's own classes (``tuned_alone``)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from book_recommender.columns import ITEM_IDX, PREDICTION, USER_IDX
from book_recommender.metrics import RANK, RANKING_PARTS, SCORE, per_user_ranking
from book_recommender.models import Family, Interactions
from book_recommender.models.tuning import judge
from book_recommender.params import EvaluationParams, TuningParams

# (users, n) -> rows (USER_IDX, ITEM_IDX, SCORE): each user's n best items.
CandidateFn = Callable[[DataFrame, int], DataFrame]


def als_candidates(model: ALSModel) -> CandidateFn:
    """Each user's n best items by an ALS model (``recommendForUserSubset``)."""

    def candidates(users: DataFrame, n: int) -> DataFrame:
        recs = model.recommendForUserSubset(
            users.withColumnRenamed(USER_IDX, model.getUserCol()), n
        )
        return recs.select(
            F.col(model.getUserCol()).alias(USER_IDX),
            F.explode("recommendations").alias("_rec"),
        ).select(
            USER_IDX,
            F.col("_rec." + model.getItemCol()).alias(ITEM_IDX),
            F.col("_rec.rating").alias(SCORE),
        )

    return candidates


def top_k_unseen(
    candidates: CandidateFn, users: DataFrame, seen: DataFrame, k: int
) -> DataFrame:
    """Each user's ``k`` best items among those not in ``seen``, ranked 1..k.

    A user who has seen ``s`` items needs ``k + s`` candidates to be sure of ``k``
    unseen ones. Users are grouped by the next power of two of ``k + s`` so that
    a heavy reader does not make every user fetch thousands of candidates.
    """
    seen_pairs = seen.select(USER_IDX, ITEM_IDX).distinct()
    need = (
        users.select(USER_IDX)
        .distinct()
        .join(seen_pairs.groupBy(USER_IDX).count(), on=USER_IDX, how="left")
        .select(USER_IDX, (F.coalesce("count", F.lit(0)) + k).alias("need"))
        .withColumn("bucket", F.pow(F.lit(2), F.ceil(F.log2("need"))).cast("int"))
        .cache()
    )
    buckets = sorted(
        row["bucket"] for row in need.select("bucket").distinct().collect()
    )
    parts = [
        candidates(need.filter(F.col("bucket") == n).select(USER_IDX), n)
        for n in buckets
    ]
    need.unpersist()
    if not parts:
        return users.sparkSession.createDataFrame(
            [], f"{USER_IDX} int, {ITEM_IDX} int, {SCORE} float, {RANK} int"
        )
    scored = parts[0]
    for part in parts[1:]:
        scored = scored.unionByName(part)
    order = Window.partitionBy(USER_IDX).orderBy(F.desc(SCORE), F.asc(ITEM_IDX))
    return (
        scored.join(seen_pairs, on=[USER_IDX, ITEM_IDX], how="left_anti")
        .withColumn(RANK, F.row_number().over(order))
        .filter(F.col(RANK) <= k)
    )


def ranking_metric_names(k: int) -> list[str]:
    return [f"precision_at_{k}", f"recall_at_{k}", f"ndcg_at_{k}", f"map_at_{k}"]


def ranking_metrics(
    recommendations: DataFrame, relevant: DataFrame, k: int
) -> dict[str, float]:
    """precision, recall, NDCG and MAP at ``k``, averaged over users with relevant items."""
    row = (
        per_user_ranking(recommendations, relevant, k)
        .agg(
            *[F.avg(part).alias(part) for part in RANKING_PARTS],
            F.count(F.lit(1)).alias("users"),
        )
        .first()
    )
    if not row["users"]:
        return dict.fromkeys(ranking_metric_names(k), 0.0)
    return {f"{part}_at_{k}": float(row[part]) for part in RANKING_PARTS}


def tuned_alone(
    family: Family,
    ratings: DataFrame,
    interactions: Interactions,
    tuning: TuningParams,
    evaluation: EvaluationParams,
) -> dict[str, dict[str, float]]:
    """The project's tuning before Spark's classes: each grid point fitted
    alone on the same rand(seed) split TrainValidationSplit carves, and judged
    as served on its held-out part. Metrics by candidate name."""
    drawn = ratings.select("*", F.rand(tuning.seed).alias("_draw"))
    held = F.col("_draw") >= tuning.train_ratio
    fit_part = drawn.filter(~held).drop("_draw").cache()
    validation = drawn.filter(held).drop("_draw")
    out = {}
    for point in family.grid:
        estimator = family.estimator.copy(point).with_interactions(interactions)
        estimator.serving(evaluation.k, evaluation.tile_cells)
        out[estimator.candidate_name()] = judge(
            estimator.fit(fit_part), validation, evaluation
        )
    return out


def als_model_from_factors(
    users: DataFrame, items: DataFrame, rank: int, path: str
) -> ALSModel:
    """A genuine ``ALSModel`` with the given factors, written at ``path`` in
    Spark's own ALSModel layout and loaded back: the tests' way to rank given
    factors through Spark's ``recommendForUserSubset`` (the project itself never
    writes another class's layout).

    ``users`` and ``items`` have (``id`` int, ``features`` array<float>) of length
    ``rank``. The model reads USER_IDX / ITEM_IDX and drops pairs it has no
    factors for, as the fitted ones do.
    """
    spark = users.sparkSession
    metadata = {
        "class": "org.apache.spark.ml.recommendation.ALSModel",
        "timestamp": int(time.time() * 1000),
        "sparkVersion": spark.version,
        "uid": f"ALS_{uuid.uuid4().hex[:12]}",
        "paramMap": {
            "userCol": USER_IDX,
            "itemCol": ITEM_IDX,
            "coldStartStrategy": "drop",
        },
        "defaultParamMap": {
            "blockSize": 4096,
            "coldStartStrategy": "nan",
            "itemCol": "item",
            "predictionCol": PREDICTION,
            "userCol": "user",
        },
        "rank": rank,
    }
    spark.createDataFrame([(json.dumps(metadata),)], "value string").coalesce(
        1
    ).write.mode("overwrite").text(path + "/metadata")
    for name, factors in (("userFactors", users), ("itemFactors", items)):
        factors.select(
            F.col("id").cast("int").alias("id"),
            F.col("features").cast("array<float>").alias("features"),
        ).write.mode("overwrite").parquet(f"{path}/{name}")
    return ALSModel.load(path)
