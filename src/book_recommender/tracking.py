"""What the data_science nodes hand over, in MLflow: one nested run per
candidate, the champions logged as served models and registered.

The nodes decide (which candidates, which champion, its tags and description);
this module is the only one that opens runs, logs models and writes the
registry. A nested run lasts what it measured: a refitted candidate's refit
and test (ending when its test did), any other candidate's own fits and
evaluations in tuning (a fit shared by grid points counts for each), so the
UI's durations are the fits'. Each champion's logged model carries its own
test metrics only, and each role has its own registered model.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import (
    MLFLOW_MODEL_VERSIONS,
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_RUN_NAME,
    MLFLOW_RUN_NOTE,
)
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame

import book_recommender
from book_recommender import aliases, served_requests
from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.models import RecommenderModel
from book_recommender.models.records import Champion, TestResult
from book_recommender.params import RegistryParams
from book_recommender.registry import (
    SERVING_REQUIREMENTS,
    collect_run_tables,
    export_bundle,
    model_description,
    run_description,
    version_description,
)
from book_recommender.serving import (
    PREDICTION,
    Bundle,
    RatingPredictor,
    Recommender,
)

logger = logging.getLogger(__name__)

# Logging a Spark model is much faster with explicit requirements than with
# MLflow's inference of them.
SPARK_REQUIREMENTS = ["pyspark==4.2.0"]
# Logged models of the parent run (the recommender and the rating champion),
# each at its own step, and the prefix of each champion's tags there.
MODEL_ARTIFACTS = {"recommender": "recommender", "rating": "rating_predictor"}
MODEL_STEP = {"recommender": 1, "rating": 2}
TAG_PREFIX = {"recommender": "champion", "rating": "rating_champion"}
# A measure on test is ``test.<metric>`` in a candidate's run and in the parent
# run, for the recommender champion (one column compares them in the runs
# table); the rating champion's are ``rating_champion.test.<metric>``, and its
# rating measures (RMSE, ...) ``test.<metric>`` too. Validation: ``validation.``.
TEST, VALIDATION = "test", "validation"
METRIC_PREFIX = {"recommender": TEST, "rating": f"rating_champion.{TEST}"}
# The candidate table of the parent run (``mlflow.log_table``).
CANDIDATE_TABLE = "candidates.json"


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


@dataclass(frozen=True)
class CandidateRun:
    """What one candidate's nested run shows."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    started: float  # epoch seconds
    ended: float
    spark_model: ALSModel | None = None  # logged with a signature when given


def _log_spark_model(model: ALSModel, train: DataFrame) -> None:
    """Logs the Spark model (for batch use) to the active run, with a signature
    inferred from training input and the model's predictions for it. Pairs it
    has no factors for get NaN, not dropped rows."""
    model = model.copy({model.coldStartStrategy: "nan"})
    sample = train.select(USER_IDX, ITEM_IDX).limit(200)
    predictions = model.transform(sample).select(PREDICTION).toPandas()
    # mlflow.spark.log_model (MLflow 3.17) still takes artifact_path, and logs no
    # LoggedModel: the registered champions are pyfunc models, logged with name=.
    with warnings.catch_warnings():
        # The ids are integer columns on purpose (ALS reads ints; a request
        # without them is invalid), which MLflow warns about.
        warnings.filterwarnings("ignore", message=".*integer column")
        signature = infer_signature(sample.toPandas(), predictions)
    mlflow.spark.log_model(
        model, "model", signature=signature, pip_requirements=SPARK_REQUIREMENTS
    )


def _parent() -> mlflow.ActiveRun:
    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError(
            "No active MLflow run: run the pipeline with kedro-mlflow enabled."
        )
    return parent


def log_candidate_runs(runs: list[CandidateRun], train: DataFrame) -> dict[str, str]:
    """One nested run of the active run per candidate, spanning the times it
    measured; returns run ids by candidate name."""
    parent = _parent()
    client = MlflowClient()
    ids = {}
    for run in runs:
        created = client.create_run(
            parent.info.experiment_id,
            start_time=_ms(run.started),
            tags={
                MLFLOW_PARENT_RUN_ID: parent.info.run_id,
                MLFLOW_RUN_NAME: run.name,
                **run.tags,
            },
            run_name=run.name,
        )
        run_id = created.info.run_id
        now = _ms(time.time())
        try:
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in run.metrics.items()],
                params=[Param(k, str(v)) for k, v in run.params.items()],
            )
            if run.spark_model is not None:
                with mlflow.start_run(run_id=run_id, nested=True):
                    _log_spark_model(run.spark_model, train)
        except BaseException as error:  # the run must not stay RUNNING
            failed = isinstance(error, Exception)
            client.set_terminated(run_id, "FAILED" if failed else "KILLED")
            raise
        client.set_terminated(run_id, "FINISHED", end_time=_ms(run.ended))
        ids[run.name] = run_id
    mlflow.log_table(_candidate_table(runs, ids), artifact_file=CANDIDATE_TABLE)
    return ids


