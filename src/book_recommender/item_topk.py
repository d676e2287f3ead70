"""Exact top-k of the item-based models, in numpy alone: a reader is the books
they have seen, scored as the sum of those books' rows of the item-item
weights (``SparseWeights`` for neighbour lists, ``DenseWeights`` for EASE),
seen books left out, readers it scores too few books for topped up with the
fallback. ``rank_users`` is the one top-k of a block of users, whatever the
model (factor models through ``topk.rank_block``).

Shared, as ``topk``, by Spark (``ranking.py``) and the served model
(``serving.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from scipy import sparse

from book_recommender.topk import (
    ItemTable,
    Workspace,
    cold_top_k,
    rank_block,
    ranked_rows,
)


@dataclass(frozen=True)
class SparseWeights:
    """Item-kNN: ``score(u, j) = sum over u's seen items i of W[i, j]``, W a CSR
    matrix over table positions whose row i holds i's neighbours."""

    indptr: np.ndarray  # int64 (items + 1)
    indices: np.ndarray  # int32 table positions
    data: np.ndarray  # float32

    @cached_property
    def matrix(self) -> sparse.csr_matrix:
        """W, built once per process (not per block of users)."""
        n = len(self.indptr) - 1
        return sparse.csr_matrix(
            (self.data, self.indices, self.indptr), shape=(n, n), copy=False
        )

    def __getstate__(self) -> dict[str, Any]:
        # The arrays travel; the matrix over them is rebuilt where it is used.
        return {k: v for k, v in self.__dict__.items() if k != "matrix"}

    def scores(
        self,
        n_rows: int,
        seen_rows: np.ndarray,
        seen_cols: np.ndarray,
        n_items: int,
        exclude_seen: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, table position, score) of every item some seen item points to,
        rows ascending (seen items left out unless ``exclude_seen`` is false)."""
        history = _history(n_rows, seen_rows, seen_cols, n_items)
        product = (history @ self.matrix).tocsr()
        if exclude_seen:
            # Similarities are > 0, so a score is 0 only where it was seen.
            product = product - product.multiply(history)
            product.eliminate_zeros()
        product = product.tocoo()
        return (
            product.row.astype(np.int64),
            product.col.astype(np.int64),
            product.data.astype(np.float32),
        )


@dataclass(frozen=True)
class DenseWeights:
    """EASE: ``score(u, j) = sum over u's seen items i of B[i, j]`` over the
    ``subset`` of table positions the model was fitted on (ascending); other
    items are neither scored nor a part of a user's history."""

    subset: np.ndarray  # int64 table positions, ascending
    matrix: np.ndarray  # float32 (m, m)

    def scores(
        self,
        n_rows: int,
        seen_rows: np.ndarray,
        seen_cols: np.ndarray,
        n_items: int,
        k: int,
        workspace: Workspace,
        exclude_seen: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, table position, score) of at least each row's top ``k`` items
        of the subset (all of its ties; seen ones left out unless
        ``exclude_seen`` is false), for rows with a seen item in it."""
        m = len(self.subset)
        index = np.full(n_items, -1, np.int64)
        index[self.subset] = np.arange(m)
        mapped = index[seen_cols] if len(seen_cols) else np.zeros(0, np.int64)
        mine = mapped >= 0
        rows, cols = seen_rows[mine], mapped[mine]
        warm = np.unique(rows)
        found = [(np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.float32),)]
        chunk = max(1, len(workspace.scores) // max(m, 1))
        for start in range(0, len(warm), chunk):
            part = warm[start : start + chunk]
            local = np.searchsorted(part, rows)
            here = (local < len(part)) & (part[local.clip(0, len(part) - 1)] == rows)
            history = _history(len(part), local[here], cols[here], m)
            scores = workspace.tile(len(part), m)
            scores[...] = history @ self.matrix
            if exclude_seen:
                scores[local[here], cols[here]] = -np.inf
            if m > k:
                bound = np.partition(scores, m - k, axis=1)[:, m - k]
                hit_rows, hit_cols = np.nonzero(
                    (scores >= bound[:, None]) & np.isfinite(scores)
                )
            else:
                hit_rows, hit_cols = np.nonzero(np.isfinite(scores))
            found.append(
                (part[hit_rows], self.subset[hit_cols], scores[hit_rows, hit_cols])
            )
        return tuple(np.concatenate(column) for column in zip(*found))


def _kth_of_rows(
    rows: np.ndarray, values: np.ndarray, n_rows: int, k: int
) -> np.ndarray:
    """Each row's k-th best value; -inf for a row with at most ``k`` entries.
    ``rows`` ascending.

    Rows of similar length (within a factor of two) are padded with -inf into
    one matrix, at most twice their cells, and partitioned together."""
    starts = np.searchsorted(rows, np.arange(n_rows + 1))
    lengths = np.diff(starts)
    threshold = np.full(n_rows, -np.inf, dtype=np.float64)
    long = np.flatnonzero(lengths > k)
    size = np.ceil(np.log2(lengths[long])).astype(np.int64)
    for bucket in np.unique(size):
        mine = long[size == bucket]
        width = int(lengths[mine].max())
        step = max(1, _BEST_CELLS // width)
        offset = np.arange(width)
        for first in range(0, len(mine), step):
            part = mine[first : first + step]
            inside = offset[None, :] < lengths[part, None]
            at = np.where(inside, starts[part, None] + offset[None, :], 0)
            padded = np.where(inside, values[at], -np.inf)
            threshold[part] = np.partition(padded, width - k, axis=1)[:, width - k]
    return threshold


def best_of_rows(
    rows: np.ndarray, values: np.ndarray, n_rows: int, k: int
) -> np.ndarray:
    """Which entries can be in their row's top ``k`` by value: all of a row with
    at most ``k`` entries, else those at or above its k-th best (ties kept, for
    the caller to break). ``rows`` ascending."""
    return values >= _kth_of_rows(rows, values, n_rows, k)[rows]


def top_of_rows(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int, k: int
) -> np.ndarray:
    """Which entries are their row's top ``k`` by value, ties to the lower
    column: exactly ``min(k, row length)`` per row. ``rows`` ascending; no
    order is needed within a row."""
    threshold = _kth_of_rows(rows, values, n_rows, k)[rows]
    keep = values > threshold
    tied = np.flatnonzero(values == threshold)
    if len(tied):
        room = k - np.bincount(rows[keep], minlength=n_rows)
        tied = tied[np.lexsort((cols[tied], rows[tied]))]
        tied_rows = rows[tied]
        first = np.searchsorted(tied_rows, tied_rows)
        keep[tied[np.arange(len(tied)) - first < room[tied_rows]]] = True
    return keep


# Padded cells ``_kth_of_rows`` partitions at once (float32/64, index: ~32 MiB).
_BEST_CELLS = 1 << 21


def _history(
    n_rows: int, rows: np.ndarray, cols: np.ndarray, n_cols: int
) -> sparse.csr_matrix:
    """The 0/1 matrix of what each row has seen (a pair seen twice counts once)."""
    history = sparse.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(n_rows, n_cols)
    )
    history.sum_duplicates()
    history.data[:] = 1.0
    return history


def _topped_up(
    table: ItemTable,
    ranked: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    counts: np.ndarray,
    short: np.ndarray,
    seen_rows: np.ndarray,
    seen_cols: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``ranked`` (rows, cols, rank, values) with the ``short`` rows (fewer
    than k entries) filled up from the fallback ranking, their seen and ranked
    items left out; the fallback's entries have no score (NaN)."""
    rows, cols, rank, values = ranked
    slot = np.full(len(counts), -1, np.int64)
    slot[short] = np.arange(len(short))
    taken_rows = np.concatenate([seen_rows, rows])
    taken_cols = np.concatenate([seen_cols, cols])
    mine = slot[taken_rows] >= 0
    f_rows, f_cols, f_rank, _ = cold_top_k(
        table, len(short), slot[taken_rows[mine]], taken_cols[mine], k
    )
    f_rows = short[f_rows]
    keep = f_rank < k - counts[f_rows]
    f_rows, f_cols = f_rows[keep], f_cols[keep]
    f_rank = f_rank[keep] + counts[f_rows]
    f_values = np.full(len(f_rows), np.nan, np.float32)
    order = np.lexsort((np.concatenate([rank, f_rank]), np.concatenate([rows, f_rows])))
    return (
        np.concatenate([rows, f_rows])[order],
        np.concatenate([cols, f_cols])[order],
        np.concatenate([rank, f_rank])[order],
        np.concatenate([values, f_values])[order],
    )


