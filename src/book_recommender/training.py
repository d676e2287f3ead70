"""Fitting and evaluating the candidates; used by the data_science nodes.

Two families of candidates answer two questions. Factor models are stored as
a Spark ``ALSModel``; item-based ones as their item-item weights
(``item_based``); the registry and scoring serve each of them alike:

- the ranking family (which books will this reader pick up?): ``implicit`` ALS
  on interaction strengths, the explicit ratings and the implicit zeros alike,
  ``knn`` (item-kNN) and ``ease`` on every interaction, and the ``popularity``
  baseline (rank 1: every user ``[1]``, every item its interaction count);
- the rating family (how would this reader rate this book?): ``biased`` ALS (the
  damped bias model ``mu + b_u + b_i``, ALS on its residuals, the biases folded
  into the factors, see ``models.fold_biases``) or the tutorial's ``explicit``
  ALS, and the ``bias`` baseline (rank 2: ``[mu + b_u, 1] . [1, b_i]``).
  Rating predictions are clipped to the training ratings' range.

Every candidate is evaluated as it would be served (``ranking.top_k_served``):
users without factors (for an item-based model: without a seen book it knows)
get the popular fallback, so all candidates are ranked on the same users; the
metrics of the other users are reported beside them (``warm.*``).
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, PREDICTION, USER_IDX
from book_recommender.item_based import ItemBasedModel, ease_gram, fit_item_knn
from book_recommender.metrics import (
    RANKING_PARTS,
    per_user_ranking,
    regression_metrics,
)
from book_recommender.models import (
    bias_als_model,
    fit_bias_model,
    fold_biases,
    popularity_als_model,
    popularity_scores,
)
from book_recommender.params import (
    AlsParams,
    EvaluationParams,
    ItemBasedParams,
    TuningParams,
)
from book_recommender.ranking import COLD_START, MODEL, top_k_served, top_k_served_many

logger = logging.getLogger(__name__)
T = TypeVar("T")

STRENGTH = "_strength"
RESIDUAL = "_residual"
LOWER_IS_BETTER = {"rmse", "mae"}
RANKING_KINDS = ("implicit", "popularity", "knn", "ease")
ITEM_BASED_KINDS = ("knn", "ease")
BASELINE_NAMES = {"popularity": "popularity", "bias": "bias_baseline"}
HYPERPARAMETERS = (
    "rank",
    "reg_param",
    "alpha",
    "similarity",
    "neighbours",
    "side_weight",
    "l2",
    "beta",
)
WARM = "warm"  # prefix of the metrics over users the model has factors for


@dataclass(frozen=True)
class TrainingData:
    """What a model learns from, and what it must not recommend again."""

    ratings: DataFrame  # explicit training ratings (USER_IDX, ITEM_IDX, rating)
    implicit: DataFrame  # implicit interactions (USER_IDX, ITEM_IDX)
    rating_col: str
    side: DataFrame | None = None  # the books' side information (ITEM_IDX, SIDE)

    @cached_property
    def seen(self) -> DataFrame:
        """Every (USER_IDX, ITEM_IDX) interaction, cached: each candidate's fit
        and evaluation reads it."""
        return (
            self.ratings.select(USER_IDX, ITEM_IDX)
            .unionByName(self.implicit.select(USER_IDX, ITEM_IDX))
            .cache()
        )

    @cached_property
    def popular(self) -> DataFrame:
        """The fallback ranking (ITEM_IDX, SCORE) of users a model cannot rank,
        computed once for every candidate."""
        return popularity_scores(self.seen).cache()


@dataclass(frozen=True)
class ModelSpec:
    """One candidate: a model kind and, for ALS, its hyperparameters."""

    kind: str  # implicit | popularity | knn | ease | biased | explicit | bias
    rank: int | None = None
    reg_param: float | None = None
    alpha: float | None = None
    similarity: str | None = None  # knn
    neighbours: int | None = None  # knn
    side_weight: float | None = None  # knn: similarity per shared side value
    l2: float | None = None  # ease
    beta: float | None = None  # ease: weight of the side information

    @property
    def family(self) -> str:
        return "ranking" if self.kind in RANKING_KINDS else "rating"

    @property
    def is_baseline(self) -> bool:
        return self.kind in BASELINE_NAMES

    @property
    def name(self) -> str:
        if self.is_baseline:
            return BASELINE_NAMES[self.kind]
        if self.kind == "knn":
            side = f"_w{self.side_weight:g}" if self.side_weight else ""
            return f"knn_{self.similarity}_k{self.neighbours}{side}"
        if self.kind == "ease":
            return f"ease_l2_{self.l2:g}" + (f"_beta{self.beta:g}" if self.beta else "")
        alpha = f"_alpha{self.alpha:g}" if self.alpha is not None else ""
        return f"{self.kind}_rank{self.rank}_reg{self.reg_param:g}{alpha}"

    def as_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"model_kind": self.kind, "family": self.family}
        for key in HYPERPARAMETERS:
            if getattr(self, key) is not None:
                params[key] = getattr(self, key)
        return params


@dataclass(frozen=True)
class FittedModel:
    spec: ModelSpec
    model: ALSModel | ItemBasedModel
    clip: tuple[float, float] | None  # rating range predictions are clipped to

    def predict(self, pairs: DataFrame) -> DataFrame:
        if not isinstance(self.model, ALSModel):
            raise ValueError(
                f"{self.spec.name} is an item-based recommender: it ranks books, "
                "it predicts no ratings."
            )
        predicted = self.model.transform(pairs)
        if self.clip is None:
            return predicted
        low, high = self.clip
        return predicted.withColumn(
            PREDICTION, F.least(F.greatest(F.col(PREDICTION), F.lit(low)), F.lit(high))
        )


# --------------------------------------------------------------------------------------
# Candidates


def candidates(als: AlsParams, item_based: ItemBasedParams) -> list[ModelSpec]:
    """Popularity, then the ranking grids (implicit ALS: rank x regParam x alpha;
    item-kNN: similarity x neighbours; EASE: l2); the bias baseline, then the
    rating grid (rank x regParam), for the enabled families.

    Each baseline comes before its family, so a model that only ties with it is
    not chosen over it."""
    specs = [ModelSpec("popularity")]
    ranking, rating = als.ranking, als.rating
    if ranking.enabled:
        specs += [
            ModelSpec("implicit", rank, reg, alpha)
            for rank, reg, alpha in itertools.product(
                ranking.rank, ranking.reg_param, ranking.alpha
            )
        ]
    knn, ease = item_based.knn, item_based.ease
    if knn.enabled:
        specs += [
            ModelSpec(
                "knn", similarity=similarity, neighbours=neighbours, side_weight=weight
            )
            for similarity, weight, neighbours in itertools.product(
                knn.similarity, knn.side_weight, knn.neighbours
            )
        ]
    if ease.enabled:
        specs += [
            ModelSpec("ease", l2=l2, beta=beta)
            for l2, beta in itertools.product(ease.l2, ease.beta)
        ]
    if rating.enabled:
        specs.append(ModelSpec("bias"))
        specs += [
            ModelSpec(rating.kind, rank, reg)
            for rank, reg in itertools.product(rating.rank, rating.reg_param)
        ]
    return specs


def better(metric: str, candidate: float, best: float) -> bool:
    return candidate < best if metric in LOWER_IS_BETTER else candidate > best


def best(results: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The result with the best ``results[i]["validation"][metric]``; a tie goes
    to the earlier one (baselines come first)."""
    chosen = results[0]
    for result in results[1:]:
        if better(metric, result["validation"][metric], chosen["validation"][metric]):
            chosen = result
    return chosen


