"""What the item-based families (``knn``, ``rp3``, ``ease``) share: a reader's
history as distinct (reader, book) pairs, the books' side information (e.g. the
author), each normalized value a pseudo-reader of its books, and the sparse
neighbour lists (``NeighbourWeights``) that item-kNN and RP3beta compute by
Spark tasks over blocks of books (``nearest_neighbours``).

Both families score a user from the books they have seen, not from a learnt
user vector: ``score(u, j) = sum over u's seen books i of W[i, j]``. A user's
history is binary (an explicit rating and an implicit interaction count
alike), so the served model needs no more than the books each user has seen,
which it already carries to leave them out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy import sparse

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.item_topk import SparseWeights, top_of_rows
from book_recommender.memory_plan import Footprint
from book_recommender.topk import ItemTable

# Weights one task computes at once (before its top-k), ~16 bytes each.
_BLOCK_ENTRIES = 1_000_000


def distinct_pairs(interactions: DataFrame) -> DataFrame:
    return interactions.select(USER_IDX, ITEM_IDX).distinct()


def side_incidence(side: pd.DataFrame, item_ids: np.ndarray) -> sparse.csr_matrix:
    """Side values x books (1 where a book has the value), over ``item_ids``;
    books outside them left out."""
    ids = side[ITEM_IDX].to_numpy(np.int64)
    position = np.searchsorted(item_ids, ids).clip(0, max(len(item_ids) - 1, 0))
    known = (item_ids[position] == ids) if len(item_ids) else np.zeros(len(ids), bool)
    _, rows = np.unique(side[SIDE].to_numpy(str)[known], return_inverse=True)
    return sparse.csr_matrix(
        (np.ones(len(rows), np.float64), (rows, position[known])),
        shape=(int(rows.max(initial=-1)) + 1, len(item_ids)),
    )


SIDE = "_side"  # a normalized side-information value of a book (its author...)


def side_information(items: DataFrame, columns: list[str]) -> DataFrame | None:
    """(ITEM_IDX, SIDE): each book's values of the side-information
    ``columns`` (e.g. ``Book-Author``), normalized to their lower-case letters
    and digits (case, punctuation and spacing ignored), each prefixed by its
    column; empty values left out. None without columns."""
    if not columns:
        return None
    missing = [c for c in columns if c not in items.columns]
    if missing:
        raise ValueError(
            f"item_based.side_information names {missing}, not columns of the "
            f"items table (found {items.columns}); name the items' column(s) or "
            "set it to [] and item_based.knn.side_weight and item_based.ease.beta "
            "to [0.0]."
        )
    parts = []
    for column in columns:
        # Letters and digits only, lower case: "J.R.R. Tolkien" = "j. r. r. tolkien".
        value = F.regexp_replace(
            F.lower(F.col(column).cast("string")), r"[^\p{L}\p{N}]", ""
        )
        parts.append(
            items.filter(value != "").select(
                ITEM_IDX, F.concat(F.lit(f"{column}="), value).alias(SIDE)
            )
        )
    side = parts[0]
    for part in parts[1:]:
        side = side.unionByName(part)
    return side.distinct()


@dataclass(frozen=True)
class NeighbourWeights:
    """Each book's nearest neighbours (item-kNN, RP3beta): CSR rows over
    ``item_ids`` (ascending)."""

    item_ids: np.ndarray  # int64 ITEM_IDX values, ascending
    indptr: np.ndarray
    indices: np.ndarray  # positions in item_ids
    data: np.ndarray  # float32 similarities

    def on(self, table: ItemTable) -> SparseWeights:
        """The weights over ``table``'s positions (the table holds every item)."""
        position = np.searchsorted(table.ids, self.item_ids)
        n = len(table.ids)
        rows = np.repeat(position, np.diff(self.indptr))
        matrix = sparse.csr_matrix(
            (self.data, (rows, position[self.indices])), shape=(n, n)
        )
        matrix.sort_indices()
        return SparseWeights(
            indptr=matrix.indptr.astype(np.int64),
            indices=matrix.indices.astype(np.int32),
            data=matrix.data.astype(np.float32),
        )

    def cut(self, neighbours: int) -> NeighbourWeights:
        """The model with each book's ``neighbours`` best neighbours (ties: the
        lower one) of those it keeps: a fit with fewer neighbours, exactly."""
        rows = np.repeat(np.arange(len(self.item_ids)), np.diff(self.indptr))
        keep = top_of_rows(
            rows, self.indices, self.data, len(self.item_ids), neighbours
        )
        indptr = np.concatenate(
            [[0], np.cumsum(np.bincount(rows[keep], minlength=len(self.item_ids)))]
        )
        return NeighbourWeights(
            item_ids=self.item_ids,
            indptr=indptr.astype(np.int64),
            indices=self.indices[keep],
            data=self.data[keep],
        )

    @property
    def recommendable(self) -> np.ndarray:
        """The books some book's neighbour list holds: what it can recommend."""
        return self.item_ids[np.unique(self.indices)]

    @property
    def nbytes(self) -> int:
        return (
            self.item_ids.nbytes
            + self.indptr.nbytes
            + self.indices.nbytes
            + self.data.nbytes
        )


