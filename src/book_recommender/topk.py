"""Exact top-k items for a block of users, in numpy alone.

Shared by the Spark scoring and evaluation (``ranking.py``, inside
``mapInPandas``) and by the registered recommender model (``serving.py``, which
answers requests without Spark), so both serve the same lists.

Users with factors are scored against the items one tile at a time, the items
in descending order of their factor norm: a BLAS product of the users' factors
and a slice of the item factors into a reused buffer small enough to stay in
the CPU cache, then a comparison with each user's lower bound keeps the few
scores that can be in the top k (row maxima first: most rows have nothing to
keep in most tiles). The bound starts as the k-th best score of the first tile
and rises to the k-th best found so far after 2, 4, 8 ... tiles; a user drops
out of the scan once their norm times the next item's norm (the most any later
item can score, by Cauchy-Schwarz) is below it, and the scan stops when no
user is left. Exact: no entry of the true top k is ever below a bound. Seen
items score -inf; items without factors are not scanned. Users without factors
get the fallback (popular) ranking, their seen items skipped. Ties go to the
lower item id.

Memory per call: one tile (``tile_cells`` float32 scores) and the candidates,
whatever the number of items.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from scipy import sparse


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

    @cached_property
    def scan(self) -> Scan:
        """The items with factors in the order the ranking scans them."""
        return Scan.of(self)

    @cached_property
    def fallback_order(self) -> np.ndarray:
        """Positions of the items with a fallback score, best first (ties: lower
        position)."""
        ranked = np.flatnonzero(np.isfinite(self.popular))
        return ranked[np.argsort(-self.popular[ranked], kind="stable")]

    def positions(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, found): where ``item_ids`` sit in the table."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        if not len(self.ids):
            return np.zeros(len(item_ids), dtype=np.int64), np.zeros(
                len(item_ids), dtype=bool
            )
        cols = np.searchsorted(self.ids, item_ids).clip(0, len(self.ids) - 1)
        return cols, self.ids[cols] == item_ids


# Scores per tile: 2**21 float32 = 8 MiB (2**19 to 2**22 measured alike here).
TILE_CELLS = 1 << 21
# Users ranked together: one BLAS product of this many rows per item tile.
BLOCK_USERS = 1024


@dataclass
class Workspace:
    """The reused tile of scores of one task (allocating one per product costs
    more than the product: page faults)."""

    scores: np.ndarray  # float32, flat

    @classmethod
    def create(cls, tile_cells: int = TILE_CELLS) -> Workspace:
        if tile_cells < 1:
            raise ValueError(f"tile_cells must be >= 1; found {tile_cells}.")
        return cls(np.empty(tile_cells, np.float32))

    def tile(self, n_rows: int, width: int) -> np.ndarray:
        """A (n_rows, width) view, the buffer grown if needed."""
        cells = n_rows * width
        if cells > len(self.scores):
            self.scores = np.empty(cells, np.float32)
        return self.scores[:cells].reshape(n_rows, width)


def _ranked(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first ``k`` candidates of each row by value descending, then column."""
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k
    return rows[keep], cols[keep], rank[keep], values[keep]


@dataclass(frozen=True)
class Scan:
    """The items with factors by descending factor norm: a user's score for an
    item is at most the product of their norms (Cauchy-Schwarz), so once that
    product falls below a user's k-th best score, no later item can enter the
    user's top k. Unknown items are not scanned at all."""

    order: np.ndarray  # table positions, by descending norm (ties: position)
    factors: np.ndarray  # float32 (scanned items, rank), C order
    norms: np.ndarray  # float64, descending
    position: np.ndarray  # scan position of each table position; -1: unknown

    @classmethod
    def of(cls, table: ItemTable) -> Scan:
        known = np.flatnonzero(table.unknown == 0)
        norms = np.linalg.norm(table.factors[known].astype(np.float64), axis=1)
        by_norm = np.argsort(-norms, kind="stable")
        order = known[by_norm]
        position = np.full(len(table.ids), -1, np.int64)
        position[order] = np.arange(len(order))
        return cls(
            order=order,
            factors=np.ascontiguousarray(table.factors[order], dtype=np.float32),
            norms=norms[by_norm],
            position=position,
        )