def pick_champions(
    results: list[dict[str, Any]], evaluation: EvaluationParams
) -> dict[str, tuple[dict[str, Any], str]]:
    """Per role, the result ``best`` picks on validation and the metric it is
    picked on: the recommender among all candidates on the ranking metric, the
    rating champion among the rating family (if any) on the rating metric."""
    pools = {"recommender": (results, evaluation.ranking_key)}
    rating = [r for r in results if r["params"]["family"] == "rating"]
    if rating:
        pools["rating"] = (rating, evaluation.rating_metric)
    return {
        role: (best(pool, metric), metric) for role, (pool, metric) in pools.items()
    }


def uses_side_information(params: dict[str, Any]) -> bool:
    """Whether a candidate's params (``ModelSpec.as_params``) weigh the books'
    side information (an item-kNN side weight or an EASE beta above 0)."""
    return bool(params.get("side_weight") or params.get("beta"))


def best_without_side_information(
    results: list[dict[str, Any]], evaluation: EvaluationParams
) -> dict[str, Any] | None:
    """If the recommender champion uses side information, the candidate
    ``best`` picks on validation among those that do not: refitted and tested
    beside it, it shows on test what the side information adds. Else None."""
    champion, metric = pick_champions(results, evaluation)["recommender"]
    if not uses_side_information(champion["params"]):
        return None
    return best([r for r in results if not uses_side_information(r["params"])], metric)


