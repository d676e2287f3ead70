"""Nodes of the data_science pipeline: tune every candidate of both families on
validation data, pick two champions there (one to recommend, one to predict
ratings), refit them and the baselines on train and evaluate those on test,
track everything in MLflow and register both champions."""

from __future__ import annotations

import logging
import time
from typing import Any

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender import aliases
from book_recommender.columns import ITEM_IDX, PREDICTION, USER_IDX
from book_recommender.item_based import side_information
from book_recommender.params import ItemBasedParams, parse
from book_recommender.registry import export_bundle
from book_recommender.tracking import (
    RUN_PREFIX,
    CandidateRun,
    log_candidate_runs,
    register_champion,
    tag_parent_run,
)
from book_recommender.training import (
    HYPERPARAMETERS,
    FittedModel,
    ModelSpec,
    TrainingData,
    best_without_side_information,
    better,
    candidates,
    evaluate,
    fit,
    in_parallel,
    pick_champions,
    to_refit,
    tune,
    validation_splits,
)

logger = logging.getLogger(__name__)

BASELINE_OF = {"recommender": "popularity", "rating": "bias_baseline"}


def select_implicit_interactions(
    model_input_ratings: DataFrame, columns: dict[str, str], ratings: dict[str, Any]
) -> DataFrame:
    """The implicit interactions (e.g. rating 0): never in train or test, but a
    user has seen these books, and implicit models learn from them."""
    implicit_value = ratings["implicit_value"]
    if implicit_value is None:
        return model_input_ratings.limit(0).select(USER_IDX, ITEM_IDX)
    return model_input_ratings.filter(
        F.col(columns["rating"]) == float(implicit_value)
    ).select(USER_IDX, ITEM_IDX)


def _data(
    train: DataFrame,
    implicit: DataFrame,
    columns: dict[str, str],
    side: DataFrame | None = None,
) -> TrainingData:
    return TrainingData(
        ratings=train, implicit=implicit, rating_col=columns["rating"], side=side
    )


def _side(items: DataFrame, item_based: ItemBasedParams) -> DataFrame | None:
    """The books' side information, cached (every EASE fit reads it)."""
    side = side_information(items, item_based.side_information)
    return side.cache() if side is not None else None


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {m: round(v, 4) for m, v in metrics.items()}


def tune_candidates(
    train_ratings: DataFrame,
    implicit_interactions: DataFrame,
    indexed_items: DataFrame,
    columns: dict[str, str],
    als: dict[str, Any],
    item_based: dict[str, Any],
    tuning: dict[str, Any],
    evaluation: dict[str, Any],
) -> list[dict[str, Any]]:
    """Every candidate's metrics on validation data carved from train.

    TrainValidationSplit fits every candidate once on ``train_ratio`` of the
    training ratings; CrossValidator fits it ``num_folds`` times and averages.
    """
    als, item_based, tuning, evaluation = (
        parse("als", als),
        parse("item_based", item_based),
        parse("tuning", tuning),
        parse("evaluation", evaluation),
    )
    train_ratings = train_ratings.cache()
    side = _side(indexed_items, item_based)
    splits = [
        (
            _data(fit_part.cache(), implicit_interactions, columns, side),
            validation.cache(),
        )
        for fit_part, validation in validation_splits(train_ratings, tuning)
    ]
    return tune(
        candidates(als, item_based),
        splits,
        als,
        item_based,
        evaluation,
        tuning.parallelism,
        tuning.method,
    )


def train_candidates(
    train_ratings: DataFrame,
    implicit_interactions: DataFrame,
    indexed_items: DataFrame,
    test_ratings: DataFrame,
    tuning_results: list[dict[str, Any]],
    columns: dict[str, str],
    als: dict[str, Any],
    item_based: dict[str, Any],
    tuning: dict[str, Any],
    evaluation: dict[str, Any],
) -> tuple[list[FittedModel], list[dict[str, Any]]]:
    """The champions picked on validation and the baselines, refitted on the
    whole training set and evaluated on test, with the seconds each fit and
    evaluation took (wall time, so with ``tuning.parallelism`` > 1 they include
    waiting for another model). The other candidates keep their validation
    metrics only: refitting them would double the fits for numbers no decision
    uses."""
    als, evaluation = parse("als", als), parse("evaluation", evaluation)
    item_based = parse("item_based", item_based)
    data = _data(
        train_ratings.cache(),
        implicit_interactions,
        columns,
        _side(indexed_items, item_based),
    )
    test_ratings = test_ratings.cache()
    specs = to_refit(candidates(als, item_based), tuning_results, evaluation)

    def train(spec: ModelSpec) -> tuple[FittedModel, dict[str, Any]]:
        started_at, started = time.time(), time.perf_counter()
        fitted = fit(spec, data, als, item_based)
        fitted_at = time.perf_counter()
        test_metrics = evaluate(fitted, data, test_ratings, evaluation)
        seconds = {
            "fit": round(fitted_at - started, 2),
            "evaluation": round(time.perf_counter() - fitted_at, 2),
        }
        logger.info(
            "%s on test: %s (fit %.1f s, evaluation %.1f s)",
            spec.name,
            _rounded(test_metrics),
            seconds["fit"],
            seconds["evaluation"],
        )
        metrics = {
            "name": spec.name,
            "params": spec.as_params(),
            "metrics": test_metrics,
            "seconds": seconds,
            # When it ran (epoch seconds): its MLflow run spans that.
            "started": started_at,
            "ended": started_at + time.perf_counter() - started,
        }
        return fitted, metrics

    trained = in_parallel(train, specs, parse("tuning", tuning).parallelism)
    return [model for model, _ in trained], [metrics for _, metrics in trained]


