"""Item-based recommenders: item-kNN and EASE, fitted on the training interactions.

Both score a user from the books they have seen, not from a learnt user vector:
``score(u, j) = sum over u's seen books i of W[i, j]``. A user's history is
binary (an explicit rating and an implicit interaction count alike), so the
served model needs no more than the books each user has seen, which it already
carries to leave them out.

- **item-kNN** (``fit_item_knn``, computed with Spark): ``W[i, j]`` is the
  similarity of books i and j over their readers, kept for the ``neighbours``
  most similar j of each i (i itself excluded). ``cosine``: co-readers /
  sqrt(readers_i * readers_j). ``bm25``: the ``implicit`` library's
  BM25Recommender weighting, each (book, reader) cell weighted
  ``(K1 + 1) / (K1 * ((1 - B) + B * readers_i / mean readers) + 1) * idf_u``
  with ``idf_u = log(books) - log1p(books of u)``, so that prolific readers count
  less, then the dot products of the weighted book vectors. A reader with more
  than ``max_user_items`` books adds only a seeded sample of that many of them
  to the similarity (a reader with n books makes n^2 pairs): the work is
  bounded by ``readers * max_user_items^2``; their whole history still scores.
  The weighted matrix is built on the driver and broadcast; Spark tasks compute
  the similarity rows of blocks of books and keep their top neighbours. With
  side information (e.g. the author), each value is a pseudo-reader of its books
  with weight ``side_weight``: two books of one author gain that much similarity.
- **EASE** (``fit_ease``, numpy on the driver): ``B = I - P / diag(P)``,
  ``P = (X'X + l2 I)^-1`` over the ``max_items`` books with the most
  interactions; other books are neither recommended nor part of a history.
  Memory about ``20 * max_items^2`` bytes at the peak (the float64 Gram matrix,
  its inverse and the float32 weights); time one Cholesky inverse.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import sparse
from scipy.linalg import lapack

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.topk import DenseWeights, ItemTable, SparseWeights, top_of_rows

logger = logging.getLogger(__name__)

SIMILARITIES = ("bm25", "cosine")
# Similarity entries one task computes at once (before its top-k), ~16 bytes each.
_BLOCK_ENTRIES = 4_000_000


@dataclass(frozen=True)
class ItemKnnModel:
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

    def cut(self, neighbours: int) -> ItemKnnModel:
        """The model with each book's ``neighbours`` best neighbours (ties: the
        lower one) of those it keeps: a fit with fewer neighbours, exactly."""
        rows = np.repeat(np.arange(len(self.item_ids)), np.diff(self.indptr))
        keep = top_of_rows(
            rows, self.indices, self.data, len(self.item_ids), neighbours
        )
        indptr = np.concatenate(
            [[0], np.cumsum(np.bincount(rows[keep], minlength=len(self.item_ids)))]
        )
        return ItemKnnModel(
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


@dataclass(frozen=True)
class EaseModel:
    """EASE's item-item weights over the books it was fitted on."""

    item_ids: np.ndarray  # int64 ITEM_IDX values, ascending
    matrix: np.ndarray  # float32 (m, m), zero diagonal

    def on(self, table: ItemTable) -> DenseWeights:
        return DenseWeights(
            subset=np.searchsorted(table.ids, self.item_ids).astype(np.int64),
            matrix=self.matrix,
        )

    @property
    def nbytes(self) -> int:
        return self.item_ids.nbytes + self.matrix.nbytes


ItemBasedModel = ItemKnnModel | EaseModel


def _distinct_pairs(interactions: DataFrame) -> DataFrame:
    return interactions.select(USER_IDX, ITEM_IDX).distinct()


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


def _side_incidence(side: pd.DataFrame, item_ids: np.ndarray) -> sparse.csr_matrix:
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