def to_refit(
    specs: list[ModelSpec],
    results: list[dict[str, Any]],
    evaluation: EvaluationParams,
) -> list[ModelSpec]:
    """The specs that are refitted on the whole training set and evaluated on
    test: the champions ``pick_champions`` picks on validation, the baselines
    they are judged against and, for a champion using side information, the
    best candidate without it. The other candidates stop at their validation
    metrics, as with Spark's TrainValidationSplit and CrossValidator (which
    refit only the best), and never see test."""
    chosen = {
        champion["name"] for champion, _ in pick_champions(results, evaluation).values()
    }
    reference = best_without_side_information(results, evaluation)
    if reference is not None:
        chosen.add(reference["name"])
    return [spec for spec in specs if spec.is_baseline or spec.name in chosen]


# --------------------------------------------------------------------------------------
# Fitting


def _workdir(data: TrainingData) -> str:
    spark = data.ratings.sparkSession
    folder = spark.sparkContext.getCheckpointDir() or spark.conf.get(
        "spark.local.dir", "/tmp"
    )
    return f"{folder}/candidates/{uuid.uuid4().hex}"


def _rating_range(data: TrainingData) -> tuple[float, float]:
    bounds = data.ratings.agg(F.min(data.rating_col), F.max(data.rating_col)).first()
    return float(bounds[0]), float(bounds[1])


def shared_fits(specs: list[ModelSpec]) -> list[list[ModelSpec]]:
    """``specs`` in groups fitted together by ``fit_many``: the item-kNN specs
    of one similarity and side weight (one fit at the most neighbours, cut for
    the others) and the EASE specs (one Gram matrix for every l2 and beta);
    every other spec alone. Groups in the order of their first spec."""
    groups: dict[tuple, list[ModelSpec]] = {}
    for index, spec in enumerate(specs):
        key = {
            "knn": ("knn", spec.similarity, spec.side_weight or 0.0),
            "ease": ("ease",),
        }.get(spec.kind, (index,))
        groups.setdefault(key, []).append(spec)
    return list(groups.values())


