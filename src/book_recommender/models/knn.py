"""Item-kNN as a family: each book's nearest neighbours over co-readers (and
shared side values), a reader scored by the sum over the books they have seen
(``items``).

``W[i, j]`` is the similarity of books i and j over their readers, kept for the
``neighbours`` most similar j of each i (i itself excluded). ``cosine``:
co-readers / sqrt(readers_i * readers_j). ``bm25``: the ``implicit`` library's
BM25Recommender weighting, each (book, reader) cell weighted
``(K1 + 1) / (K1 * ((1 - B) + B * readers_i / mean readers) + 1) * idf_u`` with
``idf_u = log(books) - log1p(books of u)``, so that prolific readers count
less, then the dot products of the weighted book vectors. A reader with more
than ``maxUserItems`` books adds only a seeded sample of that many of them to
the similarity (a reader with n books makes n^2 pairs): the work is bounded by
``readers * maxUserItems^2``; their whole history still scores. The weighted
matrix is built on the driver and broadcast; Spark tasks compute the similarity
rows of blocks of books and keep their top neighbours. With side information,
each value is a pseudo-reader of its books with weight ``sideWeight``: two books
of one author gain that much similarity.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.ml.param import TypeConverters
from pyspark.ml.param.shared import HasSeed
from pyspark.sql import DataFrame, SparkSession
from scipy import sparse

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.models.base import (
    ItemWeightsModel,
    ModelSpec,
    SharedFitRecommender,
    TrainingData,
    param,
)
from book_recommender.models.items import distinct_pairs, side_incidence
from book_recommender.topk import ItemTable, SparseWeights, top_of_rows

logger = logging.getLogger(__name__)

SIMILARITIES = ("bm25", "cosine")
# Similarity entries one task computes at once (before its top-k), ~16 bytes each.
_BLOCK_ENTRIES = 4_000_000


@dataclass(frozen=True)
class KnnWeights:
    """Each book's nearest neighbours: CSR rows over ``item_ids`` (ascending)."""

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

    def cut(self, neighbours: int) -> KnnWeights:
        """The model with each book's ``neighbours`` best neighbours (ties: the
        lower one) of those it keeps: a fit with fewer neighbours, exactly."""
        rows = np.repeat(np.arange(len(self.item_ids)), np.diff(self.indptr))
        keep = top_of_rows(
            rows, self.indices, self.data, len(self.item_ids), neighbours
        )
        indptr = np.concatenate(
            [[0], np.cumsum(np.bincount(rows[keep], minlength=len(self.item_ids)))]
        )
        return KnnWeights(
            item_ids=self.item_ids,
            indptr=indptr.astype(np.int64),
            indices=self.indices[keep],
            data=self.data[keep],
        )

    @property
    def nbytes(self) -> int:
        return (
            self.item_ids.nbytes
            + self.indptr.nbytes
            + self.indices.nbytes
            + self.data.nbytes
        )


def _knn_matrix(
    pairs: pd.DataFrame,
    similarity: str,
    max_user_items: int,
    bm25_k1: float,
    bm25_b: float,
    seed: int,
) -> tuple[np.ndarray, sparse.csc_matrix]:
    """(item ids, weighted users x items matrix) of the distinct ``pairs``: each
    cell weighted for ``similarity``, a prolific reader's cells sampled down to
    ``max_user_items``."""
    users, u = np.unique(pairs[USER_IDX].to_numpy(np.int64), return_inverse=True)
    item_ids, i = np.unique(pairs[ITEM_IDX].to_numpy(np.int64), return_inverse=True)
    readers = np.bincount(i, minlength=len(item_ids)).astype(np.float64)
    books = np.bincount(u, minlength=len(users)).astype(np.float64)
    if similarity == "cosine":
        weight = 1.0 / np.sqrt(readers[i])
    else:
        length = (1.0 - bm25_b) + bm25_b * readers[i] / readers.mean()
        idf = np.log(len(item_ids)) - np.log1p(books[u])
        weight = (bm25_k1 + 1.0) / (bm25_k1 * length + 1.0) * idf
    keep = _sampled(u, len(users), max_user_items, seed)
    matrix = sparse.csc_matrix(
        (weight[keep], (u[keep], i[keep])), shape=(len(users), len(item_ids))
    )
    return item_ids, matrix


def _sampled(rows: np.ndarray, n_rows: int, most: int, seed: int) -> np.ndarray:
    """Which entries stay when each row keeps a seeded random ``most`` of its
    entries (all of a row with fewer)."""
    order = np.lexsort((np.random.default_rng(seed).random(len(rows)), rows))
    starts = np.searchsorted(rows[order], np.arange(n_rows))
    place = np.empty(len(rows), np.int64)
    place[order] = np.arange(len(rows)) - starts[rows[order]]
    return place < most


