"""Exact top-k items for a block of users, in numpy alone.

Shared by the Spark scoring and evaluation (``ranking.py``, inside
``mapInPandas``) and by the registered recommender model (``serving.py``, which
answers requests without Spark), so both serve the same lists.

Users with factors are scored against the items one tile at a time: a BLAS
product of the users' factors and a slice of the item factors into a reused
buffer small enough to stay in the CPU cache, then a comparison with each
user's lower bound keeps the few scores that can be in the top k (row maxima
first: most rows have nothing to keep in most tiles). The bound is
the k-th best score of the first tile (the lowest item ids: with
StringIndexer's frequency order, the most popular books), so it is exact: no
entry of the true top k is below it. Seen items score -inf; items without
factors score NaN and never pass. Users without factors get the fallback
(popular) ranking, their seen items skipped. Ties go to the lower item id.

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
    def scoring_factors(self) -> np.ndarray:
        """The factors with NaN rows for the unknown items: NaN scores never pass
        a comparison, so those items drop out without a pass of their own."""
        factors = np.array(self.factors, dtype=np.float32, order="C")
        factors[np.isneginf(self.unknown)] = np.nan
        return factors

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


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's ``k`` largest finite scores of a dense matrix, by score
    descending then column: (row, column, rank from 0), rows ascending.

    The plain reference of the tiled ranking below (and of its tie rule)."""
    rows, cols = np.nonzero(np.isfinite(scores))
    found, cols, rank, _ = _ranked(rows, cols, scores[rows, cols], len(scores), k)
    return found, cols, rank


def _warm_top_k(
    table: ItemTable,
    warm: np.ndarray,
    seen_rows: np.ndarray,
    seen_cols: np.ndarray,
    k: int,
    workspace: Workspace,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n_warm, n_items = len(warm), len(table.ids)
    factors = table.scoring_factors
    width = max(1, len(workspace.scores) // n_warm)
    # The first tile sets the bounds: it must hold more than k items per row.
    first = min(n_items, max(width, 4 * k))
    by_col = np.argsort(seen_cols, kind="stable")
    seen_rows, seen_cols = seen_rows[by_col], seen_cols[by_col]
    # Rows with nothing finite (all seen, all unknown) find nothing at all.
    found_rows, found_cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    found_values = [np.zeros(0, np.float32)]
    row_max = np.empty(n_warm, np.float32)
    bound = None
    start = 0
    while start < n_items:
        stop = min(n_items, start + (first if bound is None else width))
        scores = workspace.tile(n_warm, stop - start)
        np.matmul(warm, factors[start:stop].T, out=scores)
        lo, hi = np.searchsorted(seen_cols, (start, stop))
        scores[seen_rows[lo:hi], seen_cols[lo:hi] - start] = -np.inf
        if bound is None:
            scores[np.isnan(scores)] = -np.inf
            if stop - start > k:
                kth = stop - start - k
                bound = np.partition(scores, kth, axis=1)[:, kth]
            else:
                bound = np.full(n_warm, -np.inf, np.float32)
            # -inf (seen) never passes, however low a row's bound is.
            bound = np.maximum(bound, np.finfo(np.float32).min)[:, None]
        # A row maximum is far cheaper than a comparison of every score: only
        # the few rows that reach their bound in this tile are compared.
        np.fmax.reduce(scores, axis=1, out=row_max)  # NaN (unknown items) ignored
        hits = np.flatnonzero(row_max >= bound[:, 0])
        if len(hits):
            part = scores[hits]
            rows, cols = np.nonzero(part >= bound[hits])
            found_rows.append(hits[rows])
            found_cols.append(cols + start)
            found_values.append(part[rows, cols])
        start = stop
    return _ranked(
        np.concatenate(found_rows),
        np.concatenate(found_cols),
        np.concatenate(found_values),
        n_warm,
        k,
    )


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
    if n_warm and len(table.ids):
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