def fit_many(
    specs: list[ModelSpec],
    data: TrainingData,
    als: AlsParams,
    item_based: ItemBasedParams,
) -> Iterator[FittedModel]:
    """The fitted models of one ``shared_fits`` group, one at a time, in the
    order of ``specs`` (as Spark's ``Estimator.fitMultiple``): item-kNN fitted
    once with the most neighbours and cut, EASE's Gram matrix computed once."""
    kind = specs[0].kind
    if kind == "knn":
        knn = item_based.knn
        widest = fit_item_knn(
            data.seen,
            specs[0].similarity,
            max(spec.neighbours for spec in specs),
            knn.max_user_items,
            knn.bm25_k1,
            knn.bm25_b,
            item_based.seed,
            side=data.side,
            side_weight=specs[0].side_weight or 0.0,
        )
        for spec in specs:
            yield FittedModel(spec, widest.cut(spec.neighbours), clip=None)
    elif kind == "ease":
        side = data.side if any(spec.beta for spec in specs) else None
        gram = ease_gram(data.seen, item_based.ease.max_items, side)
        for spec in specs:
            yield FittedModel(spec, gram.model(spec.l2, spec.beta or 0.0), clip=None)
    else:
        for spec in specs:
            yield fit(spec, data, als, item_based)


def fit(
    spec: ModelSpec,
    data: TrainingData,
    als: AlsParams,
    item_based: ItemBasedParams,
) -> FittedModel:
    """Fits one candidate on ``data``.

    ALS splits users and items into ``als.num_blocks`` blocks each (null: Spark's
    default parallelism, i.e. the cores it has). Spark's own default of 10 makes
    every iteration run 10 x 10 tiny tasks on a small machine.
    """
    if spec.kind in ITEM_BASED_KINDS:
        return next(fit_many([spec], data, als, item_based))
    if spec.kind == "popularity":
        model = popularity_als_model(data.seen, _workdir(data))
        return FittedModel(spec, model, clip=None)
    if spec.kind == "bias":
        biases = fit_bias_model(data.ratings, data.rating_col, als.rating.bias_damping)
        model = bias_als_model(biases, _workdir(data))
        return FittedModel(spec, model, clip=_rating_range(data))
    blocks = als.num_blocks or data.ratings.sparkSession.sparkContext.defaultParallelism
    family = als.ranking if spec.kind == "implicit" else als.rating
    common = {
        "userCol": USER_IDX,
        "itemCol": ITEM_IDX,
        "rank": spec.rank,
        "regParam": spec.reg_param,
        "maxIter": family.num_epochs,
        "coldStartStrategy": "drop",
        "seed": als.seed,
        "numUserBlocks": blocks,
        "numItemBlocks": blocks,
    }
    if spec.kind == "implicit":
        strength = als.ranking.implicit_strength
        interactions = data.ratings.select(
            USER_IDX, ITEM_IDX, F.col(data.rating_col).cast("float").alias(STRENGTH)
        ).unionByName(
            data.implicit.select(
                USER_IDX, ITEM_IDX, F.lit(strength).cast("float").alias(STRENGTH)
            )
        )
        minimum = als.ranking.min_item_interactions
        if minimum > 1:
            supported = (
                interactions.groupBy(ITEM_IDX)
                .count()
                .filter(F.col("count") >= minimum)
                .select(ITEM_IDX)
            )
            interactions = interactions.join(supported, on=ITEM_IDX, how="left_semi")
        model = ALS(
            ratingCol=STRENGTH,
            implicitPrefs=True,
            alpha=float(spec.alpha),
            nonnegative=als.ranking.nonnegative,
            **common,
        ).fit(interactions)
        return FittedModel(spec, model, clip=None)
    if spec.kind == "explicit":
        model = ALS(
            ratingCol=data.rating_col, nonnegative=als.rating.nonnegative, **common
        ).fit(data.ratings)
        return FittedModel(spec, model, clip=_rating_range(data))
    # biased: residuals can be negative, so the residual model is never non-negative.
    biases = fit_bias_model(data.ratings, data.rating_col, als.rating.bias_damping)
    residual = ALS(ratingCol=RESIDUAL, nonnegative=False, **common).fit(
        biases.residuals(data.ratings, data.rating_col, RESIDUAL)
    )
    model = fold_biases(residual, biases, _workdir(data))
    return FittedModel(spec, model, clip=_rating_range(data))


