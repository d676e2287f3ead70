"""Nodes of the scoring pipeline: top-k books for every user from the registered model."""

from __future__ import annotations

import logging
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pyspark.ml import PipelineModel
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.metrics import RANK, SCORE
from book_recommender.models import popularity_scores
from book_recommender.ranking import COLD_START, top_k_served

logger = logging.getLogger(__name__)

PARAMS_FILE = "conf/base/parameters_scoring.yml"
MODEL_VERSION = "model_version"


class ModelNotFoundError(LookupError):
    """The registry has no model under the name, alias or version asked for."""


def _reference(scoring: dict[str, Any]) -> tuple[str, str, str]:
    """(model name, what was asked for, model URI): a version wins over an alias."""
    name = scoring["model_name"]
    version = scoring.get("model_version")
    if version is not None:
        return name, f"version {version}", f"models:/{name}/{version}"
    alias = scoring.get("model_alias") or "champion"
    return name, f"alias '{alias}'", f"models:/{name}@{alias}"


def _resolve(client: MlflowClient, name: str, scoring: dict[str, Any]):
    try:
        if scoring.get("model_version") is not None:
            return client.get_model_version(name, str(scoring["model_version"]))
        return client.get_model_version_by_alias(
            name, scoring.get("model_alias") or "champion"
        )
    except MlflowException as error:
        try:
            versions = sorted(
                int(v.version) for v in client.search_model_versions(f"name='{name}'")
            )
            aliases = client.get_registered_model(name).aliases
        except MlflowException:
            versions, aliases = [], {}
        _, asked, _ = _reference(scoring)
        existing = (
            f"it has versions {versions} and aliases {aliases or '{}'}"
            if versions
            else "no version of it is registered (run the data_science pipeline first)"
        )
        raise ModelNotFoundError(
            f"Registered model '{name}' has no {asked} in the registry at "
            f"{mlflow.get_registry_uri()}: {existing}. Set scoring.model_alias or "
            f"scoring.model_version ({PARAMS_FILE})."
        ) from error


def load_registered_model(
    registered_model: dict[str, Any], scoring: dict[str, Any]
) -> tuple[ALSModel, dict[str, Any]]:
    """The ALS model behind ``scoring.model_alias`` (or ``model_version``).

    ``registered_model`` is what the last training run registered; scoring says
    so when it uses another version.
    """
    client = MlflowClient()
    name, asked, uri = _reference(scoring)
    version = _resolve(client, name, scoring)
    loaded = mlflow.spark.load_model(uri)
    model = loaded.stages[-1] if isinstance(loaded, PipelineModel) else loaded
    if not isinstance(model, ALSModel):
        raise TypeError(f"{uri} holds a {type(model).__name__}, not an ALSModel.")
    if int(version.version) != int(registered_model.get("version", -1)):
        logger.warning(
            "Scoring with %s %s (version %s); the last training run registered version %s.",
            name, asked, version.version, registered_model.get("version"),
        )  # fmt: skip
    clip = version.tags.get("prediction_clip")
    info = {
        "model_name": name,
        "model_version": int(version.version),
        "clip": [float(x) for x in clip.split(",")] if clip else None,
    }
    logger.info("Scoring with %s version %s (%s)", name, version.version, asked)
    return model, info


def recommend_for_users(
    model: ALSModel,
    model_info: dict[str, Any],
    model_input_ratings: DataFrame,
    indexed_users: DataFrame,
    indexed_items: DataFrame,
    columns: dict[str, str],
    scoring: dict[str, Any],
) -> DataFrame:
    """The top ``k`` books for every user with an interaction, titles joined.

    Books the user already rated are left out (unless ``exclude_rated`` is false,
    as in the tutorial). Users the model has no factors for get the most popular
    books they have not rated, flagged in ``cold_start``.
    """
    k = int(scoring.get("k", 10))
    if k < 1:
        raise ValueError(f"scoring.k must be >= 1; found {k} ({PARAMS_FILE}).")
    users = model_input_ratings.select(USER_IDX).distinct()
    seen = model_input_ratings.select(USER_IDX, ITEM_IDX)
    if not scoring.get("exclude_rated", True):
        seen = seen.limit(0)
    served = top_k_served(model, users, seen, popularity_scores(model_input_ratings), k)
    clip = model_info.get("clip")
    score = F.col(SCORE)
    if clip:
        score = F.least(F.greatest(score, F.lit(clip[0])), F.lit(clip[1]))
    # A cold-start row's score is a popularity count, not the model's: none.
    recommendations = served.withColumn(
        SCORE, F.when(F.col(COLD_START), F.lit(None)).otherwise(score)
    )
    user, item = columns["user_id"], columns["item_id"]
    item_columns = [
        c for c in (item, columns["item_info"], columns.get("item_author")) if c
    ]
    return (
        recommendations.join(indexed_users.select(USER_IDX, user), on=USER_IDX)
        .join(indexed_items.select(ITEM_IDX, *item_columns), on=ITEM_IDX)
        .select(
            user,
            USER_IDX,
            F.col(RANK).cast("int").alias(RANK),
            *item_columns,
            ITEM_IDX,
            F.col(SCORE).cast("float").alias(SCORE),
            COLD_START,
            F.lit(model_info["model_version"]).alias(MODEL_VERSION),
        )
    )


def summarize_recommendations(
    user_recommendations: DataFrame, model_info: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Row count, users and the model version, for the MLflow run."""
    row = user_recommendations.agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct(USER_IDX).alias("users"),
        F.sum(F.col(COLD_START).cast("int")).alias("cold"),
    ).first()
    values = {
        "scoring.rows": float(row["rows"]),
        "scoring.users": float(row["users"]),
        "scoring.cold_start_rows": float(row["cold"] or 0),
        "scoring.model_version": float(model_info["model_version"]),
    }
    logger.info("Wrote %s recommendations for %s users", row["rows"], row["users"])
    return {key: {"value": value, "step": 0} for key, value in values.items()}
