"""The damped bias model ``mu + b_u + b_i``: the rating baseline, and the part
biased ALS factorizes the residuals of."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark import keyword_only
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, PREDICTION, USER_IDX
from book_recommender.models.base import (
    Recommender,
    RecommenderModel,
    TrainingData,
)

USER_BIAS = "user_bias"
ITEM_BIAS = "item_bias"


@dataclass(frozen=True)
class Biases:
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


def fit_biases(ratings: DataFrame, rating_col: str, damping: float) -> Biases:
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
    return Biases(mean=mean, user_bias=user_bias.cache(), item_bias=item_bias.cache())


def rating_range(data: TrainingData) -> tuple[float, float]:
    """The training ratings' range, which rating predictions are clipped to."""
    bounds = data.ratings.agg(F.min(data.rating_col), F.max(data.rating_col)).first()
    return float(bounds[0]), float(bounds[1])


class HasDamping(Params):
    damping = Param(
        Params._dummy(),
        "damping",
        "ratings' weight of the prior: b = sum / (count + damping)",
        typeConverter=TypeConverters.toFloat,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(damping=5.0)


class BiasBaseline(Recommender, HasDamping):
    """The rating baseline: damped user and item biases, no factors."""

    kind = "bias"
    role = "rating"
    baseline = True

    @keyword_only
    def __init__(self, *, damping=None) -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, damping=None):
        """Sets the given Params, by keyword."""
        return self._set(**self._input_kwargs)

    def candidate_name(self) -> str:
        return "bias_baseline"

    def _fit_data(self, data: TrainingData) -> BiasBaselineModel:
        biases = fit_biases(
            data.ratings, data.rating_col, self.getOrDefault(self.damping)
        )
        model = BiasBaselineModel()
        model.biases, model.clip = biases, rating_range(data)
        return model


class BiasBaselineModel(RecommenderModel):
    """Predicts ``mu + b_u + b_i`` for pairs whose user and item have explicit
    training ratings. Served (and exported) as two factors each, ``[mu + b_u,
    1] . [1, b_i]`` in float32; readers without a bias get the fallback."""

    biases: Biases
    rank = 2

    @property
    def predicts_ratings(self) -> bool:
        return True

    def _user(self) -> F.Column:
        return (F.lit(self.biases.mean) + F.col(USER_BIAS)).cast("float")

    def user_factors(self) -> DataFrame:
        return self.biases.user_bias.select(
            F.col(USER_IDX).alias("id"),
            F.array(self._user(), F.lit(1.0).cast("float")).alias("features"),
        )

    def item_factors(self) -> DataFrame:
        return self.biases.item_bias.select(
            F.col(ITEM_IDX).alias("id"),
            F.array(F.lit(1.0).cast("float"), F.col(ITEM_BIAS).cast("float")).alias(
                "features"
            ),
        )

    def predict(self, pairs: DataFrame) -> DataFrame:
        # The float32 sum of the two factors' products, as served.
        known = F.col(USER_BIAS).isNotNull() & F.col(ITEM_BIAS).isNotNull()
        predicted = (
            pairs.join(self.biases.item_bias, on=ITEM_IDX, how="left")
            .join(self.biases.user_bias, on=USER_IDX, how="left")
            .withColumn(
                PREDICTION,
                F.when(known, self._user() + F.col(ITEM_BIAS).cast("float")),
            )
            .drop(USER_BIAS, ITEM_BIAS)
        )
        return self._clipped(predicted)