def validation_splits(
    ratings: DataFrame, tuning: TuningParams
) -> list[tuple[DataFrame, DataFrame]]:
    """(fit, validation) pairs carved from the training ratings, never from test.

    Carved as Spark's tuning classes carve them: each row draws ``rand(seed)``;
    TrainValidationSplit validates on the rows drawing ``>= train_ratio``,
    CrossValidator's fold i on those drawing in ``[i / n, (i + 1) / n)``.
    """
    draw = "_draw"
    drawn = ratings.select("*", F.rand(tuning.seed).alias(draw))
    if tuning.method == "TrainValidationSplit":
        bounds = [(tuning.train_ratio, 2.0)]
    else:
        n = tuning.num_folds
        bounds = [(i / n, (i + 1) / n) for i in range(n)]
    splits = []
    for low, high in bounds:
        held = (F.col(draw) >= low) & (F.col(draw) < high)
        splits.append((drawn.filter(~held).drop(draw), drawn.filter(held).drop(draw)))
    return splits


def in_parallel(work: Callable[[Any], T], specs: list[Any], n: int) -> list[T]:
    """``work`` for every spec, ``n`` at a time (as Spark's tuning ``parallelism``):
    on small data a fit or an evaluation is many short Spark jobs that leave the
    cores idle between them. Results keep the order of ``specs``."""
    if n == 1:
        return [work(spec) for spec in specs]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(work, specs))


def tune(
    specs: list[ModelSpec],
    splits: list[tuple[TrainingData, DataFrame]],
    als: AlsParams,
    item_based: ItemBasedParams,
    evaluation: EvaluationParams,
    parallelism: int = 1,
    label: str = "",
) -> list[dict[str, Any]]:
    """Every spec fitted on each split's data and evaluated on its validation
    ratings; its metrics averaged over the splits (one for TrainValidationSplit,
    ``num_folds`` for CrossValidator, or any the caller carved). The specs of
    one ``shared_fits`` group share their fits. Pick with ``best``."""

    def validate(group: list[ModelSpec]) -> list[dict[str, Any]]:
        started = time.time()
        folds: list[list[dict[str, float]]] = [[] for _ in group]
        for data, validation in splits:
            # The group's models at once: item-based ones are ranked in one pass.
            fitted = list(fit_many(group, data, als, item_based))
            for i, metrics in enumerate(
                evaluate_many(fitted, data, validation, evaluation)
            ):
                folds[i].append(metrics)
        span = {"started": started, "ended": time.time()}
        return [
            result(spec, mean(f)) | span for spec, f in zip(group, folds, strict=True)
        ]

    def mean(folds: list[dict[str, float]]) -> dict[str, float]:
        return {m: sum(f[m] for f in folds) / len(folds) for m in folds[0]}

    def result(spec: ModelSpec, metrics: dict[str, float]) -> dict[str, Any]:
        logger.info(
            "%s: validation %s = %.4f%s%s",
            spec.name,
            evaluation.ranking_key,
            metrics[evaluation.ranking_key],
            f", {evaluation.rating_metric} = {metrics[evaluation.rating_metric]:.4f}"
            if spec.family == "rating"
            else "",
            f" ({label})" if label else "",
        )
        return {"name": spec.name, "params": spec.as_params(), "validation": metrics}

    done = in_parallel(validate, shared_fits(specs), parallelism)
    by_name = {r["name"]: r for group in done for r in group}
    return [by_name[spec.name] for spec in specs]


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
    evaluation: EvaluationParams,
) -> dict[str, float]:
    """A candidate's metrics on ``target``: ranking metrics as served (and
    ``warm.*`` over users it has factors for, with ``cold_user_share``), and
    for the rating family the regression metrics on pairs it knows."""
    return evaluate_many([fitted], data, target, evaluation)[0]


