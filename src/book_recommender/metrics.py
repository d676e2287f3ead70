"""Regression and top-k ranking metrics on Spark DataFrames.

Ranking follows the usual offline protocol: for each user with relevant test
items, the top ``k`` recommendations among items the user has not interacted with
in training are compared with the user's relevant test items.

- precision@k = hits / k
- recall@k = hits / |relevant|
- NDCG@k = DCG / IDCG with binary gains, DCG = sum over hits of 1 / log2(rank + 1)
- MAP@k = (sum over hits of precision at the hit's rank) / min(|relevant|, k)

Every user with relevant items counts, also one for whom the model has no
recommendation (a cold-start user scores 0), so models are compared on the same
users.
"""

from __future__ import annotations

import math

from pyspark.ml.evaluation import RankingEvaluator
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from book_recommender.columns import ITEM_IDX, PREDICTION, USER_IDX

RANK = "rank"
SCORE = "score"
REGRESSION_METRICS = ("rmse", "mae", "r2", "explained_variance")


def regression_metrics(predictions: DataFrame, label_col: str) -> dict[str, float]:
    """RMSE, MAE, R2 and explained variance of ``PREDICTION`` against ``label_col``.

    R2 = 1 - SS_res / SS_tot, as Spark's ``RegressionEvaluator``; explained variance
    = 1 - Var(label - prediction) / Var(label), the ratio scikit-learn and
    Recommenders report. (Spark's ``var`` metric is instead the variance of the
    predictions around the mean label, in squared rating units, and can exceed 1.)
    One pass over ``predictions``; R2 and explained variance are NaN when every
    label is the same, all four when no row has both a label and a prediction.
    """
    error = F.col(label_col) - F.col(PREDICTION)
    # Only rows with both a label and a prediction count.
    row = (
        predictions.where(error.isNotNull())
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.avg(error * error).alias("mse"),
            F.avg(F.abs(error)).alias("mae"),
            F.var_pop(error).alias("error_variance"),
            F.var_pop(label_col).alias("label_variance"),
        )
        .first()
    )
    if not row["n"]:
        return dict.fromkeys(REGRESSION_METRICS, math.nan)
    variance = row["label_variance"]
    return {
        "rmse": math.sqrt(row["mse"]),
        "mae": float(row["mae"]),
        "r2": 1.0 - row["mse"] / variance if variance else math.nan,
        "explained_variance": (
            1.0 - row["error_variance"] / variance if variance else math.nan
        ),
    }


def _ideal_dcg(n_relevant: Column, k: int) -> Column:
    """DCG of a perfect list of ``min(n_relevant, k)`` hits (binary gains)."""
    ideal = [0.0]
    for position in range(1, k + 1):
        ideal.append(ideal[-1] + 1.0 / math.log2(position + 1))
    return F.element_at(
        F.array(*[F.lit(v) for v in ideal]),
        (F.least(n_relevant, F.lit(k)) + 1).cast("int"),
    )


def per_user_ranking(
    recommendations: DataFrame,
    relevant: DataFrame,
    k: int,
    models: DataFrame | None = None,
) -> DataFrame:
    """One row per user with relevant items: precision, recall, NDCG and AP at k.

    ``recommendations`` has (USER_IDX, ITEM_IDX, RANK) with ranks 1..k;
    ``relevant`` has the (USER_IDX, ITEM_IDX) pairs that count as hits. A user
    without recommendations scores 0. With ``models`` (one column, the values
    of the recommendations' column of that name: several models' lists at
    once), one row per model and user, each model judged on every user.
    """
    keys = [USER_IDX] if models is None else [*models.columns, USER_IDX]
    relevant = relevant.select(USER_IDX, ITEM_IDX).distinct()
    n_relevant = relevant.groupBy(USER_IDX).agg(F.count(F.lit(1)).alias("n_rel"))
    if models is not None:
        n_relevant = n_relevant.crossJoin(F.broadcast(models))
    hits = recommendations.filter(F.col(RANK) <= k).join(
        relevant, on=[USER_IDX, ITEM_IDX], how="inner"
    )
    running = Window.partitionBy(*keys).orderBy(RANK)
    per_user_hits = (
        hits.withColumn("hits_so_far", F.count(F.lit(1)).over(running))
        .groupBy(*keys)
        .agg(
            F.count(F.lit(1)).alias("hits"),
            F.sum(1.0 / F.log2(F.col(RANK) + 1)).alias("dcg"),
            F.sum(F.col("hits_so_far") / F.col(RANK)).alias("ap_sum"),
        )
    )
    idcg = _ideal_dcg(F.col("n_rel"), k)
    return (
        n_relevant.join(per_user_hits, on=keys, how="left")
        .fillna(0, subset=["hits", "dcg", "ap_sum"])
        .select(
            *keys,
            (F.col("hits") / k).alias("precision"),
            (F.col("hits") / F.col("n_rel")).alias("recall"),
            (F.col("dcg") / idcg).alias("ndcg"),
            (F.col("ap_sum") / F.least(F.col("n_rel"), F.lit(k))).alias("map"),
        )
    )


