"""Spark's ALS as three families: implicit ALS (ranking), the tutorial's
explicit ALS and biased ALS (rating).

Biased ALS is the damped bias model ``mu + b_u + b_i`` (``bias``) and ALS on
its residuals (``BiasedAlsModel``): it predicts ``residual + mu + b_u + b_i``
and is served with the biases folded into its factors, rank ``r + 2``: the user
vector gains ``[mu + b_u, 1]`` and the item vector ``[1, b_i]``, so ``u . v`` is
that sum. It is no ``ALSModel``, so no candidate run logs it with MLflow's Spark
flavour: what serves it is the registered pyfunc of its arrays.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pyspark import keyword_only
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
    _fold_in: dict[str, Any] | None = None

    @classmethod
    def of(
        cls, als: ALSModel, fold_in: dict[str, Any] | None = None
    ) -> AlsRecommenderModel:
        """A model holding the fitted ``als`` (``fold_in``: how a reader's
        factors are solved from a history, ``RecommenderModel.fold_in``)."""
        model = cls()
        model.als = als
        model._fold_in = fold_in
        return model

    @property
    def fold_in(self) -> dict[str, Any] | None:
        return self._fold_in

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

    @keyword_only
    def __init__(
        self,
        *,
        rank=None,
        regParam=None,
        maxIter=None,
        seed=None,
        numBlocks=None,
        nonnegative=None,
        alpha=None,
        implicitStrength=None,
        minItemInteractions=None,
    ) -> None:
        super().__init__()
        self._setDefault(alpha=1.0, implicitStrength=1.0, minItemInteractions=1)
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        rank=None,
        regParam=None,
        maxIter=None,
        seed=None,
        numBlocks=None,
        nonnegative=None,
        alpha=None,
        implicitStrength=None,
        minItemInteractions=None,
    ):
        """Sets the given Params, by keyword."""
        return self._set(**self._input_kwargs)

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
        als = self._als(
            data,
            ratingCol=STRENGTH,
            implicitPrefs=True,
            alpha=self.getOrDefault(self.alpha),
            nonnegative=self.getOrDefault(self.nonnegative),
        )
        # What the served model needs to solve a reader's factors from a
        # history as the fit's last half-step solved its users'.
        fold_in = {
            "kind": "implicit_als",
            "reg": als.getRegParam(),
            "alpha": als.getAlpha(),
            "nonnegative": als.getNonnegative(),
            "implicit_strength": strength,
        }
        return AlsRecommenderModel.of(als.fit(interactions), fold_in)


class ExplicitAls(_RatingAls):
    """The tutorial's ALS on the explicit ratings."""

    kind = "explicit"

    @keyword_only
    def __init__(
        self,
        *,
        rank=None,
        regParam=None,
        maxIter=None,
        seed=None,
        numBlocks=None,
        nonnegative=None,
    ) -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        rank=None,
        regParam=None,
        maxIter=None,
        seed=None,
        numBlocks=None,
        nonnegative=None,
    ):
        """Sets the given Params, by keyword."""
        return self._set(**self._input_kwargs)

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

    @keyword_only
    def __init__(
        self,
        *,
        rank=None,
        regParam=None,
        maxIter=None,
        seed=None,
        numBlocks=None,
        damping=None,
    ) -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        rank=None,
        regParam=None,
        maxIter=None,
        seed=None,
        numBlocks=None,
        damping=None,
    ):
        """Sets the given Params, by keyword."""
        return self._set(**self._input_kwargs)

    def _fit_data(self, data: TrainingData) -> AlsRatingModel:
        biases = fit_biases(
            data.ratings, data.rating_col, self.getOrDefault(self.damping)
        )
        residual = self._als(data, ratingCol=RESIDUAL, nonnegative=False).fit(
            biases.residuals(data.ratings, data.rating_col, RESIDUAL)
        )
        model = BiasedAlsModel()
        model.als, model.biases, model.clip = residual, biases, rating_range(data)
        return model


class BiasedAlsModel(AlsRatingModel):
    """Biased ALS fitted: the residual ``ALSModel`` (``als``) and the
    ``Biases``; see the module docstring."""

    biases: Biases

    @property
    def rank(self) -> int:
        return int(self.als.rank) + 2

    @property
    def spark_model(self) -> None:
        """None: the residual ``ALSModel`` alone is not what it predicts."""
        return None

    def user_factors(self) -> DataFrame:
        """The residual factors and ``[mu + b_u, 1]`` (a missing bias: 0)."""
        bias = F.lit(self.biases.mean) + F.coalesce(USER_BIAS, F.lit(0.0))
        return self._folded(
            self.als.userFactors, self.biases.user_bias, USER_IDX, bias, F.lit(1.0)
        )

    def item_factors(self) -> DataFrame:
        """The residual factors and ``[1, b_i]`` (a missing bias: 0)."""
        bias = F.coalesce(ITEM_BIAS, F.lit(0.0))
        return self._folded(
            self.als.itemFactors, self.biases.item_bias, ITEM_IDX, F.lit(1.0), bias
        )

    @staticmethod
    def _folded(
        factors: DataFrame, biases: DataFrame, key: str, first, second
    ) -> DataFrame:
        return factors.join(
            biases.withColumnRenamed(key, "id"), on="id", how="left"
        ).select(
            "id",
            F.concat(
                "features", F.array(first.cast("float"), second.cast("float"))
            ).alias("features"),
        )

    def predict(self, pairs: DataFrame) -> DataFrame:
        """The residual ALS's prediction (NaN where it has no factors) plus
        ``mu + b_u + b_i``, clipped."""
        residual = self.als.copy({self.als.coldStartStrategy: "nan"}).transform(pairs)
        predicted = (
            residual.join(self.biases.user_bias, on=USER_IDX, how="left")
            .join(self.biases.item_bias, on=ITEM_IDX, how="left")
            .withColumn(
                PREDICTION,
                F.col(PREDICTION)
                + F.lit(self.biases.mean)
                + F.coalesce(USER_BIAS, F.lit(0.0))
                + F.coalesce(ITEM_BIAS, F.lit(0.0)),
            )
            .drop(USER_BIAS, ITEM_BIAS)
        )
        return self._clipped(predicted)


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
    group_switches=lambda als: {
        "als.ranking.enabled": als.ranking.enabled,
        "als.rating.enabled": als.rating.enabled,
    },
)
