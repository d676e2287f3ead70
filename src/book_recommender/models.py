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
import time
import uuid
from dataclasses import dataclass

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, PREDICTION, USER_IDX
from book_recommender.metrics import SCORE

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


def als_model_from_factors(
    users: DataFrame, items: DataFrame, rank: int, path: str
) -> ALSModel:
    """A genuine ``ALSModel`` with the given factors, written at ``path`` in
    Spark's own ALSModel layout and loaded back.

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


def fold_biases(als: ALSModel, biases: BiasModel, path: str) -> ALSModel:
    """An ALSModel (rank + 2) predicting ``als + mu + b_u + b_i``, saved at ``path``.

    Users and items the residual model has factors for keep them; a missing bias
    counts as 0.
    """
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
    return als_model_from_factors(users, items, als.rank + 2, path)


def bias_als_model(biases: BiasModel, path: str) -> ALSModel:
    """The bias baseline ``mu + b_u + b_i`` as a rank-2 ALSModel.

    Users and items with a bias (those with explicit training ratings) get
    factors ``[mu + b_u, 1]`` and ``[1, b_i]``; served like any ALS model, the
    others get the popular fallback.
    """
    one = F.lit(1.0).cast("float")
    users = biases.user_bias.select(
        F.col(USER_IDX).alias("id"),
        F.array((F.lit(biases.mean) + F.col(USER_BIAS)).cast("float"), one).alias(
            "features"
        ),
    )
    items = biases.item_bias.select(
        F.col(ITEM_IDX).alias("id"),
        F.array(one, F.col(ITEM_BIAS).cast("float")).alias("features"),
    )
    return als_model_from_factors(users, items, 2, path)


def popularity_scores(interactions: DataFrame) -> DataFrame:
    """(ITEM_IDX, SCORE): how many interactions each item has."""
    return interactions.groupBy(ITEM_IDX).agg(
        F.count(F.lit(1)).cast("float").alias(SCORE)
    )


def popularity_als_model(interactions: DataFrame, path: str) -> ALSModel:
    """The popularity baseline as a rank-1 ALSModel: every user who interacted
    has the factor ``[1]``, every item its interaction count, so ``u . v`` ranks
    books by popularity for everyone."""
    users = (
        interactions.select(F.col(USER_IDX).alias("id"))
        .distinct()
        .select("id", F.array(F.lit(1.0).cast("float")).alias("features"))
    )
    items = popularity_scores(interactions).select(
        F.col(ITEM_IDX).alias("id"), F.array(SCORE).alias("features")
    )
    return als_model_from_factors(users, items, 1, path)
