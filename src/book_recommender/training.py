"""Fitting and evaluating ALS recommenders; used by the data_science nodes.

Three kinds of model, all stored as a Spark ``ALSModel``:

- ``explicit``: the tutorial's ALS on explicit ratings;
- ``biased``: the damped bias model ``mu + b_u + b_i``, ALS on its residuals, the
  biases folded into the factors (see ``models.fold_biases``), predictions
  clipped to the training ratings' range;
- ``implicit``: ALS with ``implicitPrefs`` on interaction strengths, the
  explicit ratings and the implicit zeros alike.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, PREDICTION, USER_IDX
from book_recommender.metrics import (
    REGRESSION_METRICS,
    CandidateFn,
    ranking_metric_names,
    ranking_metrics,
    regression_metrics,
    top_k_unseen,
)
from book_recommender.models import (
    BiasModel,
    als_candidates,
    fit_bias_model,
    fold_biases,
)

PARAMS_FILE = "conf/base/parameters_data_science.yml"
STRENGTH = "_strength"
RESIDUAL = "_residual"
TUNING_METHODS = ("TrainValidationSplit", "CrossValidator")
LOWER_IS_BETTER = {"rmse", "mae"}


class ConfigurationError(ValueError):
    """A data_science setting has a value the pipeline cannot use."""


@dataclass(frozen=True)
class TrainingData:
    """What a model learns from, and what it must not recommend again."""

    ratings: DataFrame  # explicit training ratings (USER_IDX, ITEM_IDX, rating)
    implicit: DataFrame  # implicit interactions (USER_IDX, ITEM_IDX)
    rating_col: str

    @property
    def seen(self) -> DataFrame:
        return self.ratings.select(USER_IDX, ITEM_IDX).unionByName(
            self.implicit.select(USER_IDX, ITEM_IDX)
        )


@dataclass(frozen=True)
class ModelSpec:
    """One grid point: the model kind and its hyperparameters."""

    kind: str
    rank: int
    reg_param: float
    alpha: float | None = None

    @property
    def name(self) -> str:
        alpha = f"_alpha{self.alpha:g}" if self.alpha is not None else ""
        return f"{self.kind}_rank{self.rank}_reg{self.reg_param:g}{alpha}"

    def as_params(self) -> dict[str, Any]:
        params = {
            "model_kind": self.kind,
            "rank": self.rank,
            "reg_param": self.reg_param,
        }
        if self.alpha is not None:
            params["alpha"] = self.alpha
        return params


@dataclass(frozen=True)
class FittedModel:
    spec: ModelSpec
    model: ALSModel
    clip: tuple[float, float] | None  # rating range predictions are clipped to

    def predict(self, pairs: DataFrame) -> DataFrame:
        predicted = self.model.transform(pairs)
        if self.clip is None:
            return predicted
        low, high = self.clip
        return predicted.withColumn(
            PREDICTION, F.least(F.greatest(F.col(PREDICTION), F.lit(low)), F.lit(high))
        )


# --------------------------------------------------------------------------------------
# Configuration


def model_kind(als: dict[str, Any]) -> str:
    implicit = bool(als.get("implicit_prefs", False))
    biased = bool(als.get("biased", False))
    if implicit and biased:
        raise ConfigurationError(
            "als.implicit_prefs and als.biased are both true; biased ALS models explicit "
            f"ratings, so set at most one of them ({PARAMS_FILE})."
        )
    return "implicit" if implicit else "biased" if biased else "explicit"


def _as_list(value: Any, key: str) -> list[float]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise ConfigurationError(
            f"{key} must be a number or a non-empty list of numbers; found {value!r} ({PARAMS_FILE})."
        )
    return values


def model_grid(als: dict[str, Any]) -> list[ModelSpec]:
    """The rank x regParam (x alpha, for implicit models) grid."""
    kind = model_kind(als)
    ranks = _as_list(als.get("rank"), "als.rank")
    regs = _as_list(als.get("reg_param"), "als.reg_param")
    if any(r < 1 or int(r) != r for r in ranks):
        raise ConfigurationError(
            f"als.rank values must be whole numbers >= 1; found {ranks}."
        )
    if any(r < 0 for r in regs):
        raise ConfigurationError(f"als.reg_param values must be >= 0; found {regs}.")
    alphas: list[float | None] = [None]
    if kind == "implicit":
        alphas = _as_list(als.get("alpha", 1.0), "als.alpha")
    return [
        ModelSpec(kind, int(rank), float(reg), None if alpha is None else float(alpha))
        for rank, reg, alpha in itertools.product(ranks, regs, alphas)
    ]


def selection_metric(evaluation: dict[str, Any], kind: str) -> str:
    """The metric that picks the champion: the configured one or the kind's default."""
    k = int(evaluation.get("k", 10))
    chosen = evaluation.get("select_by") or (
        "rmse" if kind != "implicit" else f"ndcg_at_{k}"
    )
    allowed = list(ranking_metric_names(k))
    if kind != "implicit":
        allowed = [*REGRESSION_METRICS, *allowed]
    if chosen not in allowed or chosen == "explained_variance":
        raise ConfigurationError(
            f"evaluation.select_by is {chosen!r}; for {kind} models use one of "
            f"{[m for m in allowed if m != 'explained_variance']} ({PARAMS_FILE})."
        )
    return chosen


