"""Spark's ALS as three families: implicit ALS (ranking), the tutorial's
explicit ALS and biased ALS (rating).

Biased ALS is the damped bias model ``mu + b_u + b_i`` (``bias``) and ALS on
its residuals; the biases are folded into the factors, stored as an
``ALSModel`` of rank ``r + 2``: the user vector gains ``[mu + b_u, 1]`` and the
item vector ``[1, b_i]``, so ``u . v = residual + mu + b_u + b_i``, and MLflow's
Spark flavour logs it like any ALS model.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Literal

from pydantic import Field
from pyspark.ml.param import TypeConverters
from pyspark.ml.param.shared import HasMaxIter, HasRegParam, HasSeed
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.axes import NonNegativeAxis, PositiveAxis, RankAxis, Section
from book_recommender.columns import ITEM_IDX, PREDICTION, USER_IDX
from book_recommender.models.base import (
    Recommender,
    RecommenderModel,
    TrainingData,
    param,
)
from book_recommender.models.bias import (
    ITEM_BIAS,
    USER_BIAS,
    BiasBaseline,
    Biases,
    HasDamping,
    fit_biases,
    rating_range,
)
from book_recommender.models.families import Family, FamilyRow, grid

STRENGTH = "_strength"
RESIDUAL = "_residual"


class _AlsParams(HasMaxIter, HasRegParam, HasSeed):
    rank = param("rank", "factors per user and item", TypeConverters.toInt)
    numBlocks = param(
        "numBlocks",
        "ALS user and item blocks each; 0: one per core (Spark's own default "
        "of 10 makes every iteration 10 x 10 tiny tasks on a small machine)",
        TypeConverters.toInt,
    )
    nonnegative = param("nonnegative", "non-negative factors", TypeConverters.toBoolean)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(
            rank=10, regParam=0.1, maxIter=10, seed=42, numBlocks=0, nonnegative=False
        )

    def _als(self, data: TrainingData, **extra) -> ALS:
        blocks = (
            self.getOrDefault(self.numBlocks)
            or data.ratings.sparkSession.sparkContext.defaultParallelism
        )
        return ALS(
            userCol=USER_IDX,
            itemCol=ITEM_IDX,
            rank=self.getOrDefault(self.rank),
            regParam=self.getOrDefault(self.regParam),
            maxIter=self.getOrDefault(self.maxIter),
            coldStartStrategy="drop",
            seed=self.getOrDefault(self.seed),
            numUserBlocks=blocks,
            numItemBlocks=blocks,
            **extra,
        )


class _RatingAls(Recommender, _AlsParams):
    """A rating family's ALS: named by its rank and regParam."""

    role = "rating"
    axes = ("rank", "regParam")

    def candidate_name(self) -> str:
        rank, reg = self.hyperparameters().values()
        return f"{self.kind}_rank{rank}_reg{reg:g}"


class AlsRecommenderModel(RecommenderModel):
    """A fitted ALS family: its factors are the model."""

    als: ALSModel

    @classmethod
    def of(cls, als: ALSModel) -> AlsRecommenderModel:
        """A model holding the fitted ``als``."""
        model = cls()
        model.als = als
        return model

    @property
    def rank(self) -> int:
        return int(self.als.rank)

    @property
    def spark_model(self) -> ALSModel:
        return self.als

    def user_factors(self) -> DataFrame:
        return self.als.userFactors

    def item_factors(self) -> DataFrame:
        return self.als.itemFactors


class AlsRatingModel(AlsRecommenderModel):
    """A rating family's ALS: ``predict`` as ``ALSModel.transform``, clipped."""

    @property
    def predicts_ratings(self) -> bool:
        return True

    def predict(self, pairs: DataFrame) -> DataFrame:
        keep_all = self.als.copy({self.als.coldStartStrategy: "nan"})
        return self._clipped(keep_all.transform(pairs))


class ImplicitAls(Recommender, _AlsParams):
    """Implicit ALS on every interaction: the explicit ratings with the rating
    as strength, the implicit ones with ``implicitStrength``; confidence
    ``1 + alpha * strength``."""

    alpha = param("alpha", "confidence per unit of strength", TypeConverters.toFloat)
    implicitStrength = param(
        "implicitStrength",
        "strength of an implicit interaction",
        TypeConverters.toFloat,
    )
    minItemInteractions = param(
        "minItemInteractions",
        "books with fewer interactions get no factors",
        TypeConverters.toInt,
    )

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._setDefault(alpha=1.0, implicitStrength=1.0, minItemInteractions=1)

    kind = "implicit"
    axes = ("rank", "regParam", "alpha")

    def candidate_name(self) -> str:
        rank, reg, alpha = self.hyperparameters().values()
        return f"{self.kind}_rank{rank}_reg{reg:g}_alpha{alpha:g}"

    def _fit_data(self, data: TrainingData) -> AlsRecommenderModel:
        strength = self.getOrDefault(self.implicitStrength)
        interactions = data.ratings.select(
            USER_IDX, ITEM_IDX, F.col(data.rating_col).cast("float").alias(STRENGTH)
        ).unionByName(
            data.implicit.select(
                USER_IDX, ITEM_IDX, F.lit(strength).cast("float").alias(STRENGTH)
            )
        )
        minimum = self.getOrDefault(self.minItemInteractions)
        if minimum > 1:
            supported = (
                interactions.groupBy(ITEM_IDX)
                .count()
                .filter(F.col("count") >= minimum)
                .select(ITEM_IDX)
            )
            interactions = interactions.join(supported, on=ITEM_IDX, how="left_semi")
        return AlsRecommenderModel.of(
            self._als(
                data,
                ratingCol=STRENGTH,
                implicitPrefs=True,
                alpha=self.getOrDefault(self.alpha),
                nonnegative=self.getOrDefault(self.nonnegative),
            ).fit(interactions)
        )


