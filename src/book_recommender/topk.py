"""Exact top-k items for a block of users, in numpy alone.

Shared by the Spark scoring and evaluation (``ranking.py``, inside
``mapInPandas``) and by the registered recommender model (``serving.py``, which
answers requests without Spark), so both serve the same lists.

One BLAS product scores the users that have factors against every item; users
without factors get the fallback (popular) ranking; seen items and items the
ranking does not know score -inf. Each row's top k is then kept exactly: a lower
bound of its k-th best score, taken from a sample of the columns, drops nearly
every item before anything is sorted. Ties go to the lower item id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Columns sampled for the lower bound of each row's k-th best score.
_SAMPLED_COLUMNS = 4096


@dataclass(frozen=True)
class ItemTable:
    """Every item that can be recommended, by ascending id.

    ``unknown`` is 0 for items with factors and -inf for the others (the model
    cannot rank them); ``popular`` is the fallback score, -inf where there is none.
    """

    ids: np.ndarray  # int64, ascending
    factors: np.ndarray  # float32 (items, rank)
    unknown: np.ndarray  # float32
    popular: np.ndarray  # float32

    @classmethod
    def build(
        cls,
        factor_ids: np.ndarray,
        factors: np.ndarray,
        fallback_ids: np.ndarray,
        fallback_scores: np.ndarray,
    ) -> ItemTable:
        """The table over the union of the items with factors and those with a
        fallback score."""
        factor_ids = np.asarray(factor_ids, dtype=np.int64)
        fallback_ids = np.asarray(fallback_ids, dtype=np.int64)
        ids = np.union1d(factor_ids, fallback_ids)
        rank = factors.shape[1] if factors.ndim == 2 else 0  # noqa: PLR2004
        matrix = np.zeros((len(ids), rank), dtype=np.float32)
        known = np.zeros(len(ids), dtype=bool)
        if len(factor_ids):
            rows = np.searchsorted(ids, factor_ids)
            matrix[rows] = factors
            known[rows] = True
        popular = np.full(len(ids), -np.inf, dtype=np.float32)
        if len(fallback_ids):
            popular[np.searchsorted(ids, fallback_ids)] = fallback_scores
        unknown = np.where(known, 0.0, -np.inf).astype(np.float32)
        return cls(ids, matrix, unknown, popular)

    def positions(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, found): where ``item_ids`` sit in the table."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        if not len(self.ids):
            return np.zeros(len(item_ids), dtype=np.int64), np.zeros(
                len(item_ids), dtype=bool
            )
        cols = np.searchsorted(self.ids, item_ids).clip(0, len(self.ids) - 1)
        return cols, self.ids[cols] == item_ids


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


def rank_block(
    table: ItemTable,
    warm: np.ndarray,
    n_rows: int,
    seen_rows: np.ndarray,
    seen_cols: np.ndarray,
    k: int,
    scores: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The top ``k`` of ``n_rows`` users: rows ``0..len(warm)-1`` have the factors
    ``warm``, the rest get the fallback ranking.

    ``seen_rows``/``seen_cols`` are (row, table position) pairs to leave out.
    ``scores``/``mask`` are reused buffers of at least ``n_rows`` rows. Returns
    (row, table position, rank from 0, score) arrays, rows ascending.
    """
    n_items = len(table.ids)
    if scores is None:
        scores = np.empty((n_rows, n_items), dtype=np.float32)
    if mask is None:
        mask = np.empty((n_rows, n_items), dtype=bool)
    scores, mask = scores[:n_rows], mask[:n_rows]
    n_warm = len(warm)
    if n_warm:
        np.matmul(
            warm.astype(np.float32, copy=False), table.factors.T, out=scores[:n_warm]
        )
        scores[:n_warm] += table.unknown
    scores[n_warm:] = table.popular
    if len(seen_rows):
        scores[seen_rows, seen_cols] = -np.inf
    rows, cols, rank = top_k_rows(scores, k, mask)
    return rows, cols, rank, scores[rows, cols]
