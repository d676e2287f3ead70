"""Nodes of the data_science pipeline: tune ALS, evaluate it against baselines on
test, track every sub-model in MLflow and register the champion."""

from __future__ import annotations

import logging
import time
from typing import Any

import mlflow
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, PREDICTION, USER_IDX
from book_recommender.models import fit_bias_model, popularity_candidates
from book_recommender.training import (
    FittedModel,
    TrainingData,
    better,
    evaluate,
    evaluate_bias_baseline,
    evaluate_ranking,
    fit,
    model_grid,
    model_kind,
    selection_metric,
    validation_splits,
)

logger = logging.getLogger(__name__)

# Logging a Spark model is much faster with explicit requirements than with
# MLflow's inference of them.
PIP_REQUIREMENTS = ["pyspark==4.2.0"]
MODEL_ARTIFACT = "model"


def select_implicit_interactions(
    model_input_ratings: DataFrame, columns: dict[str, str], ratings: dict[str, Any]
) -> DataFrame:
    """The implicit interactions (e.g. rating 0): never in train or test, but a
    user has seen these books, and implicit models learn from them."""
    implicit_value = ratings.get("implicit_value")
    if implicit_value is None:
        return model_input_ratings.limit(0).select(USER_IDX, ITEM_IDX)
    return model_input_ratings.filter(
        F.col(columns["rating"]) == float(implicit_value)
    ).select(USER_IDX, ITEM_IDX)


def _data(
    train: DataFrame, implicit: DataFrame, columns: dict[str, str]
) -> TrainingData:
    return TrainingData(ratings=train, implicit=implicit, rating_col=columns["rating"])


def evaluate_baselines(
    train_ratings: DataFrame,
    implicit_interactions: DataFrame,
    test_ratings: DataFrame,
    columns: dict[str, str],
    als: dict[str, Any],
    evaluation: dict[str, Any],
) -> dict[str, float]:
    """The damped bias model's regression metrics and the popularity ranking's
    ranking metrics on test, under the protocol the ALS models are held to."""
    data = _data(train_ratings, implicit_interactions, columns)
    biases = fit_bias_model(
        train_ratings, data.rating_col, float(als.get("bias_damping", 5.0))
    )
    metrics = {
        f"bias_baseline.{m}": v
        for m, v in evaluate_bias_baseline(biases, data, test_ratings).items()
    }
    popularity = evaluate_ranking(
        popularity_candidates(data.seen), data, test_ratings, evaluation
    )
    metrics.update({f"popularity.{m}": v for m, v in popularity.items()})
    logger.info("Baselines on test: %s", {m: round(v, 4) for m, v in metrics.items()})
    return metrics


def tune_als(
    train_ratings: DataFrame,
    implicit_interactions: DataFrame,
    columns: dict[str, str],
    als: dict[str, Any],
    tuning: dict[str, Any],
    evaluation: dict[str, Any],
) -> list[dict[str, Any]]:
    """Each grid point's selection metric on validation data carved from train.

    TrainValidationSplit fits every grid point once on ``train_ratio`` of the
    training ratings; CrossValidator fits it ``num_folds`` times and averages.
    """
    grid = model_grid(als)
    metric = selection_metric(evaluation, model_kind(als))
    train_ratings = train_ratings.cache()
    splits = validation_splits(train_ratings, tuning)
    results = []
    for spec in grid:
        values = []
        for fit_part, validation in splits:
            data = _data(fit_part, implicit_interactions, columns)
            fitted = fit(spec, data, als)
            values.append(
                evaluate(fitted, data, validation, evaluation, only=metric)[metric]
            )
        mean = sum(values) / len(values)
        logger.info(
            "%s: validation %s = %.4f (%s)", spec.name, metric, mean, tuning["method"]
        )
        results.append(
            {
                "name": spec.name,
                "params": spec.as_params(),
                "validation": {metric: mean},
            }
        )
    return results


