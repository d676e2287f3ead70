"""From a fitted champion to the files its served model answers from.

``export_bundle`` collects what ``serving`` needs from Spark (factors, raw ids,
seen books, titles, popularity); ``tracking.register_champion`` logs it as a
``pyfunc`` model and registers it.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
import scipy
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.item_based import ItemBasedModel
from book_recommender.models import popularity_scores
from book_recommender.ranking import item_table
from book_recommender.serving import (
    Bundle,
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
