"""Top-k books per user, as a reader is served them.

Users the model has factors for get the model's best items; users it has none
for (new, or known only from interactions the model did not learn from) get the
fallback ranking, the popular books, flagged ``cold_start``. Seen items are left
out; ties are broken by item id. Evaluation and scoring both call
``top_k_served``, so a model is measured on exactly the lists it would serve.

How: the item table (factors and fallback scores) is collected once and
broadcast; each task ranks blocks of ``BLOCK_USERS`` users with
``topk.rank_block`` (BLAS products into a reused tile of ``tile_cells`` scores,
an exact top k), the same code the registered recommender model answers
requests with.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import COLD_START, ITEM_IDX, USER_IDX
from book_recommender.item_topk import Weights, rank_users, seen_pairs
from book_recommender.metrics import RANK, SCORE
from book_recommender.topk import BLOCK_USERS, TILE_CELLS, ItemTable, Workspace

MODEL = "_model"  # a model's position in the list ``top_k_served_many`` ranks for
_FEATURES = "_features"
_SEEN = "_seen"
OUTPUT_SCHEMA = (
    f"{USER_IDX} int, {ITEM_IDX} int, {SCORE} float, {RANK} int, {COLD_START} boolean"
)


Fallback = DataFrame | tuple[np.ndarray, np.ndarray]


def fallback_arrays(fallback: Fallback) -> tuple[np.ndarray, np.ndarray]:
    """The fallback scores (ITEM_IDX, SCORE) as (ids, scores) arrays on the
    driver; arrays are returned as they are."""
    if not isinstance(fallback, DataFrame):
        return fallback
    scores = fallback.select(ITEM_IDX, SCORE).toPandas()
    return scores[ITEM_IDX].to_numpy(np.int64), scores[SCORE].to_numpy(np.float32)


def seen_lists(seen: DataFrame) -> DataFrame:
    """(USER_IDX, ITEM_IDX) pairs as one row per user with the list of items
    the user has seen: what ranking reads of ``seen``. A caller ranking many
    times against the same pairs groups them once and passes this instead."""
    return seen.groupBy(USER_IDX).agg(F.collect_set(ITEM_IDX).alias(_SEEN))


def item_table_of(model: Any, fallback_ids, fallback_scores) -> ItemTable:
    """The table over the model's books and those with a fallback score; an
    item-based model has no factors (rank 0)."""
    return ItemTable.build(
        model.item_ids,
        np.zeros((len(model.item_ids), 0), np.float32),
        fallback_ids,
        fallback_scores,
    )


def item_table(model: Any, fallback: Fallback) -> ItemTable:
    """The model's items (with their factors, for a factor model) and the
    fallback scores (ITEM_IDX, SCORE; or their ids and scores as arrays), on
    the driver. ``model`` is a ``models.RecommenderModel``: its
    ``item_weights`` (item-based) or ``item_factors`` and ``rank``."""
    fallback_ids, fallback_scores = fallback_arrays(fallback)
    weights = model.item_weights()
    if weights is not None:
        return item_table_of(weights, fallback_ids, fallback_scores)
    factors = model.item_factors().toPandas()
    return ItemTable.build(
        factors["id"].to_numpy(np.int64),
        np.stack(factors["features"].to_numpy()).astype(np.float32)
        if len(factors)
        else np.zeros((0, model.rank), dtype=np.float32),
        fallback_ids,
        fallback_scores,
    )


def _score_blocks(
    batches: Iterator[pd.DataFrame],
    table: ItemTable,
    weights: Weights | None,
    k: int,
    tile_cells: int,
) -> Iterator[pd.DataFrame]:
    workspace = Workspace.create(tile_cells)
    block = BLOCK_USERS
    rank_width = table.factors.shape[1]
    for batch in batches:
        # Users with factors first, so their scores are one contiguous product.
        ordered = batch.iloc[batch[_FEATURES].isna().to_numpy().argsort(kind="stable")]
        for start in range(0, len(ordered), block):
            part = ordered.iloc[start : start + block]
            features = part[_FEATURES]
            n_warm = int(features.notna().sum())
            warm = (
                np.stack(features.iloc[:n_warm].to_numpy()).astype(np.float32)
                if n_warm
                else np.zeros((0, rank_width), dtype=np.float32)
            )
            seen_rows, seen_cols = seen_pairs(table, part[_SEEN].to_numpy())
            rows, cols, rank, scores, cold = rank_users(
                table, weights, warm, len(part), seen_rows, seen_cols, k, workspace
            )
            yield pd.DataFrame(
                {
                    USER_IDX: part[USER_IDX].to_numpy(np.int32)[rows],
                    ITEM_IDX: table.ids[cols].astype(np.int32),
                    SCORE: scores,
                    RANK: (rank + 1).astype(np.int32),
                    COLD_START: cold,
                }
            )


def _requests(
    users: DataFrame, seen: DataFrame, user_factors: DataFrame | None
) -> DataFrame:
    """The distinct ``users`` with their factors (USER_IDX, _FEATURES; null
    without, or for every user when ``user_factors`` is None) and the list of
    items each has seen (``seen``: pairs, or already ``seen_lists``), spread
    over twice the cores."""
    spark = users.sparkSession
    requests = users.select(USER_IDX).distinct()
    if user_factors is None:
        requests = requests.withColumn(_FEATURES, F.lit(None).cast("array<float>"))
    else:
        requests = requests.join(user_factors, on=USER_IDX, how="left")
    lists = seen if _SEEN in seen.columns else seen_lists(seen)
    return requests.join(lists, on=USER_IDX, how="left").repartition(
        spark.sparkContext.defaultParallelism * 2
    )


def top_k_from_factors(
    user_factors: DataFrame,
    table: ItemTable,
    users: DataFrame,
    seen: DataFrame,
    k: int,
    tile_cells: int = TILE_CELLS,
) -> DataFrame:
    """Each user's ``k`` best items of ``table`` not in ``seen``, ranked 1..k.

    ``user_factors`` has (``id``, ``features``) like ``ALSModel.userFactors``;
    ``users`` has USER_IDX; ``seen`` (USER_IDX, ITEM_IDX) pairs or their
    ``seen_lists``. Users without factors get the table's fallback ranking
    (``cold_start``). A user with fewer than ``k`` unseen candidates gets what
    there is. Item-based models rank with ``top_k_served_many``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1; found {k}.")
    shared = users.sparkSession.sparkContext.broadcast(table)
    requests = _requests(
        users,
        seen,
        user_factors.select(
            F.col("id").alias(USER_IDX), F.col("features").alias(_FEATURES)
        ),
    )

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        yield from _score_blocks(batches, shared.value, None, k, tile_cells)

    return requests.mapInPandas(score, OUTPUT_SCHEMA)