def train_submodels(
    train_ratings: DataFrame,
    implicit_interactions: DataFrame,
    test_ratings: DataFrame,
    columns: dict[str, str],
    als: dict[str, Any],
    evaluation: dict[str, Any],
) -> tuple[list[FittedModel], list[dict[str, Any]]]:
    """Every grid point fitted on the whole training set and evaluated on test,
    with the seconds its fit and its evaluation took (the top-k ranking grows with
    users x items, the fit with the number of ratings)."""
    data = _data(train_ratings.cache(), implicit_interactions, columns)
    models, metrics = [], []
    for spec in model_grid(als):
        started = time.perf_counter()
        fitted = fit(spec, data, als)
        fitted_at = time.perf_counter()
        test_metrics = evaluate(fitted, data, test_ratings, evaluation)
        seconds = {
            "fit": round(fitted_at - started, 2),
            "evaluation": round(time.perf_counter() - fitted_at, 2),
        }
        logger.info(
            "%s on test: %s (fit %.1f s, evaluation %.1f s)",
            spec.name,
            {m: round(v, 4) for m, v in test_metrics.items()},
            seconds["fit"],
            seconds["evaluation"],
        )
        models.append(fitted)
        metrics.append(
            {
                "name": spec.name,
                "params": spec.as_params(),
                "metrics": test_metrics,
                "seconds": seconds,
            }
        )
    return models, metrics