def evaluate_many(
    models: list[FittedModel],
    data: TrainingData,
    target: DataFrame,
    evaluation: EvaluationParams,
) -> list[dict[str, float]]:
    """``evaluate`` for each of ``models``; item-based ones are ranked in one
    pass (``ranking.top_k_served_many``) and their metrics aggregated in one
    job, as a shared-fit group is tuned; any other model alone."""
    results: list[dict[str, float] | None] = [None] * len(models)
    item_based = [i for i, m in enumerate(models) if not isinstance(m.model, ALSModel)]
    if item_based:
        together = [models[i].model for i in item_based]
        for i, metrics in zip(
            item_based,
            _ranking_metrics(together, data, target, evaluation),
            strict=True,
        ):
            results[i] = metrics
    for i, fitted in enumerate(models):
        if results[i] is not None:
            continue
        metrics = _ranking_metrics([fitted.model], data, target, evaluation)[0]
        if fitted.spec.family == "rating":
            predictions = fitted.predict(known_pairs(target, data.ratings))
            metrics.update(regression_metrics(predictions, data.rating_col))
        results[i] = metrics
    return results


def evaluate_ranking(
    model: ALSModel | ItemBasedModel,
    data: TrainingData,
    target: DataFrame,
    evaluation: EvaluationParams,
) -> dict[str, float]:
    """Ranking metrics at k of the lists ``model`` serves, seen items removed."""
    return _ranking_metrics([model], data, target, evaluation)[0]


def _ranking_metrics(
    models: list[ALSModel | ItemBasedModel],
    data: TrainingData,
    target: DataFrame,
    evaluation: EvaluationParams,
) -> list[dict[str, float]]:
    """Ranking metrics at k of the lists each of ``models`` serves (one ALS
    model, or any number of item-based ones ranked in one pass)."""
    k = evaluation.k
    # Cached and never unpersisted here: candidates evaluated at once (tuning
    # parallelism) build the same plan, which Spark caches once and shares, so
    # one evaluation's unpersist removed blocks another's tasks were reading
    # (BlockNotFoundException, recomputation). It is one row per relevant pair.
    relevant = relevant_items(
        target, data.rating_col, evaluation.relevance_threshold
    ).cache()
    users = relevant.select(USER_IDX).distinct()
    if len(models) == 1 and isinstance(models[0], ALSModel):
        served = top_k_served(
            models[0], users, data.seen, data.popular, k, evaluation.tile_cells
        ).withColumn(MODEL, F.lit(0))
    else:
        served = top_k_served_many(
            models, users, data.seen, data.popular, k, evaluation.tile_cells
        )
    served = served.cache()  # read twice below
    spark = target.sparkSession
    indices = spark.createDataFrame([(i,) for i in range(len(models))], f"{MODEL} int")
    cold = served.groupBy(MODEL, USER_IDX).agg(F.max(COLD_START).alias(COLD_START))
    per_user = per_user_ranking(served, relevant, k, indices).join(
        cold, on=[MODEL, USER_IDX], how="left"
    )
    warm = F.col(COLD_START) == F.lit(False)
    rows = {
        row[MODEL]: row
        for row in per_user.groupBy(MODEL)
        .agg(
            *[F.avg(part).alias(part) for part in RANKING_PARTS],
            *[
                F.avg(F.when(warm, F.col(part))).alias(f"warm_{part}")
                for part in RANKING_PARTS
            ],
            F.avg(F.coalesce(F.col(COLD_START), F.lit(False)).cast("double")).alias(
                "cold_share"
            ),
        )
        .collect()
    }
    served.unpersist()

    def metrics(row) -> dict[str, float]:
        def value(column: str) -> float:
            return (
                float(row[column])
                if row is not None and row[column] is not None
                else 0.0
            )

        out = {f"{part}_at_{k}": value(part) for part in RANKING_PARTS}
        out.update(
            {f"{WARM}.{part}_at_{k}": value(f"warm_{part}") for part in RANKING_PARTS}
        )
        out["cold_user_share"] = value("cold_share")
        return out

    return [metrics(rows.get(i)) for i in range(len(models))]