def sampled(rows: np.ndarray, n_rows: int, most: int, seed: int) -> np.ndarray:
    """Which entries stay when each row keeps a seeded random ``most`` of its
    entries (all of a row with fewer)."""
    order = np.lexsort((np.random.default_rng(seed).random(len(rows)), rows))
    starts = np.searchsorted(rows[order], np.arange(n_rows))
    place = np.empty(len(rows), np.int64)
    place[order] = np.arange(len(rows)) - starts[rows[order]]
    return place < most


def _blocks(matrix: sparse.csc_matrix, budget: int) -> list[tuple[int, int]]:
    """Contiguous item ranges whose similarity rows hold at most about
    ``budget`` entries each (a row's entries: at most the books its readers
    add)."""
    binary = matrix.copy()
    binary.data[:] = 1.0
    per_user = np.asarray(binary.sum(axis=1)).ravel()
    cost = np.asarray(binary.T @ per_user).ravel() + 1
    edges = np.searchsorted(
        np.cumsum(cost), np.arange(budget, cost.sum() + budget, budget)
    )
    bounds = np.unique(np.concatenate([[0], np.minimum(edges + 1, len(cost))]))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


def _top_neighbours(
    block: sparse.csr_matrix, first: int, neighbours: int, every_column: bool
) -> tuple[np.ndarray, ...]:
    """(item, neighbour, similarity) of each row's ``neighbours`` best entries
    by their float32 value, as kept (ties: the lower neighbour), the item
    itself and zeros left out; with ``every_column``, followed by each
    column's best entry of the block (ties: the lower row). Chosen at the kept
    precision, so that two weights equal but for the order of a float64 sum
    tie, as they should."""
    block = block.tocoo()
    mine = (block.row + first != block.col) & (block.data > 0)
    rows, cols = block.row[mine], block.col[mine]
    values = block.data[mine].astype(np.float32)
    best = top_of_rows(rows, cols, values, block.shape[0], neighbours)
    found = (rows[best] + first, cols[best], values[best])
    if not every_column:
        return found
    return found + _column_bests(rows + first, cols, values, block.shape[1])


def _column_bests(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, value) of each column's best entry (ties: the lower row)."""
    order = np.argsort(cols, kind="stable")
    rows, cols, values = rows[order], cols[order], values[order]
    best = top_of_rows(cols, rows, values, n_cols, 1)
    return rows[best], cols[best], values[best]


