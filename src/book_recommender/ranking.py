"""Top-k books per user, as a reader is served them.

Users the model has factors for get the model's best items; users it has none
for (new, or known only from interactions the model did not learn from) get the
fallback ranking, the popular books, flagged ``cold_start``. Seen items are left
out; ties are broken by item id. Evaluation and scoring both call
``top_k_served``, so a model is measured on exactly the lists it would serve.

How: the item factors and the fallback scores are collected once and broadcast;
each task scores blocks of users against all items with one BLAS matrix product
into a buffer of at most ``block_cells`` scores, then keeps each row's top k
exactly: a lower bound of the k-th best score, taken from a sample of the
columns, drops nearly every item before anything is sorted.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.metrics import RANK, SCORE

COLD_START = "cold_start"
# Scores per block: 2**24 float32 = 64 MiB per task, whatever the item count.
DEFAULT_BLOCK_CELLS = 1 << 24
# Columns sampled for the lower bound of each row's k-th best score.
_SAMPLED_COLUMNS = 4096
_FEATURES = "_features"
_SEEN = "_seen"
OUTPUT_SCHEMA = (
    f"{USER_IDX} int, {ITEM_IDX} int, {SCORE} float, {RANK} int, {COLD_START} boolean"
)


def _item_table(
    model: ALSModel, fallback: DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(item ids ascending, their factors, 0 or -inf by whether they have factors,
    their fallback scores).

    Items without factors score -inf by the model, items without a fallback score
    -inf as fallback: neither can be recommended by what does not know it.
    """
    factors = model.itemFactors.toPandas()
    scores = fallback.select(ITEM_IDX, SCORE).toPandas()
    ids = np.union1d(
        factors["id"].to_numpy(np.int64), scores[ITEM_IDX].to_numpy(np.int64)
    )
    matrix = np.zeros((len(ids), model.rank), dtype=np.float32)
    known = np.zeros(len(ids), dtype=bool)
    if len(factors):
        rows = np.searchsorted(ids, factors["id"].to_numpy(np.int64))
        matrix[rows] = np.stack(factors["features"].to_numpy()).astype(np.float32)
        known[rows] = True
    popular = np.full(len(ids), -np.inf, dtype=np.float32)
    if len(scores):
        popular[np.searchsorted(ids, scores[ITEM_IDX].to_numpy(np.int64))] = scores[
            SCORE
        ].to_numpy(np.float32)
    return ids, matrix, np.where(known, 0.0, -np.inf).astype(np.float32), popular


def top_k_rows(
    scores: np.ndarray, k: int, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's ``k`` largest finite scores, by score descending then column.

    Returns (row, column, rank starting at 0) arrays, rows ascending. Exact: the
    k-th largest of a column sample is a lower bound of the row's k-th largest, so
    every entry of the true top k passes the filter. ``mask``, a reused boolean
    buffer of the same shape, saves allocating (and page-faulting) one per call.
    """
    n_rows, n_cols = scores.shape
    stride = max(1, n_cols // _SAMPLED_COLUMNS)
    sample = scores[:, ::stride]
    if mask is None:
        mask = np.empty(scores.shape, dtype=bool)
    if sample.shape[1] > k:
        bound = np.partition(sample, sample.shape[1] - k, axis=1)[
            :, sample.shape[1] - k
        ]
        np.greater_equal(scores, bound[:, None], out=mask)
    else:
        np.isfinite(scores, out=mask)
    # One flat scan of the mask: far faster than a 2-D np.nonzero.
    rows, cols = np.divmod(np.flatnonzero(mask), n_cols)
    values = scores[rows, cols]
    finite = np.isfinite(values)
    rows, cols, values = rows[finite], cols[finite], values[finite]
    order = np.lexsort((cols, -values, rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k
    return rows[keep], cols[keep], rank[keep]


def _score_blocks(
    batches: Iterator[pd.DataFrame],
    ids: np.ndarray,
    matrix: np.ndarray,
    unknown: np.ndarray,
    popular: np.ndarray,
    k: int,
    block_cells: int,
) -> Iterator[pd.DataFrame]:
    block = max(1, block_cells // max(len(ids), 1))
    buffer = np.empty((block, len(ids)), dtype=np.float32)
    mask = np.empty((block, len(ids)), dtype=bool)
    for batch in batches:
        # Users with factors first, so their scores are one contiguous product.
        ordered = batch.iloc[batch[_FEATURES].isna().to_numpy().argsort(kind="stable")]
        for start in range(0, len(ordered), block):
            part = ordered.iloc[start : start + block]
            features = part[_FEATURES]
            n_warm = int(features.notna().sum())
            scores = buffer[: len(part)]
            if n_warm:
                users = np.stack(features.iloc[:n_warm].to_numpy()).astype(np.float32)
                np.matmul(users, matrix.T, out=scores[:n_warm])
                scores[:n_warm] += unknown
            scores[n_warm:] = popular
            seen = part[_SEEN].map(lambda s: s if s is not None else ()).to_numpy()
            lengths = np.fromiter((len(s) for s in seen), dtype=np.int64)
            if lengths.sum():
                items = np.concatenate([np.asarray(s, np.int64) for s in seen])
                where = np.repeat(np.arange(len(part)), lengths)
                cols = np.searchsorted(ids, items).clip(0, len(ids) - 1)
                present = ids[cols] == items
                scores[where[present], cols[present]] = -np.inf
            rows, cols, rank = top_k_rows(scores, k, mask[: len(part)])
            yield pd.DataFrame(
                {
                    USER_IDX: part[USER_IDX].to_numpy(np.int32)[rows],
                    ITEM_IDX: ids[cols].astype(np.int32),
                    SCORE: scores[rows, cols],
                    RANK: (rank + 1).astype(np.int32),
                    COLD_START: rows >= n_warm,
                }
            )


def top_k_served(
    model: ALSModel,
    users: DataFrame,
    seen: DataFrame,
    fallback: DataFrame,
    k: int,
    block_cells: int = DEFAULT_BLOCK_CELLS,
) -> DataFrame:
    """Each user's ``k`` best items not in ``seen``, ranked 1..k.

    ``users`` has USER_IDX; ``seen`` (USER_IDX, ITEM_IDX); ``fallback``
    (ITEM_IDX, SCORE), the ranking for users without factors (``cold_start``).
    A user with fewer than ``k`` unseen candidates gets what there is.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1; found {k}.")
    spark = users.sparkSession
    ids, matrix, unknown, popular = _item_table(model, fallback)
    shared = spark.sparkContext.broadcast((ids, matrix, unknown, popular))
    seen_lists = seen.groupBy(USER_IDX).agg(F.collect_set(ITEM_IDX).alias(_SEEN))
    requests = (
        users.select(USER_IDX)
        .distinct()
        .join(
            model.userFactors.select(
                F.col("id").alias(USER_IDX), F.col("features").alias(_FEATURES)
            ),
            on=USER_IDX,
            how="left",
        )
        .join(seen_lists, on=USER_IDX, how="left")
        .repartition(spark.sparkContext.defaultParallelism * 2)
    )

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        ids, matrix, unknown, popular = shared.value
        yield from _score_blocks(batches, ids, matrix, unknown, popular, k, block_cells)

    return requests.mapInPandas(score, OUTPUT_SCHEMA)