def better(metric: str, candidate: float, best: float) -> bool:
    return candidate < best if metric in LOWER_IS_BETTER else candidate > best


# --------------------------------------------------------------------------------------
# Fitting


def fit(spec: ModelSpec, data: TrainingData, als: dict[str, Any]) -> FittedModel:
    """Fits one grid point on ``data``.

    ALS splits users and items into ``als.num_blocks`` blocks each (null: Spark's
    default parallelism, i.e. the cores it has). Spark's own default of 10 makes
    every iteration and every top-k cross join run 10 x 10 tiny tasks on a small
    machine: on MovieLens 100k with 2 cores, 2 blocks fit 4x faster and rank 2x
    faster than 10 (benchmarks/, README "Performance").
    """
    blocks = int(
        als.get("num_blocks")
        or data.ratings.sparkSession.sparkContext.defaultParallelism
    )
    common = {
        "userCol": USER_IDX,
        "itemCol": ITEM_IDX,
        "rank": spec.rank,
        "regParam": spec.reg_param,
        "maxIter": int(als.get("num_epochs", 10)),
        "coldStartStrategy": als.get("cold_start_strategy", "drop"),
        "seed": int(als.get("seed", 42)),
        "numUserBlocks": blocks,
        "numItemBlocks": blocks,
    }
    if spec.kind == "implicit":
        strength = float(als.get("implicit_strength", 1.0))
        interactions = data.ratings.select(
            USER_IDX, ITEM_IDX, F.col(data.rating_col).cast("float").alias(STRENGTH)
        ).unionByName(
            data.implicit.select(
                USER_IDX, ITEM_IDX, F.lit(strength).cast("float").alias(STRENGTH)
            )
        )
        model = ALS(
            ratingCol=STRENGTH,
            implicitPrefs=True,
            alpha=float(spec.alpha),
            nonnegative=bool(als.get("nonnegative", True)),
            **common,
        ).fit(interactions)
        return FittedModel(spec, model, clip=None)
    if spec.kind == "explicit":
        model = ALS(
            ratingCol=data.rating_col,
            nonnegative=bool(als.get("nonnegative", True)),
            **common,
        ).fit(data.ratings)
        return FittedModel(spec, model, clip=None)
    # biased: residuals can be negative, so the residual model is never non-negative.
    biases = fit_bias_model(
        data.ratings, data.rating_col, float(als.get("bias_damping", 5.0))
    )
    residual = ALS(ratingCol=RESIDUAL, nonnegative=False, **common).fit(
        biases.residuals(data.ratings, data.rating_col, RESIDUAL)
    )
    spark = data.ratings.sparkSession
    folder = spark.sparkContext.getCheckpointDir() or spark.conf.get(
        "spark.local.dir", "/tmp"
    )
    model = fold_biases(residual, biases, f"{folder}/biased_als/{uuid.uuid4().hex}")
    bounds = data.ratings.agg(F.min(data.rating_col), F.max(data.rating_col)).first()
    return FittedModel(spec, model, clip=(float(bounds[0]), float(bounds[1])))


