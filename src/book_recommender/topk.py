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

from dataclasses import dataclass
from functools import cached_property

import numpy as np


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


def concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices of the ranges ``[starts[i], starts[i] + lengths[i])``, one
    after the other (the rows of several CSR lists at once)."""
    # Position j of the result is starts[i] + (j - the first position of i).
    first = np.cumsum(lengths) - lengths
    return np.repeat(starts - first, lengths) + np.arange(lengths.sum())


def ranked_rows(
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
    return ranked_rows(
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


def cold_top_k(
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
    return ranked_rows(rows, cols, table.popular[cols], n_rows, k)


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
        rows, cols, rank, values = cold_top_k(
            table, n_rows - n_warm, seen_rows[mine] - n_warm, seen_cols[mine], k
        )
        parts.append((rows + n_warm, cols, rank, values))
    if not parts:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, np.zeros(0, np.float32)
    rows, cols, rank, values = (np.concatenate(column) for column in zip(*parts))
    return rows, cols, rank, values
