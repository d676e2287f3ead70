"""Tuning every family of the table (``families``) and judging a fitted
candidate; used by the data_science nodes.

Each family's grid (``ParamGridBuilder`` from the YAML) is tuned on the
training ratings as Spark's ``TrainValidationSplit`` or ``CrossValidator``
tunes it: the same seeded split, the family's ``fitMultiple`` over the grid,
``parallelism`` points at once, the ``ServedEvaluator``'s metric (the ranking
metric, or for the rating families the rating metric) choosing the best,
refitted on all the ratings. Spark's classes keep one number per point;
this keeps every metric the evaluator computes in the same pass, so the
evaluator holds nothing of any candidate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

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


def splits(
    ratings: DataFrame, tuning: TuningParams
) -> list[tuple[DataFrame, DataFrame]]:
    """The (train, validation) pairs Spark's ``TrainValidationSplit`` or
    ``CrossValidator`` (``tuning.method``) carves from ``ratings`` with
    ``tuning.seed``: a uniform draw per row, cut at ``train_ratio`` or into
    ``num_folds`` equal ranges (the validation part of each)."""
    draw = "_tuning_draw"
    drawn = ratings.select("*", F.rand(tuning.seed).alias(draw))
    if tuning.method == "TrainValidationSplit":
        ranges = [(tuning.train_ratio, 1.0)]
    else:
        width = 1.0 / tuning.num_folds
        ranges = [(i * width, (i + 1) * width) for i in range(tuning.num_folds)]
    pairs = []
    for low, high in ranges:
        held = (F.col(draw) >= low) & (F.col(draw) < high)
        pairs.append((drawn.filter(~held).drop(draw), drawn.filter(held).drop(draw)))
    return pairs


class Validated(NamedTuple):
    """A grid point's validation metrics and the span of its own fits and
    evaluations (epoch seconds): on one split, or over all of them (``mean``)."""

    metrics: dict[str, float]
    started: float
    ended: float

    @staticmethod
    def mean(splits: list[Validated]) -> Validated:
        """The metrics averaged over the splits, from the first start to the
        last end."""
        return Validated(
            {
                name: sum(split.metrics[name] for split in splits) / len(splits)
                for name in splits[0].metrics
            },
            min(split.started for split in splits),
            max(split.ended for split in splits),
        )


def validate(
    family: Family,
    ratings: DataFrame,
    scorer: ServedEvaluator,
    tuning: TuningParams,
) -> list[Validated]:
    """Every metric of each grid point of ``family`` (in grid order) over the
    ``splits`` of ``ratings``, and when the point was fitted and judged."""
    per_split = []
    for train, validation in splits(ratings, tuning):
        train.cache()
        validation.cache()
        fits = family.estimator.fitMultiple(train, family.grid)

        def judge_next(_: int) -> tuple[int, Validated]:
            started = time.time()
            index, model = next(fits)  # fitted as it is drawn
            metrics = scorer.metrics(model.transform(validation))
            return index, Validated(metrics, started, time.time())

        try:
            judged = in_parallel(judge_next, list(family.grid), tuning.parallelism)
        finally:
            train.unpersist()
            validation.unpersist()
        per_split.append(dict(judged))
    return [
        Validated.mean([split[point] for split in per_split])
        for point in range(len(family.grid))
    ]


def tune_family(
    family: Family,
    ratings: DataFrame,
    interactions: Interactions,
    evaluation: EvaluationParams,
    tuning: TuningParams,
    catalog: Catalog | None = None,
) -> tuple[list[TuningResult], RecommenderModel]:
    """The family tuned on ``ratings`` (module docstring): each grid point's
    validation metrics (averaged over the folds; with the training
    ``catalog``, the measures of ``beyond_accuracy`` too) and the best
    point refitted on all of ``ratings``."""
    scorer = evaluator(evaluation, interactions.rating_col, family.rating)
    if catalog is not None:
        scorer.judge_beyond_accuracy(
            catalog, pairs=True, min_coverage=evaluation.min_catalog_coverage
        )
    family.estimator.with_interactions(interactions).serving(
        evaluation.k, evaluation.tile_cells
    )
    validated = validate(family, ratings, scorer, tuning)
    scores = [scorer.score(point.metrics) for point in validated]
    pick = max if scorer.isLargerBetter() else min
    best_point = pick(range(len(scores)), key=scores.__getitem__)  # the first
    best = family.estimator.fit(ratings, family.grid[best_point])
    results = []
    for index, (candidate, point) in enumerate(
        zip(family.candidates(), validated, strict=True)
    ):
        _log_validation(candidate, point.metrics, evaluation, tuning.method)
        results.append(
            TuningResult(
                candidate=candidate,
                validation=point.metrics,
                best_of_family=index == best_point,
                started=point.started,
                ended=point.ended,
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