RANKING_PARTS = ("precision", "recall", "ndcg", "map")
RELEVANT = "_relevant"  # a judged user's distinct relevant held-out items


def served_ranking(relevant: DataFrame, served: str, k: int) -> DataFrame:
    """``per_user_ranking`` of lists carried as arrays: one row per user of
    ``relevant`` (USER_IDX, ITEM_IDX and ``served``, the user's list in rank
    order, the same on each of the user's rows; null is an empty list) with
    precision, recall, NDCG and AP at ``k``, the user's other columns' first
    values and their distinct relevant items (``RELEVANT``). One grouping of the rows, each list judged in place: no join, no
    window, so an evaluation is a few short Spark jobs instead of a dozen."""
    others = [c for c in relevant.columns if c not in (USER_IDX, ITEM_IDX, served)]
    users = relevant.groupBy(USER_IDX).agg(
        F.collect_set(ITEM_IDX).alias(RELEVANT),
        F.first(served).alias("_served"),
        *[F.first(c).alias(c) for c in others],
    )
    top = F.slice(F.coalesce("_served", F.array().cast("array<int>")), 1, k)
    flagged = users.select(
        USER_IDX,
        *others,
        RELEVANT,
        F.size(RELEVANT).alias("_n_relevant"),
        F.transform(
            top, lambda item: F.array_contains(RELEVANT, item).cast("double")
        ).alias("_hit"),
    )

    def total(values: Column) -> Column:
        return F.aggregate(values, F.lit(0.0), lambda acc, x: acc + x)

    hit = F.col("_hit")
    dcg = total(F.transform(hit, lambda x, i: x / F.log2(i + 2)))
    # AP: at each hit, the hits so far over its rank.
    ap_sum = total(
        F.transform(hit, lambda x, i: x * total(F.slice(hit, 1, i + 1)) / (i + 1))
    )
    n_relevant = F.col("_n_relevant")
    return flagged.select(
        USER_IDX,
        *others,
        RELEVANT,
        (total(hit) / k).alias("precision"),
        (total(hit) / n_relevant).alias("recall"),
        (dcg / _ideal_dcg(n_relevant, k)).alias("ndcg"),
        (ap_sum / F.least(n_relevant, F.lit(k))).alias("map"),
    )


def mean_average_precision(recommendations: DataFrame, relevant: DataFrame) -> float:
    """Spark's ``RankingEvaluator`` meanAveragePrecision of the ranked lists
    (USER_IDX, ITEM_IDX, RANK) against the relevant (USER_IDX, ITEM_IDX): the
    precision sum divides by the user's number of relevant items, not by
    min(relevant, k) as ``map_at_k`` does (Recommenders reports this one as MAP).
    Users without a list count with an empty one."""
    predicted = recommendations.groupBy(USER_IDX).agg(
        F.sort_array(F.collect_list(F.struct(RANK, ITEM_IDX))).alias("ranked")
    )
    predicted = predicted.select(
        USER_IDX, F.col(f"ranked.{ITEM_IDX}").cast("array<double>").alias("prediction")
    )
    labels = relevant.groupBy(USER_IDX).agg(
        F.collect_list(F.col(ITEM_IDX).cast("double")).alias("label")
    )
    joined = labels.join(predicted, on=USER_IDX, how="left").select(
        F.coalesce("prediction", F.array().cast("array<double>")).alias("prediction"),
        "label",
    )
    evaluator = RankingEvaluator(
        predictionCol="prediction", labelCol="label", metricName="meanAveragePrecision"
    )
    return float(evaluator.evaluate(joined))