def _candidate_table(runs: list[CandidateRun], ids: dict[str, str]) -> pd.DataFrame:
    """One row per candidate: what it is, its run, every metric it logged."""
    return pd.DataFrame(
        [
            {
                "candidate": run.name,
                "kind": run.params["kind"],
                "role": run.params["role"],
                "champion": run.tags.get("champion", ""),
                "run_id": ids[run.name],
                **dict(sorted(run.metrics.items())),
            }
            for run in runs
        ]
    )


def tag_parent_run(tags: dict[str, str]) -> None:
    """Tags of the pipeline's run (the champions' names, kinds, verdicts)."""
    _parent()
    mlflow.set_tags(tags)


def _log_served_model(bundle: Bundle, role: str) -> ModelInfo:
    """Logs ``bundle`` as a pyfunc model to the active run, at the role's own
    step: metrics the run logs at step 0 (the run's summary) are then not
    attached to it, as MLflow attaches a metric to the models of its step."""
    python_model = RatingPredictor() if role == "rating" else Recommender()
    package = Path(book_recommender.__file__).parent
    with tempfile.TemporaryDirectory() as folder:
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACTS[role],
            step=MODEL_STEP[role],
            python_model=python_model,
            artifacts={"bundle": str(bundle.save(Path(folder) / "bundle"))},
            code_paths=[str(package)],
            signature=served_requests.signature(bundle, role),
            input_example=served_requests.input_example(bundle, role),
            pip_requirements=SERVING_REQUIREMENTS,
        )


def _register(
    logged: ModelInfo,
    model_name: str,
    tags: dict[str, str],
    description: str,
    model_description: str,
) -> ModelVersion:
    """A new version of ``model_name`` with its tags and description, created
    in one call: a version never exists without them. The registered model
    gets (or keeps) ``model_description``."""
    client = MlflowClient()
    try:
        if client.get_registered_model(model_name).description != model_description:
            client.update_registered_model(model_name, description=model_description)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(model_name, description=model_description)
    version = client.create_model_version(
        model_name,
        source=logged.model_uri,
        run_id=logged.run_id,
        tags=tags,
        description=description,
        model_id=logged.model_id,
    )
    # The logged model's side of the link, which the UI reads for its
    # "Registered models" column (mlflow.register_model sets it too; it cannot
    # take the description, so the version would exist a moment without it).
    links = json.loads(
        client.get_logged_model(logged.model_id).tags.get(MLFLOW_MODEL_VERSIONS, "[]")
    )
    client.set_logged_model_tags(
        logged.model_id,
        {
            MLFLOW_MODEL_VERSIONS: json.dumps(
                [*links, {"name": model_name, "version": version.version}]
            )
        },
    )
    return version


def register_champion(
    bundle: Bundle,
    role: str,
    model_name: str,
    tags: dict[str, str],
    description: str,
    model_description: str,
    metrics: dict[str, float],
) -> tuple[ModelVersion, ModelInfo]:
    """Logs ``bundle`` to the active run as the ``role``'s served model, with
    ``metrics`` (its test metrics) attached to it alone, and registers it as a
    new version of ``model_name`` linked to that logged model."""
    parent = _parent()
    logged = _log_served_model(bundle, role)
    mlflow.log_metrics(
        {f"{METRIC_PREFIX[role]}.{m}": v for m, v in metrics.items()},
        step=MODEL_STEP[role],
        model_id=logged.model_id,
        run_id=parent.info.run_id,
    )
    version = _register(logged, model_name, tags, description, model_description)
    return version, logged


def _version_tags(
    role: str,
    champion: Champion,
    candidate_runs: dict[str, str],
    fitted: RecommenderModel,
) -> dict[str, str]:
    """The version's tags; the parent run gets the same under the champion's
    prefix (but the clip)."""
    tags = {
        "role": role,
        "name": champion.name,
        "kind": champion.kind,
        "source_run": candidate_runs[champion.name],
        "selected_by": champion.selected_by,
        **{
            f"beats_baseline.{m}": str(b).lower()
            for m, b in champion.beats_baseline.items()
        },
    }
    tag_parent_run(
        {f"{TAG_PREFIX[role]}.{key}": v for key, v in tags.items() if key != "role"}
    )
    if fitted.clip is not None:
        tags["prediction_clip"] = f"{fitted.clip[0]:g},{fitted.clip[1]:g}"
    return tags