def rank_history_block(
    table: ItemTable,
    weights: SparseWeights | DenseWeights,
    n_rows: int,
    seen_rows: np.ndarray,
    seen_cols: np.ndarray,
    k: int,
    workspace: Workspace | None = None,
    exclude_seen: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The top ``k`` of ``n_rows`` users of an item-based model, each scored from
    the items they have seen (``seen_rows``/``seen_cols``: row, table position)
    and, unless ``exclude_seen`` is false, not recommended those again.

    A row the model scores fewer than ``k`` unseen items for is filled up with
    the fallback ranking (score NaN: the model has none); a row it scores none
    for is cold. Returns (row, table position, rank from 0, score, cold) arrays,
    rows ascending, ``cold`` per returned entry.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1; found {k}.")
    workspace = workspace or Workspace.create()
    seen_rows = np.asarray(seen_rows, np.int64)
    seen_cols = np.asarray(seen_cols, np.int64)
    n_items = len(table.ids)
    if isinstance(weights, DenseWeights):
        rows, cols, values = weights.scores(
            n_rows, seen_rows, seen_cols, n_items, k, workspace, exclude_seen
        )
    else:
        rows, cols, values = weights.scores(
            n_rows, seen_rows, seen_cols, n_items, exclude_seen
        )
        best = best_of_rows(rows, values, n_rows, k)
        rows, cols, values = rows[best], cols[best], values[best]
    if not exclude_seen:
        seen_rows, seen_cols = seen_rows[:0], seen_cols[:0]
    rows, cols, rank, values = ranked_rows(rows, cols, values, n_rows, k)
    counts = np.bincount(rows, minlength=n_rows)
    cold = counts == 0
    short = np.flatnonzero(counts < k)
    if len(short) and len(table.fallback_order):
        rows, cols, rank, values = _topped_up(
            table, (rows, cols, rank, values), counts, short, seen_rows, seen_cols, k
        )
    return rows, cols, rank, values, cold[rows]


Weights = SparseWeights | DenseWeights


def seen_pairs(
    table: ItemTable, seen_lists: Iterable[Any]
) -> tuple[np.ndarray, np.ndarray]:
    """(row, table position) of each item of each row's list (None: nothing seen);
    items the table does not hold are left out."""
    seen = [s if s is not None else () for s in seen_lists]
    lengths = np.fromiter((len(s) for s in seen), dtype=np.int64, count=len(seen))
    rows = np.repeat(np.arange(len(seen)), lengths)
    cols, present = table.positions(
        np.concatenate([np.asarray(s, np.int64) for s in seen])
        if lengths.sum()
        else np.zeros(0, np.int64)
    )
    return rows[present], cols[present]


def rank_users(
    table: ItemTable,
    weights: Weights | None,
    warm: np.ndarray,
    n_rows: int,
    seen_rows: np.ndarray,
    seen_cols: np.ndarray,
    k: int,
    workspace: Workspace,
    exclude_seen: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One block of users, whatever the model: a factor model (``weights``
    None) ranks rows ``0..len(warm)-1`` by their factors ``warm`` and the rest
    by the fallback; an item-based model ranks every row from its seen items.
    Seen items are left out unless ``exclude_seen`` is false. Returns (row,
    table position, rank from 0, score, cold) arrays."""
    if weights is not None:
        return rank_history_block(
            table, weights, n_rows, seen_rows, seen_cols, k, workspace, exclude_seen
        )
    if not exclude_seen:
        seen_rows, seen_cols = seen_rows[:0], seen_cols[:0]
    rows, cols, rank, scores = rank_block(
        table, warm, n_rows, seen_rows, seen_cols, k, workspace
    )
    return rows, cols, rank, scores, rows >= len(warm)