def _side_rows(
    side: pd.DataFrame, item_ids: np.ndarray, weight: float, most: int, seed: int
) -> sparse.csc_matrix:
    """Side values x books, ``sqrt(weight)`` where a book has the value: stacked
    under the readers, each value is a pseudo-reader of its books, so the
    similarity gains ``weight`` x the values two books share. A value with more
    than ``most`` books keeps a seeded sample of them, as a prolific reader."""
    incidence = _side_incidence(side, item_ids).tocoo()
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
) -> ItemKnnModel:
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
    pairs = _distinct_pairs(interactions).toPandas()
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
    item, neighbour, value = (
        np.concatenate([part[i] for part in kept])
        if kept
        else np.zeros(0, (np.int32, np.int32, np.float32)[i])
        for i in range(3)
    )
    result = sparse.csr_matrix(
        (value.astype(np.float32), (item, neighbour)),
        shape=(len(item_ids), len(item_ids)),
    )
    result.sort_indices()
    return ItemKnnModel(
        item_ids=item_ids,
        indptr=result.indptr.astype(np.int64),
        indices=result.indices.astype(np.int32),
        data=result.data.astype(np.float32),
    )


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """``B = I - P / diag(P)`` with ``P = (gram + l2 I)^-1`` (float64 in, float32
    out, zero diagonal), by one Cholesky inverse."""
    regularized = gram.astype(np.float64, copy=True)
    regularized[np.diag_indices_from(regularized)] += l2
    factor, info = lapack.dpotrf(regularized, lower=False, overwrite_a=True)
    if info != 0:
        raise ValueError(
            f"EASE: X'X + {l2:g} I is not positive definite (LAPACK dpotrf info "
            f"{info}); use a larger item_based.ease.l2."
        )
    inverse, info = lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise ValueError(
            f"EASE: the Cholesky inverse failed (LAPACK dpotri info {info})."
        )
    upper = np.triu(inverse)
    inverse = upper + np.triu(upper, 1).T
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


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
class EaseGram:
    """X'X of the binary user x book matrix over the books EASE is fitted on,
    and A'A of their side information (A: value x book incidence, e.g. one row
    per author): what every (l2, beta) of the grid starts from."""

    item_ids: np.ndarray  # int64 ITEM_IDX values, ascending
    gram: np.ndarray  # float64 (m, m)
    side: np.ndarray | None = None  # float64 (m, m): books sharing a value

    def model(self, l2: float, beta: float = 0.0) -> EaseModel:
        """EASE on ``gram + beta * side``: each side value a pseudo-reader of
        all its books with weight ``beta`` (0: the plain EASE, exactly)."""
        logger.info(
            "EASE l2 %g beta %g over %s books: %.0f MiB of weights",
            l2,
            beta,
            len(self.item_ids),
            len(self.item_ids) ** 2 * 4 / 2**20,
        )
        gram = self.gram
        if beta:
            if self.side is None:
                raise ValueError(
                    f"EASE beta {beta:g} needs side information: set "
                    "item_based.side_information to the items' column(s)."
                )
            gram = gram + beta * self.side
        return EaseModel(item_ids=self.item_ids, matrix=ease_weights(gram, l2))


def ease_gram(
    interactions: DataFrame, max_items: int, side: DataFrame | None = None
) -> EaseGram:
    """The Gram matrix over the ``max_items`` books with the most interactions
    (ties: the lower id), and that of their ``side`` information (ITEM_IDX,
    SIDE), on the driver."""
    pairs = _distinct_pairs(interactions)
    top = (
        pairs.groupBy(ITEM_IDX)
        .agg(F.count(F.lit(1)).alias("_readers"))
        .orderBy(F.desc("_readers"), F.asc(ITEM_IDX))
        .limit(max_items)
        .select(ITEM_IDX)
    )
    kept = pairs.join(F.broadcast(top), on=ITEM_IDX).toPandas()
    item_ids = np.unique(kept[ITEM_IDX].to_numpy(np.int64))
    _, users = np.unique(kept[USER_IDX].to_numpy(np.int64), return_inverse=True)
    cols = np.searchsorted(item_ids, kept[ITEM_IDX].to_numpy(np.int64))
    x = sparse.csr_matrix(
        (np.ones(len(kept), np.float64), (users, cols)),
        shape=(int(users.max(initial=-1)) + 1, len(item_ids)),
    )
    side_gram = None
    if side is not None:
        a = _side_incidence(
            side.join(F.broadcast(top), on=ITEM_IDX).toPandas(), item_ids
        )
        side_gram = (a.T @ a).toarray()
    return EaseGram(item_ids=item_ids, gram=(x.T @ x).toarray(), side=side_gram)


def fit_ease(interactions: DataFrame, l2: float, max_items: int) -> EaseModel:
    """EASE over the ``max_items`` books with the most interactions (ties: the
    lower id), fitted on the driver; see the module docstring."""
    return ease_gram(interactions, max_items).model(l2)


def item_table_of(model: ItemBasedModel, fallback_ids, fallback_scores) -> ItemTable:
    """The table over the model's books and those with a fallback score; an
    item-based model has no factors (rank 0)."""
    return ItemTable.build(
        model.item_ids,
        np.zeros((len(model.item_ids), 0), np.float32),
        fallback_ids,
        fallback_scores,
    )
