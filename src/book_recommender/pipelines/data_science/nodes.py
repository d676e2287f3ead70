"""Nodes of the data_science pipeline: tune every family on validation data
carved from train (as Spark's tuning classes carve it), pick two champions among the
families there (one to recommend, one to predict ratings), judge them and the
baselines on test, track everything in MLflow and register both champions."""

from __future__ import annotations

import logging
import time

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender import tracking
from book_recommender.beyond_accuracy import Catalog
from book_recommender.columns import ITEM_IDX, PREDICTION, USER_IDX
from book_recommender.models import (
    Champion,
    Family,
    Interactions,
    RecommenderModel,
    TestResult,
    TuningResult,
)
from book_recommender.models.families import families
from book_recommender.models.items import side_information
from book_recommender.models.records import JsonDocument
from book_recommender.models.selection import champion_records, to_test
from book_recommender.models.tuning import (
    check_memory,
    in_parallel,
    judge,
    tune_family,
)
from book_recommender.params import (
    AlsParams,
    DataProcessingParams,
    EvaluationParams,
    ItemBasedParams,
    RegistryParams,
    TuningParams,
)
from book_recommender.tracking import TEST, VALIDATION, CandidateRun, log_candidate_runs

logger = logging.getLogger(__name__)


def select_implicit_interactions(
    model_input_ratings: DataFrame,
    columns: dict[str, str],
    data_processing: DataProcessingParams,
) -> DataFrame:
    """The implicit interactions (e.g. rating 0): never in train or test, but a
    user has seen these books, and implicit models learn from them."""
    implicit_value = data_processing.ratings.implicit_value
    if implicit_value is None:
        return model_input_ratings.limit(0).select(USER_IDX, ITEM_IDX)
    return model_input_ratings.filter(
        F.col(columns["rating"]) == float(implicit_value)
    ).select(USER_IDX, ITEM_IDX)


def tune_candidates(
    train_ratings: DataFrame,
    implicit_interactions: DataFrame,
    indexed_items: DataFrame,
    columns: dict[str, str],
    als: AlsParams,
    item_based: ItemBasedParams,
    tuning: TuningParams,
    evaluation: EvaluationParams,
) -> tuple[list[TuningResult], list[RecommenderModel]]:
    """Every family tuned on the training ratings, split as ``tuning.method``
    (Spark's TrainValidationSplit or CrossValidator) splits them: every candidate's validation
    metrics (with every measure of ``beyond_accuracy``, against the whole
    training split), and each family's best refitted on all of them."""
    side = side_information(indexed_items, item_based.side_information)
    side = side.cache() if side is not None else None
    interactions = Interactions(implicit_interactions, columns["rating"], side)
    train_ratings = train_ratings.cache()

    def tune(family: Family) -> tuple[list[TuningResult], RecommenderModel]:
        return tune_family(
            family, train_ratings, interactions, evaluation, tuning, catalog
        )

    chosen = families(als, item_based)
    catalog = Catalog.of(
        indexed_items,
        interactions.of(train_ratings).seen,
        side_information(indexed_items, item_based.side_information[:1]),
    )
    check_memory(
        chosen, len(catalog.trained_ids), tuning.parallelism, train_ratings.sparkSession
    )
    # Families ``tuning.parallelism`` at a time too: a family's grid is often
    # smaller than the parallelism (the baselines are one point each).
    tuned = in_parallel(tune, chosen, tuning.parallelism)
    return [r for results, _ in tuned for r in results], [best for _, best in tuned]


def evaluate_on_test(
    tuned_models: list[RecommenderModel],
    tuning_results: list[TuningResult],
    test_ratings: DataFrame,
    indexed_items: DataFrame,
    item_based: ItemBasedParams,
    tuning: TuningParams,
    evaluation: EvaluationParams,
) -> tuple[list[RecommenderModel], list[TestResult]]:
    """The champions picked on validation, the baselines and (for a champion
    using side information) the best family without it, judged on test, with
    every measure of ``beyond_accuracy`` and the seconds each refit and test
    took. The other candidates keep their validation metrics only."""
    names = to_test(tuning_results, evaluation)
    chosen = [m for m in tuned_models if m.name in names]
    test_ratings = test_ratings.cache()
    catalog = (
        Catalog.of(
            indexed_items,
            chosen[0].data.seen,
            side_information(indexed_items, item_based.side_information[:1]),
        )
        if chosen
        else None
    )

    def on_test(model: RecommenderModel) -> TestResult:
        started_at, started = time.time(), time.perf_counter()
        metrics = judge(model, test_ratings, evaluation, catalog)
        metrics |= catalog.reach(model)
        seconds = {
            "fit": round(model.fit_seconds, 2),
            "evaluation": round(time.perf_counter() - started, 2),
        }
        logger.info(
            "%s on test: %s = %.4f (refit %.1f s, test %.1f s)",
            model.name,
            evaluation.ranking_key,
            metrics[evaluation.ranking_key],
            seconds["fit"],
            seconds["evaluation"],
        )
        return TestResult(
            candidate=model.candidate,
            metrics=metrics,
            seconds=seconds,
            # Its MLflow run lasts its refit and its test: it ends when the
            # test did, and starts its refit's length before the test started
            # (the refit ran earlier, at the end of its family's tuning).
            started=started_at - model.fit_seconds,
            ended=started_at + time.perf_counter() - started,
        )

    return chosen, in_parallel(on_test, chosen, tuning.parallelism)


