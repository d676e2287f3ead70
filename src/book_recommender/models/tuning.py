"""Tuning every family of the table (``families``) with Spark's own classes,
and judging a fitted candidate; used by the data_science nodes.

Each family's grid (``ParamGridBuilder`` from the YAML) is tuned by
``TrainValidationSplit`` or ``CrossValidator`` on the training ratings with the
``ServedEvaluator`` (the ranking metric, or for the rating families the rating
metric), which refits the family's best on all of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from pyspark.ml.tuning import CrossValidator, TrainValidationSplit
from pyspark.sql import DataFrame

from book_recommender import memory_plan
from book_recommender.beyond_accuracy import Catalog
from book_recommender.evaluation import ServedEvaluator
from book_recommender.models.base import Interactions, Recommender, RecommenderModel
from book_recommender.models.families import Family
from book_recommender.models.records import Candidate, TuningResult

if TYPE_CHECKING:  # params imports the family modules, which sit beside this one
    from book_recommender.params import EvaluationParams, TuningParams

logger = logging.getLogger(__name__)
T = TypeVar("T")


def check_memory(
    chosen: list[Family], books: int, parallelism: int, spark: Any
) -> None:
    """Refuses, before any fit, a family whose grid would not fit in the
    driver over ``books`` books (``memory_plan``)."""
    footprints = [
        need
        for family in chosen
        for point in family.points()
        if (need := point.footprint(books, parallelism))
    ]
    memory_plan.check(
        footprints,
        books,
        memory_plan.driver_bytes(spark),
        memory_plan.physical_bytes(),
    )


def evaluator(
    evaluation: EvaluationParams, rating_col: str, rating: bool = False
) -> ServedEvaluator:
    """The ``ServedEvaluator`` of the configured k, threshold and metric."""
    threshold = evaluation.relevance_threshold
    return ServedEvaluator(
        metricName=evaluation.rating_metric if rating else evaluation.ranking_key,
        k=evaluation.k,
        ratingCol=rating_col,
        **({} if threshold is None else {"relevanceThreshold": threshold}),
    )


def _tuner(family: Family, scorer: ServedEvaluator, tuning: TuningParams):
    common = {
        "estimator": family.estimator,
        "estimatorParamMaps": family.grid,
        "evaluator": scorer,
        "parallelism": tuning.parallelism,
        "seed": tuning.seed,
    }
    if tuning.method == "TrainValidationSplit":
        return TrainValidationSplit(trainRatio=tuning.train_ratio, **common)
    return CrossValidator(numFolds=tuning.num_folds, **common)


def tune_family(
    family: Family,
    ratings: DataFrame,
    interactions: Interactions,
    evaluation: EvaluationParams,
    tuning: TuningParams,
    catalog: Catalog | None = None,
) -> tuple[list[TuningResult], RecommenderModel]:
    """The family tuned by Spark's class on ``ratings``: each grid point's
    validation metrics (averaged over the folds; with the training
    ``catalog``, the measures of ``beyond_accuracy`` too) and the best
    point refitted on all of ``ratings``."""
    started = time.time()
    scorer = evaluator(evaluation, interactions.rating_col, family.rating)
    if catalog is not None:
        scorer.judge_beyond_accuracy(
            catalog, pairs=True, min_coverage=evaluation.min_catalog_coverage
        )
    family.estimator.with_interactions(interactions).serving(
        evaluation.k, evaluation.tile_cells
    )
    tuned = _tuner(family, scorer, tuning).fit(ratings)
    best = tuned.bestModel
    ended = time.time()
    results = []
    for candidate in family.candidates():
        metrics = scorer.mean_recorded(candidate.name)
        _log_validation(candidate, metrics, evaluation, tuning.method)
        results.append(
            TuningResult(
                candidate=candidate,
                validation=metrics,
                best_of_family=candidate.name == best.name,
                started=started,
                ended=ended,
            )
        )
    return results, best


def _log_validation(
    candidate: Candidate,
    metrics: dict[str, float],
    evaluation: EvaluationParams,
    label: str,
) -> None:
    rating = (
        f", {evaluation.rating_metric} = {metrics[evaluation.rating_metric]:.4f}"
        if candidate.rating
        else ""
    )
    logger.info(
        "%s: validation %s = %.4f%s (%s)",
        candidate.name,
        evaluation.ranking_key,
        metrics[evaluation.ranking_key],
        rating,
        label,
    )


def in_parallel(work: Callable[[Any], T], items: list[Any], n: int) -> list[T]:
    """``work`` for every item, ``n`` at a time: on small data a fit or an
    evaluation is many short Spark jobs that leave the cores idle between them.
    Results keep the order of ``items``."""
    if n == 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(work, items))


def fit(
    estimator: Recommender,
    ratings: DataFrame,
    interactions: Interactions,
    evaluation: EvaluationParams,
) -> RecommenderModel:
    """One candidate (an estimator at a grid point, ``Family.points``) fitted
    alone on ``ratings``, serving ``evaluation.k`` books (benchmarks, tests)."""
    estimator = estimator.copy().with_interactions(interactions)
    return estimator.serving(evaluation.k, evaluation.tile_cells).fit(ratings)


def judge(
    model: RecommenderModel,
    target: DataFrame,
    evaluation: EvaluationParams,
    catalog: Catalog | None = None,
) -> dict[str, float]:
    """Every metric of ``model`` on ``target`` as served (``ServedEvaluator``),
    with every measure of ``beyond_accuracy`` given the training ``catalog``."""
    scorer = evaluator(evaluation, model.data.rating_col, model.predicts_ratings)
    if catalog is not None:
        scorer.judge_beyond_accuracy(catalog, pairs=True)
    return scorer.metrics(model.transform(target))