def _side_rows(
    side: pd.DataFrame, item_ids: np.ndarray, weight: float, most: int, seed: int
) -> sparse.csc_matrix:
    """Side values x books, ``sqrt(weight)`` where a book has the value: stacked
    under the readers, each value is a pseudo-reader of its books, so the
    similarity gains ``weight`` x the values two books share. A value with more
    than ``most`` books keeps a seeded sample of them, as a prolific reader."""
    incidence = side_incidence(side, item_ids).tocoo()
    keep = _sampled(incidence.row, incidence.shape[0], most, seed)
    return sparse.csc_matrix(
        (
            np.full(int(keep.sum()), np.sqrt(weight)),
            (incidence.row[keep], incidence.col[keep]),
        ),
        shape=incidence.shape,
    )


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
    block: sparse.csr_matrix, first: int, neighbours: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item, neighbour, similarity) of each row's ``neighbours`` best entries
    (ties: the lower neighbour), the item itself and zeros left out."""
    block = block.tocoo()
    mine = (block.row + first != block.col) & (block.data > 0)
    rows, cols, values = block.row[mine], block.col[mine], block.data[mine]
    best = top_of_rows(rows, cols, values, block.shape[0], neighbours)
    return rows[best] + first, cols[best], values[best]


def _nearest(
    spark: SparkSession, matrix: sparse.csc_matrix, neighbours: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(book, neighbour, similarity) of each book's ``neighbours`` best, by
    Spark tasks over blocks of books of the broadcast reader x book matrix."""
    blocks = _blocks(matrix, _BLOCK_ENTRIES)
    shared = spark.sparkContext.broadcast(matrix)

    def rows(ranges: Iterator[tuple[int, int]]) -> Iterator[tuple[np.ndarray, ...]]:
        matrix = shared.value
        for first, stop in ranges:
            product = (matrix[:, first:stop].T @ matrix).tocsr()
            item, neighbour, value = _top_neighbours(product, first, neighbours)
            yield item.astype(np.int32), neighbour.astype(np.int32), value

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
    return tuple(
        np.concatenate([part[i] for part in kept])
        if kept
        else np.zeros(0, (np.int32, np.int32, np.float32)[i])
        for i in range(3)
    )


def fit_item_knn(
    interactions: DataFrame,
    similarity: str,
    neighbours: int,
    max_user_items: int,
    bm25_k1: float,
    bm25_b: float,
    seed: int,
    side: DataFrame | None = None,
    side_weight: float = 0.0,
) -> KnnWeights:
    """The ``neighbours`` most similar books of every book, by ``similarity``
    over the (USER_IDX, ITEM_IDX) ``interactions`` plus ``side_weight`` x the
    ``side`` values (ITEM_IDX, SIDE) two books share; see the module docstring.

    The weighted user x book matrix is built on the driver and broadcast; Spark
    tasks compute the similarity rows of blocks of books (a sparse product per
    block, its top ``neighbours`` per row kept there), so no pair of books is
    ever shuffled.
    """
    if similarity not in SIMILARITIES:
        raise ValueError(
            f"similarity must be one of {SIMILARITIES}; found {similarity!r}"
        )
    spark = interactions.sparkSession
    pairs = distinct_pairs(interactions).toPandas()
    item_ids, matrix = _knn_matrix(
        pairs, similarity, max_user_items, bm25_k1, bm25_b, seed
    )
    if side_weight:
        if side is None:
            raise ValueError(
                f"item-kNN side_weight {side_weight:g} needs side information: set "
                "item_based.side_information to the items' column(s)."
            )
        rows = _side_rows(side.toPandas(), item_ids, side_weight, max_user_items, seed)
        matrix = sparse.vstack([matrix, rows], format="csc")
    item, neighbour, value = _nearest(spark, matrix, neighbours)
    result = sparse.csr_matrix(
        (value.astype(np.float32), (item, neighbour)),
        shape=(len(item_ids), len(item_ids)),
    )
    result.sort_indices()
    return KnnWeights(
        item_ids=item_ids,
        indptr=result.indptr.astype(np.int64),
        indices=result.indices.astype(np.int32),
        data=result.data.astype(np.float32),
    )


class ItemKnn(SharedFitRecommender, HasSeed):
    """Item-kNN; the grid points of one similarity and side weight share one
    fit (``fitMultiple``: fitted with the most neighbours, cut for the others,
    exactly a fit with fewer)."""

    similarity = param("similarity", "bm25 or cosine", TypeConverters.toString)
    neighbours = param("neighbours", "neighbours kept per book", TypeConverters.toInt)
    sideWeight = param(
        "sideWeight",
        "similarity per side value two books share",
        TypeConverters.toFloat,
    )
    maxUserItems = param(
        "maxUserItems",
        "a reader's books sampled into the similarity",
        TypeConverters.toInt,
    )
    bm25K1 = param("bm25K1", "BM25 K1", TypeConverters.toFloat)
    bm25B = param("bm25B", "BM25 B", TypeConverters.toFloat)

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._setDefault(
            similarity="bm25",
            neighbours=50,
            sideWeight=0.0,
            maxUserItems=500,
            bm25K1=1.2,
            bm25B=0.75,
            seed=42,
        )

    def spec(self) -> ModelSpec:
        get = self.getOrDefault
        return ModelSpec(
            "knn",
            similarity=get(self.similarity),
            neighbours=get(self.neighbours),
            side_weight=get(self.sideWeight),
        )

    def _share_key(self) -> tuple[str, float]:
        return self.getOrDefault(self.similarity), self.getOrDefault(self.sideWeight)

    def _shared(self, group: list[ItemKnn], data: TrainingData) -> KnnWeights:
        """The fit with the most neighbours of the group: the others are cut."""
        get = self.getOrDefault
        return fit_item_knn(
            data.seen,
            get(self.similarity),
            max(e.getOrDefault(e.neighbours) for e in group),
            get(self.maxUserItems),
            get(self.bm25K1),
            get(self.bm25B),
            get(self.seed),
            side=data.side,
            side_weight=get(self.sideWeight),
        )

    def _from_shared(self, widest: KnnWeights, data: TrainingData) -> ItemKnnModel:
        return ItemKnnModel.of(widest.cut(self.getOrDefault(self.neighbours)))


class ItemKnnModel(ItemWeightsModel):
    """A fitted item-kNN: its neighbour lists (``KnnWeights``)."""