def nearest_neighbours(
    spark: SparkSession,
    matrix: sparse.csc_matrix,
    neighbours: int,
    right: sparse.csc_matrix | None = None,
    every_column: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(book, neighbour, weight) of each book's ``neighbours`` best by
    ``W = matrix' right`` (``right`` defaults to ``matrix``: a similarity), by
    Spark tasks over blocks of books of the broadcast reader x book matrices;
    the book itself and weights <= 0 left out. With ``every_column``, each
    book that any book reaches also keeps its strongest in-link (a row may
    then hold more than ``neighbours``): every such book can be recommended."""
    blocks = _blocks(matrix, _BLOCK_ENTRIES)
    shared = spark.sparkContext.broadcast((matrix, right))

    def rows(ranges: Iterator[tuple[int, int]]) -> Iterator[tuple[np.ndarray, ...]]:
        matrix, right = shared.value
        right = matrix if right is None else right
        bests = None  # each column's best so far in this partition
        for first, stop in ranges:
            product = (matrix[:, first:stop].T @ right).tocsr()
            found = _top_neighbours(product, first, neighbours, every_column)
            if every_column:
                mine = found[3:]
                if bests is not None:
                    merged = (np.concatenate(p) for p in zip(bests, mine, strict=True))
                    mine = _column_bests(*merged, n_cols=product.shape[1])
                bests, found = mine, found[:3] + _EMPTY
            yield _typed(found)
        if bests is not None:  # one set of column bests per task, not per block
            yield _typed(_EMPTY + bests)

    # An RDD of numpy arrays: millions of kept pairs come back as a few pickled
    # arrays per block, not as rows converted through the JVM.
    kept = (
        spark.sparkContext.parallelize(
            blocks, min(len(blocks), spark.sparkContext.defaultParallelism * 2)
        )
        .mapPartitions(rows)
        .collect()
    )
    shared.unpersist()
    parts = [
        np.concatenate([part[i] for part in kept])
        if kept
        else np.zeros(0, (np.int32, np.int32, np.float32)[i % 3])
        for i in range(6 if every_column else 3)
    ]
    del kept  # the collected blocks go before the lists are sorted (peak memory)
    if not every_column:
        return tuple(parts)
    return _with_column_bests(*parts, n_cols=matrix.shape[1])


_EMPTY = (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32))


def _typed(parts: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """(item, neighbour, value) triples as int32, int32, float32."""
    return tuple(
        part.astype(np.float32 if i % 3 == 2 else np.int32, copy=False)  # noqa: PLR2004
        for i, part in enumerate(parts)
    )


def _with_column_bests(
    item, neighbour, value, best_item, best_neighbour, best_value, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kept entries and each column's best over every block, once each,
    ordered by item and neighbour."""
    bests = _column_bests(best_item, best_neighbour, best_value, n_cols)
    item, neighbour, value = (
        np.concatenate([a, b])
        for a, b in zip((item, neighbour, value), bests, strict=True)
    )
    order = np.lexsort((neighbour, item))
    item, neighbour, value = item[order], neighbour[order], value[order]
    del order
    again = (item[1:] == item[:-1]) & (neighbour[1:] == neighbour[:-1])
    if again.any():
        first = np.concatenate([[True], ~again])
        item, neighbour, value = item[first], neighbour[first], value[first]
    return item, neighbour, value


def neighbour_footprint(
    family: str, neighbours: int, kept_per_book: int, books: int, parallel: int
) -> Footprint:
    """A neighbour family's lists over ``books`` books: 8 bytes per kept
    neighbour (int32 position and float32 weight) and an int64 row pointer,
    held and broadcast; ``parallel`` fits at once each also hold the lists as
    their tasks return them."""
    weights = books * (kept_per_book * 8 + 8)
    return Footprint(
        setting=f"item_based.{family}.neighbours = {neighbours}",
        python_bytes=2 * parallel * weights,
        broadcast_bytes=weights,
    )


def neighbour_weights(
    item_ids: np.ndarray, item: np.ndarray, neighbour: np.ndarray, value: np.ndarray
) -> NeighbourWeights:
    """The weights of distinct (item, neighbour, value) triples over positions
    in ``item_ids``: CSR rows by item, neighbours ascending. Built from one
    sort, without scipy's int64 copies of the triples (millions at the real
    shape)."""
    order = np.lexsort((neighbour, item))
    counts = np.bincount(item, minlength=len(item_ids))
    return NeighbourWeights(
        item_ids=item_ids,
        indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        indices=neighbour[order].astype(np.int32),
        data=value[order].astype(np.float32),
    )