def _stage_aliases(registered: dict[str, dict[str, Any]]) -> None:
    """The aliases move when the whole run has succeeded (its scoring
    included): a run that fails after this point moves none
    (``book_recommender.aliases``)."""
    for entry in registered.values():
        aliases.stage(entry["model_name"], entry["alias"], entry["version"])
        logger.info(
            "Registered %s version %s; '%s' moves to it when the run succeeds",
            entry["model_name"],
            entry["version"],
            entry["alias"],
        )


def _model_of(registry: RegistryParams, role: str) -> tuple[str, str]:
    """The registered model a champion of ``role`` is a version of, and its alias."""
    if role == "rating":
        return registry.rating_model_name, registry.rating_alias
    return registry.model_name, registry.alias


def register_champions(
    candidate_models: list[RecommenderModel],
    champions: dict[str, Champion],
    candidate_runs: dict[str, str],
    candidate_metrics: list[TestResult],
    data_statistics: dict[str, Any],
    model_input_ratings: DataFrame,
    indexed_users: DataFrame,
    indexed_items: DataFrame,
    columns: dict[str, Any],
    k: int,
    registry: RegistryParams,
) -> dict[str, Any]:
    """Logs each champion to the parent run as a pyfunc model answering raw
    ids (``serving.Recommender`` / ``RatingPredictor``), registers it as a
    version of its role's model with tags and description, and stages its
    alias: it moves when the whole run has succeeded (``aliases``), so a run
    that fails, in scoring too, leaves the previous champions where they were.
    """
    registered = {}
    tables = collect_run_tables(
        model_input_ratings, indexed_users, indexed_items, columns
    )
    for role, champion in champions.items():
        fitted = next(m for m in candidate_models if m.name == champion.name)
        tags = _version_tags(role, champion, candidate_runs, fitted)
        bundle = export_bundle(
            fitted, model_input_ratings, indexed_users, indexed_items, columns, k,
            tables,
        )  # fmt: skip
        bundle.meta.update(max_k=registry.max_k, max_rows=registry.max_rows)
        model_name, alias = _model_of(registry, role)
        texts = (
            version_description(
                champion, len(candidate_runs), candidate_metrics, data_statistics,
                columns, k,
            ),
            model_description(role, columns, k),
        )  # fmt: skip
        version, logged = register_champion(
            bundle, role, model_name, tags, *texts, champion.test_metrics
        )
        registered[role] = {
            "model_name": model_name,
            "version": int(version.version),
            "alias": alias,
            "model_uri": logged.model_uri,
            **tags,
        }
    _stage_aliases(registered)
    tag_parent_run({MLFLOW_RUN_NOTE: run_description(champions, registered)})
    recommender = registered["recommender"]
    return {
        "model_name": recommender["model_name"],
        "version": recommender["version"],
        "alias": recommender["alias"],
        "champions": registered,
    }


def _data_quality_metrics(data_statistics: dict[str, Any]) -> dict[str, float]:
    """``data_quality.<file>.<count>``: the raw files' damage (counts, shares)."""
    return {
        f"data_quality.{table}.{what}": float(count)
        for table, counts in data_statistics.get("data_quality", {}).items()
        for what, count in counts.items()
        if isinstance(count, int | float)
    }


def parent_run_metrics(
    data_statistics: dict[str, Any],
    candidate_metrics: list[TestResult],
    champions: dict[str, Champion],
) -> dict[str, dict[str, float]]:
    """The parent run's metrics: data statistics, the baselines and both
    champions on test (``METRIC_PREFIX``)."""
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
    values.update(_data_quality_metrics(data_statistics))
    for candidate in candidate_metrics:
        if candidate.candidate.baseline:
            values.update(
                {
                    f"{candidate.name}.{TEST}.{m}": v
                    for m, v in candidate.metrics.items()
                }
            )
    share = data_statistics.get("side_information", {}).get(
        "test_share_sharing_a_value"
    )
    if share is not None:
        values["data.side_information_share"] = float(share)
    for role, champion in champions.items():
        values.update(
            {f"{METRIC_PREFIX[role]}.{m}": v for m, v in champion.test_metrics.items()}
        )
        reference = champion.without_side_information
        if reference is not None:
            prefix = f"{TAG_PREFIX[role]}.without_side_information.{TEST}"
            values.update(
                {f"{prefix}.{m}": v for m, v in reference.test_metrics.items()}
            )
    if "rating" in champions:  # the measures only the rating champion has
        values.update(
            {
                f"{TEST}.{m}": v
                for m, v in champions["rating"].test_metrics.items()
                if f"{TEST}.{m}" not in values
            }
        )
    return {key: {"value": value, "step": 0} for key, value in values.items()}