def select_champion(
    tuning_results: list[dict[str, Any]],
    submodel_metrics: list[dict[str, Any]],
    baseline_metrics: dict[str, float],
    als: dict[str, Any],
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    """The grid point with the best validation metric, and how it fares on test
    against the baselines. A champion that loses to a baseline is reported loudly."""
    kind = model_kind(als)
    metric = selection_metric(evaluation, kind)
    best = tuning_results[0]
    for result in tuning_results[1:]:
        if better(metric, result["validation"][metric], best["validation"][metric]):
            best = result
    test = next(m["metrics"] for m in submodel_metrics if m["name"] == best["name"])
    k = int(evaluation.get("k", 10))
    comparisons = {f"ndcg_at_{k}": f"popularity.ndcg_at_{k}"}
    if kind != "implicit":
        comparisons["rmse"] = "bias_baseline.rmse"
    beats = {}
    for name, baseline in comparisons.items():
        beats[name] = better(name, test[name], baseline_metrics[baseline])
        any_beats = any(
            better(name, m["metrics"][name], baseline_metrics[baseline])
            for m in submodel_metrics
        )
        if not beats[name]:
            logger.warning(
                "The champion %s does NOT beat the %s baseline on test: %s %.4f vs %.4f.%s",
                best["name"],
                baseline.split(".")[0],
                name,
                test[name],
                baseline_metrics[baseline],
                "" if any_beats else " No sub-model of the grid beats it either.",
            )
    return {
        "name": best["name"],
        "kind": kind,
        "selected_by": f"validation_{metric}",
        "validation_value": best["validation"][metric],
        "params": best["params"],
        "test_metrics": test,
        "beats_baseline": beats,
    }


def predict_test_ratings(
    submodels: list[FittedModel],
    champion: dict[str, Any],
    test_ratings: DataFrame,
    columns: dict[str, str],
) -> DataFrame:
    """The champion's predictions for the test ratings it can score (for the report)."""
    fitted = next(m for m in submodels if m.spec.name == champion["name"])
    return fitted.predict(test_ratings.select(USER_IDX, ITEM_IDX, columns["rating"]))


def _log_model(fitted: FittedModel, train: DataFrame) -> None:
    """Logs the Spark model to the active run, with a signature inferred from
    training input and the model's predictions for it."""
    sample = train.select(USER_IDX, ITEM_IDX).limit(200)
    predictions = fitted.predict(sample).select(PREDICTION).toPandas()
    mlflow.spark.log_model(
        fitted.model,
        artifact_path=MODEL_ARTIFACT,
        signature=infer_signature(sample.toPandas(), predictions),
        pip_requirements=PIP_REQUIREMENTS,
    )


def log_submodels(
    submodels: list[FittedModel],
    submodel_metrics: list[dict[str, Any]],
    tuning_results: list[dict[str, Any]],
    train_ratings: DataFrame,
    als: dict[str, Any],
) -> dict[str, str]:
    """One nested MLflow run per grid point: its params, validation and test
    metrics, and the model with a signature. Returns run ids by sub-model name."""
    runs = {}
    validation = {r["name"]: r for r in tuning_results}
    for fitted, metrics in zip(submodels, submodel_metrics, strict=True):
        name = fitted.spec.name
        with mlflow.start_run(run_name=name, nested=True) as run:
            mlflow.log_params(
                {**fitted.spec.as_params(), "num_epochs": als.get("num_epochs")}
            )
            mlflow.log_metrics(
                {
                    **metrics["metrics"],
                    **{
                        f"validation_{m}": v
                        for m, v in validation[name]["validation"].items()
                    },
                    **{f"{step}_seconds": v for step, v in metrics["seconds"].items()},
                }
            )
            _log_model(fitted, train_ratings)
            runs[name] = run.info.run_id
    return runs


def register_champion(
    submodels: list[FittedModel],
    champion: dict[str, Any],
    submodel_runs: dict[str, str],
    train_ratings: DataFrame,
    registry: dict[str, Any],
) -> dict[str, Any]:
    """Logs the champion to the parent run, registers it and moves the alias.

    The alias moves last, after every earlier step succeeded, so a failed run
    leaves the previous champion where it was.
    """
    fitted = next(m for m in submodels if m.spec.name == champion["name"])
    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError(
            "No active MLflow run: run the pipeline with kedro-mlflow enabled."
        )
    tags = {
        "champion.name": champion["name"],
        "champion.source_run": submodel_runs[champion["name"]],
        "champion.selected_by": champion["selected_by"],
        **{
            f"beats_baseline.{m}": str(b).lower()
            for m, b in champion["beats_baseline"].items()
        },
    }
    if fitted.clip is not None:
        tags["prediction_clip"] = f"{fitted.clip[0]:g},{fitted.clip[1]:g}"
    mlflow.set_tags(tags)
    _log_model(fitted, train_ratings)
    name, alias = registry["model_name"], registry.get("alias", "champion")
    version = mlflow.register_model(
        f"runs:/{parent.info.run_id}/{MODEL_ARTIFACT}", name
    )
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, value)
    client.set_registered_model_alias(name, alias, version.version)
    logger.info(
        "Registered %s version %s as '%s' (%s)",
        name,
        version.version,
        alias,
        champion["name"],
    )
    return {"model_name": name, "version": int(version.version), "alias": alias, **tags}


def collect_run_metrics(
    data_statistics: dict[str, Any],
    baseline_metrics: dict[str, float],
    champion: dict[str, Any],
) -> dict[str, dict[str, float]]:
    """The parent run's metrics: data statistics, baselines and the champion on test."""
    model_input = data_statistics["model_input"]
    split = data_statistics["split"]
    values = {
        f"data.{key}": float(model_input[key])
        for key in (
            "users",
            "items",
            "interactions",
            "explicit_interactions",
            "sparsity",
        )
        if model_input.get(key) is not None
    }
    values["data.train_rows"] = float(split["train_rows"])
    values["data.test_rows"] = float(split["test_rows"])
    for table, report in data_statistics["rows"].items():
        for reason, count in report["dropped"].items():
            values[f"data.dropped.{table}.{reason}"] = float(count)
    values.update(baseline_metrics)
    values.update({f"champion.{m}": v for m, v in champion["test_metrics"].items()})
    return {key: {"value": value, "step": 0} for key, value in values.items()}