def select_champions(
    tuning_results: list[TuningResult],
    candidate_metrics: list[TestResult],
    evaluation: EvaluationParams,
) -> dict[str, Champion]:
    """The recommender champion: the family best with the best validation
    ranking metric, popularity included. The rating champion: the rating
    family best with the best validation rating metric, the bias baseline
    included (``selection.champion_records``)."""
    return champion_records(tuning_results, candidate_metrics, evaluation)


def predict_test_ratings(
    candidate_models: list[RecommenderModel],
    champions: dict[str, Champion],
    test_ratings: DataFrame,
    columns: dict[str, str],
) -> DataFrame:
    """The rating champion's predictions (else the recommender champion's scores)
    for the test ratings it can score, for the report. A ranking model predicts
    no ratings: its column is null."""
    name = champions.get("rating", champions["recommender"]).name
    fitted = next(m for m in candidate_models if m.name == name)
    pairs = test_ratings.select(USER_IDX, ITEM_IDX, columns["rating"])
    if not fitted.predicts_ratings:
        return pairs.withColumn(PREDICTION, F.lit(None).cast("float"))
    return fitted.predict(pairs).filter(F.col(PREDICTION).isNotNull())


def log_candidates(
    candidate_models: list[RecommenderModel],
    candidate_metrics: list[TestResult],
    tuning_results: list[TuningResult],
    champions: dict[str, Champion],
    train_ratings: DataFrame,
    als: AlsParams,
    item_based: ItemBasedParams,
) -> dict[str, str]:
    """One nested MLflow run per candidate: its estimator's ``Param``s (those
    tuning varies and those the YAML fixes), validation metrics
    (``validation.*``) and, on a champion's, the tag ``champion`` (its role);
    for those judged on test (champions and baselines) also their test metrics
    (``test.*``, the keys of the parent run's), the seconds they took and, for
    a Spark model, the model with a signature (an item-based model's weights
    are in the registered champion's bundle). The parent run gets the table
    of them all. Returns run ids by candidate name."""
    tested = {
        model.name: (model, metrics)
        for model, metrics in zip(candidate_models, candidate_metrics, strict=True)
    }
    settings = {
        point.candidate().name: point.settings()
        for family in families(als, item_based)
        for point in family.points()
    }
    role_of = {champion.name: role for role, champion in champions.items()}
    runs = []
    for result in tuning_results:
        candidate = result.candidate
        metrics = {f"{VALIDATION}.{m}": v for m, v in result.validation.items()}
        span, model = result, None
        if candidate.name in tested:
            fitted, span = tested[candidate.name]
            metrics |= {f"{TEST}.{m}": v for m, v in span.metrics.items()}
            metrics |= {f"{step}_seconds": v for step, v in span.seconds.items()}
            model = fitted.spark_model
            if fitted.nbytes is not None:
                metrics["model_bytes"] = fitted.nbytes
        champion = (
            {"champion": role_of[candidate.name]} if candidate.name in role_of else {}
        )
        runs.append(
            CandidateRun(
                name=candidate.name,
                params={"kind": candidate.kind, "role": candidate.role}
                | settings.get(candidate.name, candidate.hyperparameters),
                metrics=metrics,
                tags={
                    "role": candidate.role,
                    "family": candidate.family,
                    "refitted": str(candidate.name in tested).lower(),
                    **champion,
                },
                started=span.started,
                ended=span.ended,
                spark_model=model,
            )
        )
    return log_candidate_runs(runs, train_ratings)


def register_champions(
    candidate_models: list[RecommenderModel],
    champions: dict[str, Champion],
    candidate_runs: dict[str, str],
    candidate_metrics: list[TestResult],
    data_statistics: JsonDocument,
    model_input_ratings: DataFrame,
    indexed_users: DataFrame,
    indexed_items: DataFrame,
    columns: dict[str, str],
    evaluation: EvaluationParams,
    registry: RegistryParams,
) -> JsonDocument:
    """Each champion logged to the parent run as a pyfunc model answering raw
    ids and registered, its alias staged to move when the whole run succeeds
    (``tracking.register_champions``)."""
    return tracking.register_champions(
        candidate_models,
        champions,
        candidate_runs,
        candidate_metrics,
        data_statistics,
        model_input_ratings,
        indexed_users,
        indexed_items,
        columns,
        evaluation.k,
        registry,
    )


def collect_run_metrics(
    data_statistics: JsonDocument,
    candidate_metrics: list[TestResult],
    champions: dict[str, Champion],
) -> dict[str, dict[str, float]]:
    """The parent run's metrics: data statistics, the baselines and both
    champions on test (``tracking.parent_run_metrics``)."""
    return tracking.parent_run_metrics(data_statistics, candidate_metrics, champions)