def validation_splits(
    ratings: DataFrame, tuning: dict[str, Any]
) -> list[tuple[DataFrame, DataFrame]]:
    """(fit, validation) pairs carved from the training ratings, never from test.

    TrainValidationSplit: one random split by ``train_ratio``; CrossValidator:
    ``num_folds`` random folds, each the validation set once (as Spark's classes).
    """
    method = tuning.get("method")
    seed = int(tuning.get("seed", 42))
    if method == "TrainValidationSplit":
        ratio = float(tuning.get("train_ratio", 0.8))
        if not 0 < ratio < 1:
            raise ConfigurationError(
                f"tuning.train_ratio must lie in (0, 1); found {ratio}."
            )
        fit_part, validation = ratings.randomSplit([ratio, 1 - ratio], seed=seed)
        return [(fit_part, validation)]
    if method == "CrossValidator":
        folds = int(tuning.get("num_folds", 5))
        if folds < 2:
            raise ConfigurationError(f"tuning.num_folds must be >= 2; found {folds}.")
        parts = ratings.randomSplit([1.0] * folds, seed=seed)
        splits = []
        for i, validation in enumerate(parts):
            rest = [p for j, p in enumerate(parts) if j != i]
            fit_part = rest[0]
            for part in rest[1:]:
                fit_part = fit_part.unionByName(part)
            splits.append((fit_part, validation))
        return splits
    raise ConfigurationError(
        f"tuning.method is {method!r}; use one of {list(TUNING_METHODS)} ({PARAMS_FILE})."
    )


# --------------------------------------------------------------------------------------
# Evaluation


def known_pairs(target: DataFrame, train: DataFrame) -> DataFrame:
    """Rows of ``target`` whose user and item both occur in ``train``."""
    return target.join(
        train.select(USER_IDX).distinct(), on=USER_IDX, how="left_semi"
    ).join(train.select(ITEM_IDX).distinct(), on=ITEM_IDX, how="left_semi")


def relevant_items(
    target: DataFrame, rating_col: str, threshold: float | None
) -> DataFrame:
    if threshold is None:
        return target.select(USER_IDX, ITEM_IDX)
    return target.filter(F.col(rating_col) >= threshold).select(USER_IDX, ITEM_IDX)


def evaluate(
    fitted: FittedModel,
    data: TrainingData,
    target: DataFrame,
    evaluation: dict[str, Any],
    only: str | None = None,
) -> dict[str, float]:
    """Regression metrics (explicit kinds) and ranking metrics of a model on ``target``.

    With ``only`` (a metric name), just the family that metric belongs to is
    computed: tuning needs one number per grid point, and the top-k ranking a
    regression metric does not need is most of an evaluation's cost.
    """
    regression = only is None or only in REGRESSION_METRICS
    metrics: dict[str, float] = {}
    if fitted.spec.kind != "implicit" and regression:
        predictions = fitted.predict(known_pairs(target, data.ratings))
        metrics.update(regression_metrics(predictions, data.rating_col))
    if only is None or only not in REGRESSION_METRICS:
        metrics.update(
            evaluate_ranking(als_candidates(fitted.model), data, target, evaluation)
        )
    return metrics


def evaluate_ranking(
    candidates: CandidateFn,
    data: TrainingData,
    target: DataFrame,
    evaluation: dict[str, Any],
) -> dict[str, float]:
    """Ranking metrics at k of any recommender on ``target``, seen items removed."""
    k = int(evaluation.get("k", 10))
    relevant = relevant_items(
        target, data.rating_col, evaluation.get("relevance_threshold")
    )
    recommendations = top_k_unseen(
        candidates, relevant.select(USER_IDX).distinct(), data.seen, k
    )
    return ranking_metrics(recommendations, relevant, k)


def evaluate_bias_baseline(
    biases: BiasModel, data: TrainingData, target: DataFrame
) -> dict[str, float]:
    predictions = biases.predict(known_pairs(target, data.ratings))
    return regression_metrics(predictions, data.rating_col)
