"""From a fitted champion to a registered MLflow model that answers by raw ids.

``export_bundle`` collects what ``serving`` needs from Spark (factors, raw ids,
seen books, titles, popularity); ``log_served_model`` logs it as a ``pyfunc``
model with a signature and an input example; ``register`` creates the registry
version with its tags and description in one call.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import scipy
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from mlflow.types.schema import AnyType, Array, ColSpec, Schema
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

import book_recommender
from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.item_based import ItemBasedModel
from book_recommender.models import popularity_scores
from book_recommender.ranking import item_table
from book_recommender.serving import (
    COLD_START,
    K_COLUMN,
    KNOWN,
    PREDICTION,
    RANK,
    SCORE,
    Bundle,
    RatingPredictor,
    Recommender,
)

# What a served model imports: serving.py and topk.py (shipped as code) need no more.
SERVING_REQUIREMENTS = [
    f"mlflow=={mlflow.__version__}",
    f"numpy=={np.__version__}",
    f"pandas=={pd.__version__}",
    f"scipy=={scipy.__version__}",
    "pyarrow",
]


def item_columns(columns: dict[str, Any]) -> list[str]:
    """The raw item id, then the columns that describe an item (title, author)."""
    return [
        c
        for c in (columns["item_id"], columns["item_info"], columns.get("item_author"))
        if c
    ]


def export_bundle(
    model: ALSModel | ItemBasedModel,
    interactions: DataFrame,
    indexed_users: DataFrame,
    indexed_items: DataFrame,
    columns: dict[str, Any],
    k: int,
    clip: tuple[float, float] | None,
) -> Bundle:
    """Everything the served model needs, collected to the driver.

    Users are those with an interaction (the ones scoring ranks); the books they
    interacted with are "seen" and ranked by their interaction count for the
    popular fallback, as in evaluation.
    """
    table = item_table(model, popularity_scores(interactions))
    described = item_columns(columns)
    items = (
        indexed_items.select(ITEM_IDX, *[F.col(c).cast("string") for c in described])
        .toPandas()
        .set_index(ITEM_IDX)
        .reindex(table.ids)
        .rename_axis("item_idx")
        .reset_index()
    )
    users = (
        interactions.select(USER_IDX)
        .distinct()
        .join(
            indexed_users.select(
                USER_IDX, F.col(columns["user_id"]).cast("string").alias("user")
            ),
            on=USER_IDX,
        )
        .toPandas()
        .rename(columns={USER_IDX: "user_idx"})
        .sort_values("user_idx", ignore_index=True)
    )
    users["factor_row"] = -1
    if isinstance(model, ALSModel):
        factors = model.userFactors.toPandas()
        found = pd.Index(factors["id"]).get_indexer(users["user_idx"])
        users.loc[found >= 0, "factor_row"] = np.arange(int((found >= 0).sum()))
        user_factors = (
            np.stack(factors["features"].to_numpy()[found[found >= 0]]).astype(
                np.float32
            )
            if (found >= 0).any()
            else np.zeros((0, model.rank), dtype=np.float32)
        )
        weights, rank = None, int(model.rank)
    else:  # item-based: a user is the books they have seen
        user_factors = np.zeros((0, 0), dtype=np.float32)
        weights, rank = model.on(table), 0
    seen = interactions.select(USER_IDX, ITEM_IDX).distinct().toPandas()
    rows = np.searchsorted(users["user_idx"].to_numpy(), seen[USER_IDX].to_numpy())
    positions, _ = table.positions(seen[ITEM_IDX].to_numpy())
    order = np.lexsort((positions, rows))
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(users)), out=indptr[1:])
    return Bundle(
        users=users,
        user_factors=user_factors,
        items=items,
        table=table,
        seen_indptr=indptr,
        seen_items=positions[order].astype(np.int64),
        weights=weights,
        meta={
            "columns": {
                "user_id": columns["user_id"],
                "item_id": columns["item_id"],
            },
            "item_columns": described,
            "k": int(k),
            "clip": list(clip) if clip else None,
            "rank": rank,
        },
    )


def _signature(bundle: Bundle, role: str) -> ModelSignature:
    user, item = bundle.columns["user_id"], bundle.columns["item_id"]
    if role == "rating":
        return ModelSignature(
            inputs=Schema([ColSpec("string", user), ColSpec("string", item)]),
            outputs=Schema(
                [
                    ColSpec("string", user),
                    ColSpec("string", item),
                    ColSpec("double", PREDICTION),
                    ColSpec("boolean", KNOWN),
                ]
            ),
        )
    return ModelSignature(
        inputs=Schema(
            # k as sent (any type): the model refuses 2.5 or "5" itself, where a
            # "long" column would have them rounded or parsed before it sees them.
            [ColSpec("string", user), ColSpec(AnyType(), K_COLUMN, required=False)]
        ),
        outputs=Schema(
            [
                ColSpec("string", user),
                *[ColSpec(Array("string"), c) for c in bundle.meta["item_columns"]],
                ColSpec(Array("long"), RANK),
                ColSpec(Array("double"), SCORE),
                ColSpec("boolean", COLD_START),
            ]
        ),
    )


def _input_example(bundle: Bundle, role: str) -> pd.DataFrame:
    """Two users the model knows (one with factors, if any) and, for the
    recommender, an id it has never seen."""
    user = bundle.columns["user_id"]
    users = bundle.users.sort_values("factor_row", ascending=False).head(2)
    if role == "rating":
        seen = bundle.seen_items[bundle.seen_indptr[users.index.to_numpy()]]
        return pd.DataFrame(
            {
                user: users["user"].to_numpy(),
                bundle.columns["item_id"]: bundle.items[bundle.columns["item_id"]]
                .iloc[seen]
                .to_numpy(),
            }
        )
    return pd.DataFrame({user: [*users["user"], "no-such-user"]})


def log_served_model(bundle: Bundle, role: str, name: str) -> ModelInfo:
    """Logs ``bundle`` as a pyfunc model named ``name`` to the active run."""
    python_model = RatingPredictor() if role == "rating" else Recommender()
    package = Path(book_recommender.__file__).parent
    with tempfile.TemporaryDirectory() as folder:
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=python_model,
            artifacts={"bundle": str(bundle.save(Path(folder) / "bundle"))},
            code_paths=[str(package)],
            signature=_signature(bundle, role),
            input_example=_input_example(bundle, role),
            pip_requirements=SERVING_REQUIREMENTS,
        )


def register(
    logged: ModelInfo, model_name: str, tags: dict[str, str], description: str
) -> ModelVersion:
    """A new version of ``model_name`` with its tags and description, created
    in one call: a version never exists without them."""
    client = MlflowClient()
    try:
        client.get_registered_model(model_name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(model_name)
    return client.create_model_version(
        model_name,
        source=logged.model_uri,
        run_id=logged.run_id,
        tags=tags,
        description=description,
        model_id=logged.model_id,
    )