# A float32 dot product of rank r can exceed the product of the norms by about
# r * 6e-8 of it: the Cauchy-Schwarz cut-off keeps this margin.
_NORM_MARGIN = 1.0 + 1e-4


def _seen_in_scan(
    scan: Scan, seen_rows: np.ndarray, seen_cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The seen (row, scan position) pairs, by position; seen items the scan
    does not hold (unknown to the model) are never scanned, so left out."""
    seen_pos = scan.position[seen_cols]
    scanned = seen_pos >= 0
    seen_rows, seen_pos = seen_rows[scanned], seen_pos[scanned]
    by_pos = np.argsort(seen_pos, kind="stable")
    return seen_rows[by_pos], seen_pos[by_pos]


def _first_bounds(scores: np.ndarray, k: int) -> np.ndarray:
    """Each row's k-th best score of the first tile: no item below it can be
    in the row's top k."""
    width = scores.shape[1]
    if width > k:
        bound = np.partition(scores, width - k, axis=1)[:, width - k]
    else:
        bound = np.full(len(scores), -np.inf, np.float32)
    # -inf (seen) never passes, however low a row's bound is.
    return np.maximum(bound, np.finfo(np.float32).min)


def _mask_seen(
    scores: np.ndarray,
    slot: np.ndarray,
    live: np.ndarray,
    seen_rows: np.ndarray,
    seen_pos: np.ndarray,
    start: int,
    stop: int,
) -> None:
    """-inf in the tile ``scores`` (the ``live`` rows x scan positions
    start..stop) where a row has seen the item; ``slot`` is scratch."""
    lo, hi = np.searchsorted(seen_pos, (start, stop))
    slot.fill(-1)
    slot[live] = np.arange(len(live))
    here = slot[seen_rows[lo:hi]]
    mine = here >= 0
    scores[here[mine], seen_pos[lo:hi][mine] - start] = -np.inf


def _warm_top_k(
    table: ItemTable,
    warm: np.ndarray,
    seen_rows: np.ndarray,
    seen_cols: np.ndarray,
    k: int,
    workspace: Workspace,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n_warm, scan = len(warm), table.scan
    n_scan = len(scan.order)
    width = max(1, len(workspace.scores) // n_warm)
    # The first tile sets the bounds: it must hold more than k items per row.
    first = min(n_scan, max(width, 4 * k))
    seen_rows, seen_pos = _seen_in_scan(scan, seen_rows, seen_cols)
    user_norms = np.linalg.norm(warm.astype(np.float64), axis=1) * _NORM_MARGIN
    # Rows with nothing finite (all seen) find nothing at all.
    found_rows, found_cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    found_values = [np.zeros(0, np.float32)]
    slot = np.empty(n_warm, np.int64)  # a row's place among the live rows
    bound = None
    start, tiles, refresh_at = 0, 0, 2
    while start < n_scan:
        stop = min(n_scan, start + (first if bound is None else width))
        if bound is None:
            live = np.arange(n_warm)
        else:
            # Rows whose best possible score from here on reaches their bound.
            live = np.flatnonzero(user_norms * scan.norms[start] >= bound)
            if not len(live):
                break
        scores = workspace.tile(len(live), stop - start)
        np.matmul(warm[live], scan.factors[start:stop].T, out=scores)
        _mask_seen(scores, slot, live, seen_rows, seen_pos, start, stop)
        if bound is None:
            bound = _first_bounds(scores, k)
        # A row maximum is far cheaper than a comparison of every score: only
        # the few rows that reach their bound in this tile are compared.
        hits = np.flatnonzero(np.max(scores, axis=1) >= bound[live])
        if len(hits):
            part = scores[hits]
            rows, cols = np.nonzero(part >= bound[live[hits], None])
            found_rows.append(live[hits[rows]])
            found_cols.append(scan.order[cols + start])
            found_values.append(part[rows, cols])
        start, tiles = stop, tiles + 1
        if tiles == refresh_at and start < n_scan:
            # Raise the bounds to the k-th best found so far (after 2, 4, 8 ...
            # tiles), so that fewer rows reach them in the tiles to come.
            refresh_at *= 2
            found_rows, found_cols, found_values = _raise_bounds(
                bound, found_rows, found_cols, found_values, k
            )
    return _ranked(
        np.concatenate(found_rows),
        np.concatenate(found_cols),
        np.concatenate(found_values),
        n_warm,
        k,
    )


def _raise_bounds(
    bound: np.ndarray,
    found_rows: list[np.ndarray],
    found_cols: list[np.ndarray],
    found_values: list[np.ndarray],
    k: int,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Each row's bound raised (in place) to the k-th best value it has found,
    if it has found k; the candidates below their row's bound dropped."""
    rows = np.concatenate(found_rows)
    values = np.concatenate(found_values)
    order = np.lexsort((-values, rows))
    ordered_rows, ordered_values = rows[order], values[order]
    counts = np.bincount(ordered_rows, minlength=len(bound))
    starts = np.cumsum(counts) - counts
    full = np.flatnonzero(counts >= k)
    np.maximum.at(bound, full, ordered_values[starts[full] + k - 1])
    # A value below the k-th best of its row has k better ones: never in the top k.
    keep = values >= bound[rows]
    return [rows[keep]], [np.concatenate(found_cols)[keep]], [values[keep]]


def _cold_top_k(
    table: ItemTable,
    n_rows: int,
    seen_rows: np.ndarray,
    seen_cols: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fallback ranking for ``n_rows`` users, each without their seen items."""
    order = table.fallback_order
    seen_count = np.bincount(seen_rows, minlength=n_rows)
    depth = min(len(order), k + int(seen_count.max(initial=0)))
    rows = np.repeat(np.arange(n_rows), depth)
    cols = np.tile(order[:depth], n_rows)
    n_items = max(len(table.ids), 1)
    unseen = ~np.isin(rows * n_items + cols, seen_rows * n_items + seen_cols)
    rows, cols = rows[unseen], cols[unseen]
    return _ranked(rows, cols, table.popular[cols], n_rows, k)


def rank_block(
    table: ItemTable,
    warm: np.ndarray,
    n_rows: int,
    seen_rows: np.ndarray,
    seen_cols: np.ndarray,
    k: int,
    workspace: Workspace | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The top ``k`` of ``n_rows`` users: rows ``0..len(warm)-1`` have the factors
    ``warm``, the rest get the fallback ranking.

    ``seen_rows``/``seen_cols`` are (row, table position) pairs to leave out.
    ``workspace`` holds the reused tile. Returns (row, table position, rank from
    0, score) arrays, rows ascending.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1; found {k}.")
    workspace = workspace or Workspace.create()
    seen_rows = np.asarray(seen_rows, np.int64)
    seen_cols = np.asarray(seen_cols, np.int64)
    n_warm = len(warm)
    parts = []
    if n_warm and len(table.scan.order):
        mine = seen_rows < n_warm
        parts.append(
            _warm_top_k(
                table,
                np.ascontiguousarray(warm, dtype=np.float32),
                seen_rows[mine],
                seen_cols[mine],
                k,
                workspace,
            )
        )
    if n_rows > n_warm:
        mine = seen_rows >= n_warm
        rows, cols, rank, values = _cold_top_k(
            table, n_rows - n_warm, seen_rows[mine] - n_warm, seen_cols[mine], k
        )
        parts.append((rows + n_warm, cols, rank, values))
    if not parts:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, np.zeros(0, np.float32)
    rows, cols, rank, values = (np.concatenate(column) for column in zip(*parts))
    return rows, cols, rank, values


# --------------------------------------------------------------------------------------
# Item-based models: a user is their history, not a factor vector.


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
    f_rows, f_cols, f_rank, _ = _cold_top_k(
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
    rows, cols, rank, values = _ranked(rows, cols, values, n_rows, k)
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
