"""Recommenders that are not a plain Spark ALS fit: the damped bias model, ALS on
its residuals with the biases folded into the factors, and a popularity ranking.

A biased ALS model is stored as an ordinary ``ALSModel`` of rank ``r + 2``: the
user vector gains ``[mu + b_u, 1]`` and the item vector ``[1, b_i]``, so that
``u . v = residual + mu + b_u + b_i``. Everything that serves ALS models
(``transform``, ``recommendForAllUsers``, MLflow's Spark flavour) then serves the
biased model too, and scoring reproduces exactly what was evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, PREDICTION, USER_IDX
from book_recommender.metrics import SCORE, CandidateFn

USER_BIAS = "user_bias"
ITEM_BIAS = "item_bias"


@dataclass(frozen=True)
class BiasModel:
    """``mu + b_u + b_i`` with damped (shrunk) biases."""

    mean: float
    user_bias: DataFrame  # USER_IDX, USER_BIAS
    item_bias: DataFrame  # ITEM_IDX, ITEM_BIAS

    def predict(self, pairs: DataFrame) -> DataFrame:
        """``pairs`` with a PREDICTION column; unknown users or items get no bias."""
        return (
            pairs.join(self.item_bias, on=ITEM_IDX, how="left")
            .join(self.user_bias, on=USER_IDX, how="left")
            .withColumn(
                PREDICTION,
                (
                    F.lit(self.mean)
                    + F.coalesce(ITEM_BIAS, F.lit(0.0))
                    + F.coalesce(USER_BIAS, F.lit(0.0))
                ).cast("float"),
            )
            .drop(ITEM_BIAS, USER_BIAS)
        )

    def residuals(
        self, ratings: DataFrame, rating_col: str, output_col: str
    ) -> DataFrame:
        """``ratings`` with ``output_col`` = rating minus the bias prediction."""
        predicted = self.predict(ratings)
        return predicted.withColumn(
            output_col, (F.col(rating_col) - F.col(PREDICTION)).cast("float")
        ).drop(PREDICTION)


def fit_bias_model(ratings: DataFrame, rating_col: str, damping: float) -> BiasModel:
    """Item biases, then user biases on what is left, each shrunk by ``damping``.

    ``b_i = sum(r - mu) / (n_i + damping)``, ``b_u = sum(r - mu - b_i) / (n_u + damping)``.
    """
    if damping < 0:
        raise ValueError(f"bias damping must be >= 0, got {damping}")
    mean = float(ratings.agg(F.avg(rating_col)).first()[0])
    centred = ratings.select(USER_IDX, ITEM_IDX, (F.col(rating_col) - mean).alias("_r"))
    item_bias = centred.groupBy(ITEM_IDX).agg(
        (F.sum("_r") / (F.count(F.lit(1)) + damping)).alias(ITEM_BIAS)
    )
    user_bias = (
        centred.join(item_bias, on=ITEM_IDX)
        .groupBy(USER_IDX)
        .agg(
            (
                F.sum(F.col("_r") - F.col(ITEM_BIAS)) / (F.count(F.lit(1)) + damping)
            ).alias(USER_BIAS)
        )
    )
    return BiasModel(
        mean=mean, user_bias=user_bias.cache(), item_bias=item_bias.cache()
    )


def fold_biases(als: ALSModel, biases: BiasModel, path: str) -> ALSModel:
    """An ALSModel (rank + 2) predicting ``als + mu + b_u + b_i``, saved at ``path``.

    Users and items the residual model has factors for keep them; a missing bias
    counts as 0. The model is written with Spark's own ALSModel layout and loaded
    back, so it is a genuine ALSModel on any file system Spark can write to.
    """
    spark = als.userFactors.sparkSession
    one = F.lit(1.0).cast("float")
    users = als.userFactors.join(
        biases.user_bias.withColumnRenamed(USER_IDX, "id"), on="id", how="left"
    ).select(
        "id",
        F.concat(
            "features",
            F.array(
                (F.lit(biases.mean) + F.coalesce(USER_BIAS, F.lit(0.0))).cast("float"),
                one,
            ),
        ).alias("features"),
    )
    items = als.itemFactors.join(
        biases.item_bias.withColumnRenamed(ITEM_IDX, "id"), on="id", how="left"
    ).select(
        "id",
        F.concat(
            "features", F.array(one, F.coalesce(ITEM_BIAS, F.lit(0.0)).cast("float"))
        ).alias("features"),
    )
    als.write().overwrite().save(path + "/_residual")
    metadata = json.loads(spark.read.text(path + "/_residual/metadata").first()[0])
    metadata["rank"] = als.rank + 2
    spark.createDataFrame([(json.dumps(metadata),)], "value string").coalesce(
        1
    ).write.mode("overwrite").text(path + "/metadata")
    users.write.mode("overwrite").parquet(path + "/userFactors")
    items.write.mode("overwrite").parquet(path + "/itemFactors")
    return ALSModel.load(path)


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


def popularity_candidates(interactions: DataFrame) -> CandidateFn:
    """Each user's n most popular items: the most interacted-with in ``interactions``."""
    counts = interactions.groupBy(ITEM_IDX).agg(
        F.count(F.lit(1)).cast("float").alias(SCORE)
    )

    def candidates(users: DataFrame, n: int) -> DataFrame:
        top = counts.orderBy(F.desc(SCORE), F.asc(ITEM_IDX)).limit(n)
        return users.select(USER_IDX).crossJoin(F.broadcast(top))

    return candidates