def top_k_served(
    model: Any,
    users: DataFrame,
    seen: DataFrame,
    fallback: Fallback,
    k: int,
    tile_cells: int = TILE_CELLS,
) -> DataFrame:
    """Each user's ``k`` best items by ``model`` not in ``seen``, ranked 1..k;
    ``fallback`` (ITEM_IDX, SCORE) ranks the items for users without factors.
    ``model`` is a ``models.RecommenderModel``."""
    if k < 1:
        raise ValueError(f"k must be >= 1; found {k}.")
    if model.item_weights() is None:
        table = item_table(model, fallback)
        return top_k_from_factors(
            model.user_factors(), table, users, seen, k, tile_cells
        )
    served = top_k_served_many([model], users, seen, fallback, k, tile_cells)
    return served.drop(MODEL)


def top_k_served_many(
    models: list[Any],
    users: DataFrame,
    seen: DataFrame,
    fallback: Fallback,
    k: int,
    tile_cells: int = TILE_CELLS,
) -> DataFrame:
    """``top_k_served`` of several item-based models in one pass: the users'
    seen lists are gathered once, the models broadcast together, and each
    block of users is ranked by every model in turn; rows carry MODEL, the
    model's position in ``models``. Tuning evaluates a shared-fit group so
    (one Spark job instead of one per candidate)."""
    if k < 1:
        raise ValueError(f"k must be >= 1; found {k}.")
    if not models or any(m.item_weights() is None for m in models):
        raise ValueError("top_k_served_many ranks for item-based models only.")
    scores = fallback_arrays(fallback)
    tables = [item_table(model, scores) for model in models]
    ranked = [
        (table, model.item_weights().on(table))
        for model, table in zip(models, tables, strict=True)
    ]
    shared = users.sparkSession.sparkContext.broadcast(ranked)
    requests = _requests(users, seen, None)

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for index, (table, weights) in enumerate(shared.value):
                for frame in _score_blocks(
                    iter([batch]), table, weights, k, tile_cells
                ):
                    frame[MODEL] = np.int32(index)
                    yield frame

    return requests.mapInPandas(score, f"{OUTPUT_SCHEMA}, {MODEL} int")