class ExplicitAls(_RatingAls):
    """The tutorial's ALS on the explicit ratings."""

    kind = "explicit"

    def _fit_data(self, data: TrainingData) -> AlsRatingModel:
        model = AlsRatingModel()
        model.als = self._als(
            data,
            ratingCol=data.rating_col,
            nonnegative=self.getOrDefault(self.nonnegative),
        ).fit(data.ratings)
        model.clip = rating_range(data)
        return model


class BiasedAls(_RatingAls, HasDamping):
    """ALS on the residuals of the damped bias model, the biases folded in.
    Residuals can be negative, so its factors are never non-negative."""

    kind = "biased"

    def _fit_data(self, data: TrainingData) -> AlsRatingModel:
        biases = fit_biases(
            data.ratings, data.rating_col, self.getOrDefault(self.damping)
        )
        residual = self._als(data, ratingCol=RESIDUAL, nonnegative=False).fit(
            biases.residuals(data.ratings, data.rating_col, RESIDUAL)
        )
        model = AlsRatingModel()
        model.als = fold_biases(residual, biases, _workdir(data))
        model.clip = rating_range(data)
        return model


def _workdir(data: TrainingData) -> str:
    spark = data.ratings.sparkSession
    folder = spark.sparkContext.getCheckpointDir() or spark.conf.get(
        "spark.local.dir", "/tmp"
    )
    return f"{folder}/candidates/{uuid.uuid4().hex}"


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


def fold_biases(als: ALSModel, biases: Biases, path: str) -> ALSModel:
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


class RankingSection(Section):
    """Implicit ALS on every interaction (the implicit zeros included)."""

    enabled: bool
    rank: RankAxis
    reg_param: NonNegativeAxis
    alpha: PositiveAxis
    num_epochs: int = Field(ge=1)
    nonnegative: bool
    implicit_strength: float = Field(gt=0)
    min_item_interactions: int = Field(ge=1)


class RatingSection(Section):
    """Rating predictors: biased ALS, or the tutorial's explicit ALS."""

    enabled: bool
    kind: Literal["biased", "explicit"]
    rank: RankAxis
    reg_param: NonNegativeAxis
    num_epochs: int = Field(ge=1)
    nonnegative: bool  # explicit ALS only: biased residuals are never non-negative
    bias_damping: float = Field(ge=0)  # biased ALS and the bias baseline


class AlsParams(Section):
    """The ``als`` group: the ranking and the rating ALS families."""

    seed: int
    num_blocks: int | None = Field(ge=1)
    ranking: RankingSection
    rating: RatingSection


def als_families(als: AlsParams) -> list[Family]:
    """Implicit ALS (ranking); the bias baseline and biased or explicit ALS
    (rating)."""
    out = []
    ranking, rating, blocks = als.ranking, als.rating, als.num_blocks or 0
    if ranking.enabled:
        implicit = ImplicitAls(
            maxIter=ranking.num_epochs,
            seed=als.seed,
            numBlocks=blocks,
            nonnegative=ranking.nonnegative,
            implicitStrength=ranking.implicit_strength,
            minItemInteractions=ranking.min_item_interactions,
        )
        axes = grid(
            implicit, rank=ranking.rank, regParam=ranking.reg_param, alpha=ranking.alpha
        )
        out.append(Family(implicit.kind, implicit, axes))
    if rating.enabled:
        bias = BiasBaseline(damping=rating.bias_damping)
        out.append(Family(bias.kind, bias, [{}]))
        common = {"maxIter": rating.num_epochs, "seed": als.seed, "numBlocks": blocks}
        estimator = (
            BiasedAls(damping=rating.bias_damping, **common)
            if rating.kind == BiasedAls.kind
            else ExplicitAls(nonnegative=rating.nonnegative, **common)
        )
        axes = grid(estimator, rank=rating.rank, regParam=rating.reg_param)
        out.append(Family(estimator.kind, estimator, axes))
    return out


FAMILIES = FamilyRow(
    order=10,
    group="als",
    section=AlsParams,
    build=als_families,
    switches=lambda als, _: {
        "als.ranking.enabled": als.ranking.enabled,
        "als.rating.enabled": als.rating.enabled,
    },
)