def _champion(
    role: str,
    chosen: dict[str, Any],
    metric: str,
    test: dict[str, dict[str, float]],
) -> dict[str, Any]:
    baseline = BASELINE_OF[role]
    mine, theirs = test[chosen["name"]][metric], test[baseline][metric]
    beats = chosen["name"] != baseline and better(metric, mine, theirs)
    if chosen["name"] == baseline:
        logger.warning(
            "The %s champion is the %s baseline: no model beat it on validation %s "
            "(%.4f). It is registered and served as it is.",
            role,
            baseline.replace("_", " "),
            metric,
            chosen["validation"][metric],
        )
    elif not beats:
        logger.warning(
            "The %s champion %s does NOT beat the %s baseline on test: %s %.4f vs %.4f.",
            role,
            chosen["name"],
            baseline.replace("_", " "),
            metric,
            mine,
            theirs,
        )
    return {
        "role": role,
        "name": chosen["name"],
        "kind": chosen["params"]["model_kind"],
        "selected_by": f"validation_{metric}",
        "validation_value": chosen["validation"][metric],
        "params": chosen["params"],
        "test_metrics": test[chosen["name"]],
        "baseline": baseline,
        "baseline_test_metrics": test[baseline],
        "beats_baseline": {metric: beats},
    }


def select_champions(
    tuning_results: list[dict[str, Any]],
    candidate_metrics: list[dict[str, Any]],
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    """The recommender champion: the best validation ranking metric among all
    candidates, popularity included. The rating champion: the best validation
    rating metric among the rating family, the bias baseline included.

    A champion that is its baseline, or loses to it on test, is said loudly. A
    recommender champion using side information also carries the best
    candidate without it (``without_side_information``: name, params,
    validation value and test metrics), refitted beside it.
    """
    evaluation = parse("evaluation", evaluation)
    test = {m["name"]: m["metrics"] for m in candidate_metrics}
    champions = {
        role: _champion(role, chosen, metric, test)
        for role, (chosen, metric) in pick_champions(tuning_results, evaluation).items()
    }
    reference = best_without_side_information(tuning_results, evaluation)
    if reference is not None:
        recommender = champions["recommender"]
        metric = recommender["selected_by"].removeprefix("validation_")
        recommender["without_side_information"] = {
            "name": reference["name"],
            "params": reference["params"],
            "validation_value": reference["validation"][metric],
            "test_metrics": test[reference["name"]],
        }
        logger.info(
            "Without side information the best candidate is %s: on test %s %.4f "
            "against the champion's %.4f",
            reference["name"],
            metric,
            test[reference["name"]][metric],
            recommender["test_metrics"][metric],
        )
    for role, champion in champions.items():
        logger.info(
            "%s champion: %s (%s %.4f); on test %s",
            role.capitalize(),
            champion["name"],
            champion["selected_by"],
            champion["validation_value"],
            _rounded(champion["test_metrics"]),
        )
    return champions


def predict_test_ratings(
    candidate_models: list[FittedModel],
    champions: dict[str, Any],
    test_ratings: DataFrame,
    columns: dict[str, str],
) -> DataFrame:
    """The rating champion's predictions (else the recommender champion's scores)
    for the test ratings it can score, for the report. An item-based recommender
    predicts no ratings: its column is null."""
    name = champions.get("rating", champions["recommender"])["name"]
    fitted = next(m for m in candidate_models if m.spec.name == name)
    if not isinstance(fitted.model, ALSModel):
        return test_ratings.select(USER_IDX, ITEM_IDX, columns["rating"]).withColumn(
            PREDICTION, F.lit(None).cast("float")
        )
    return fitted.predict(test_ratings.select(USER_IDX, ITEM_IDX, columns["rating"]))


def log_candidates(
    candidate_models: list[FittedModel],
    candidate_metrics: list[dict[str, Any]],
    tuning_results: list[dict[str, Any]],
    train_ratings: DataFrame,
    als: dict[str, Any],
    item_based: dict[str, Any],
) -> dict[str, str]:
    """One nested MLflow run per candidate: its params and validation metrics
    (``validation_*``); for the refitted ones (champions and baselines) also
    their test metrics, the seconds they took and, for a Spark model, the model
    with a signature (an item-based model's weights are in the registered
    champion's bundle). Returns run ids by candidate name."""
    als, item_based = parse("als", als), parse("item_based", item_based)
    refitted = {
        fitted.spec.name: (fitted, metrics)
        for fitted, metrics in zip(candidate_models, candidate_metrics, strict=True)
    }
    specs = {spec.name: spec for spec in candidates(als, item_based)}
    runs = []
    for result in tuning_results:
        spec: ModelSpec = specs[result["name"]]
        params = dict(spec.as_params())
        if spec.kind == "knn":
            params["max_user_items"] = item_based.knn.max_user_items
        elif spec.kind == "ease":
            params["max_items"] = item_based.ease.max_items
        elif not spec.is_baseline:
            family = als.ranking if spec.family == "ranking" else als.rating
            params["num_epochs"] = family.num_epochs
        metrics = {f"validation_{m}": v for m, v in result["validation"].items()}
        span, model = result, None
        if spec.name in refitted:
            fitted, tested = refitted[spec.name]
            metrics |= tested["metrics"]
            metrics |= {f"{step}_seconds": v for step, v in tested["seconds"].items()}
            span = tested
            if isinstance(fitted.model, ALSModel):
                model = fitted.model
            else:
                metrics["model_bytes"] = fitted.model.nbytes
        runs.append(
            CandidateRun(
                name=spec.name,
                params=params,
                metrics=metrics,
                tags={
                    "family": spec.family,
                    "refitted": str(spec.name in refitted).lower(),
                },
                started=span["started"],
                ended=span["ended"],
                spark_model=model,
            )
        )
    return log_candidate_runs(runs, train_ratings)


def _description(
    champion: dict[str, Any],
    n_candidates: int,
    candidate_metrics: list[dict[str, Any]],
    data_statistics: dict[str, Any],
    columns: dict[str, Any],
    k: int,
) -> str:
    """What the version is, what it beat and on which data, for the registry."""
    metric = champion["selected_by"].removeprefix("validation_")
    test = {m["name"]: m["metrics"] for m in candidate_metrics}
    mine, theirs = champion["test_metrics"][metric], test[champion["baseline"]][metric]
    data = data_statistics["model_input"]
    params = ", ".join(
        f"{key} {value:g}" if not isinstance(value, str) else f"{key} {value}"
        for key, value in champion["params"].items()
        if key in HYPERPARAMETERS
    )
    what = _what_it_serves(champion["role"], columns, k)
    verdict = "beats" if champion["beats_baseline"][metric] else "does NOT beat"
    without = champion.get("without_side_information")
    side = (
        f" The best candidate without side information, {without['name']}: "
        f"{without['test_metrics'][metric]:.4f}."
        if without
        else ""
    )
    return (
        f"{champion['role'].capitalize()} champion {champion['name']} "
        f"({champion['kind']}{', ' + params if params else ''}), picked on "
        f"{champion['selected_by']} among {n_candidates} candidates. "
        f"On test it {verdict} {champion['baseline']}: {metric} {mine:.4f} vs "
        f"{theirs:.4f}.{side} Data: {data['users']:,} users x {data['items']:,} items, "
        f"{data['interactions']:,} interactions. {what}"
    )


def _what_it_serves(role: str, columns: dict[str, Any], k: int) -> str:
    """What a served model of the role answers, for the registry's texts."""
    if role == "recommender":
        return (
            f"Top-{k} unseen books for a raw '{columns['user_id']}' (column 'k' "
            "optional); unknown users get the most popular books, flagged cold_start."
        )
    return (
        f"Ratings of raw ('{columns['user_id']}', '{columns['item_id']}') pairs, "
        "clipped to the rating range; pairs without factors come back known=false."
    )


def _model_description(role: str, columns: dict[str, Any], k: int) -> str:
    """What every version of the role's registered model does."""
    served = (
        "Alias 'champion' is the one scoring serves." if role == "recommender" else ""
    )
    return f"The {role} champions. {_what_it_serves(role, columns, k)} {served}".strip()


def register_champions(
    candidate_models: list[FittedModel],
    champions: dict[str, Any],
    candidate_runs: dict[str, str],
    candidate_metrics: list[dict[str, Any]],
    data_statistics: dict[str, Any],
    model_input_ratings: DataFrame,
    indexed_users: DataFrame,
    indexed_items: DataFrame,
    columns: dict[str, Any],
    evaluation: dict[str, Any],
    registry: dict[str, Any],
) -> dict[str, Any]:
    """Logs each champion to the parent run as a pyfunc model that answers by
    raw ids (``serving.Recommender`` or ``serving.RatingPredictor``) and
    registers it with its tags and description, the recommender as a version
    of ``registry.model_name``, the rating champion of
    ``registry.rating_model_name``; each one's alias moves to it.

    The aliases are staged, not moved: they move when the whole run has
    succeeded (``book_recommender.aliases``), so a run that fails, in scoring
    too, leaves the previous champions where they were.
    """
    registry = parse("registry", registry)
    evaluation = parse("evaluation", evaluation)
    model_of = {
        "recommender": (registry.model_name, registry.alias),
        "rating": (registry.rating_model_name, registry.rating_alias),
    }
    registered = {}
    for role, champion in champions.items():
        fitted = next(m for m in candidate_models if m.spec.name == champion["name"])
        version_tags = {
            "role": role,
            "name": champion["name"],
            "kind": champion["kind"],
            "source_run": candidate_runs[champion["name"]],
            "selected_by": champion["selected_by"],
            **{
                f"beats_baseline.{m}": str(b).lower()
                for m, b in champion["beats_baseline"].items()
            },
        }
        # The parent run shows the same, under the champion's prefix.
        tag_parent_run(
            {
                f"{RUN_PREFIX[role]}.{key}": value
                for key, value in version_tags.items()
                if key != "role"
            }
        )
        if fitted.clip is not None:
            version_tags["prediction_clip"] = f"{fitted.clip[0]:g},{fitted.clip[1]:g}"
        bundle = export_bundle(
            fitted.model,
            model_input_ratings,
            indexed_users,
            indexed_items,
            columns,
            evaluation.k,
            fitted.clip,
        )
        model_name, alias = model_of[role]
        version, logged = register_champion(
            bundle,
            role,
            model_name,
            version_tags,
            _description(
                champion,
                len(candidate_runs),
                candidate_metrics,
                data_statistics,
                columns,
                evaluation.k,
            ),
            _model_description(role, columns, evaluation.k),
            champion["test_metrics"],
        )
        registered[role] = {
            "model_name": model_name,
            "version": int(version.version),
            "alias": alias,
            "model_uri": logged.model_uri,
            **version_tags,
        }
    # The aliases move when the whole run has succeeded (its scoring included):
    # a run that fails after this point moves none (book_recommender.aliases).
    for entry in registered.values():
        aliases.stage(entry["model_name"], entry["alias"], entry["version"])
        logger.info(
            "Registered %s version %s; '%s' moves to it when the run succeeds",
            entry["model_name"],
            entry["version"],
            entry["alias"],
        )
    recommender = registered["recommender"]
    return {
        "model_name": recommender["model_name"],
        "version": recommender["version"],
        "alias": recommender["alias"],
        "champions": registered,
    }


def collect_run_metrics(
    data_statistics: dict[str, Any],
    candidate_metrics: list[dict[str, Any]],
    champions: dict[str, Any],
) -> dict[str, dict[str, float]]:
    """The parent run's metrics: data statistics, the baselines and both
    champions on test (``champion.*``: the recommender, ``rating_champion.*``)."""
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
    for candidate in candidate_metrics:
        if candidate["name"] in BASELINE_OF.values():
            values.update(
                {f"{candidate['name']}.{m}": v for m, v in candidate["metrics"].items()}
            )
    share = data_statistics.get("side_information", {}).get(
        "test_share_sharing_a_value"
    )
    if share is not None:
        values["data.side_information_share"] = float(share)
    for role, champion in champions.items():
        values.update(
            {f"{RUN_PREFIX[role]}.{m}": v for m, v in champion["test_metrics"].items()}
        )
        reference = champion.get("without_side_information")
        if reference is not None:
            prefix = f"{RUN_PREFIX[role]}.without_side_information"
            values.update(
                {f"{prefix}.{m}": v for m, v in reference["test_metrics"].items()}
            )
    return {key: {"value": value, "step": 0} for key, value in values.items()}
