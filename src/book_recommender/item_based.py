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
- **EASE** (``fit_ease``, numpy on the driver): ``B = I - P / diag(P)``,
  ``P = (X'X + l2 I)^-1`` over the ``max_items`` books with the most
  interactions; other books are neither recommended nor part of a history.
  Memory about ``20 * max_items^2`` bytes at the peak (the float64 Gram matrix,
  its inverse and the float32 weights); time one Cholesky inverse.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from scipy import sparse
from scipy.linalg import lapack

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.topk import DenseWeights, ItemTable, SparseWeights

logger = logging.getLogger(__name__)

SIMILARITIES = ("bm25", "cosine")
_NEIGHBOUR = "_neighbour"
_WEIGHT = "_weight"
_SIMILARITY = "_similarity"


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

    @property
    def nbytes(self) -> int:
        return (
            self.item_ids.nbytes
            + self.indptr.nbytes
            + self.indices.nbytes
            + (self.data.nbytes)
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


def fit_item_knn(
    interactions: DataFrame,
    similarity: str,
    neighbours: int,
    max_user_items: int,
    bm25_k1: float,
    bm25_b: float,
    seed: int,
) -> ItemKnnModel:
    """The ``neighbours`` most similar books of every book, by ``similarity``
    over the (USER_IDX, ITEM_IDX) ``interactions``; see the module docstring."""
    if similarity not in SIMILARITIES:
        raise ValueError(
            f"similarity must be one of {SIMILARITIES}; found {similarity!r}"
        )
    pairs = _distinct_pairs(interactions).cache()
    item_counts = pairs.groupBy(ITEM_IDX).agg(F.count(F.lit(1)).alias("_readers"))
    user_counts = pairs.groupBy(USER_IDX).agg(F.count(F.lit(1)).alias("_books"))
    n_items, mean_readers = item_counts.agg(
        F.count(F.lit(1)), F.avg("_readers")
    ).first()
    weighted = pairs.join(item_counts, on=ITEM_IDX).join(user_counts, on=USER_IDX)
    if similarity == "cosine":
        weight = 1.0 / F.sqrt(F.col("_readers").cast("double"))
    else:
        length = (1.0 - bm25_b) + bm25_b * F.col("_readers") / F.lit(mean_readers)
        idf = F.log(F.lit(float(n_items))) - F.log1p(F.col("_books").cast("double"))
        weight = (bm25_k1 + 1.0) / (bm25_k1 * length + 1.0) * idf
    # A prolific reader adds a seeded sample of max_user_items books to the pairs.
    by_user = Window.partitionBy(USER_IDX).orderBy(F.xxhash64(ITEM_IDX, F.lit(seed)))
    sampled = (
        weighted.select(USER_IDX, ITEM_IDX, weight.alias(_WEIGHT), "_books")
        .withColumn(
            "_pick",
            F.when(F.col("_books") <= max_user_items, F.lit(1)).otherwise(
                F.row_number().over(by_user)
            ),
        )
        .where(F.col("_pick") <= max_user_items)
        .select(USER_IDX, ITEM_IDX, _WEIGHT)
    )
    other = sampled.select(
        USER_IDX,
        F.col(ITEM_IDX).alias(_NEIGHBOUR),
        F.col(_WEIGHT).alias("_other_weight"),
    )
    similarities = (
        sampled.join(other, on=USER_IDX)
        .where(F.col(ITEM_IDX) != F.col(_NEIGHBOUR))
        .groupBy(ITEM_IDX, _NEIGHBOUR)
        .agg(F.sum(F.col(_WEIGHT) * F.col("_other_weight")).alias(_SIMILARITY))
    )
    best = Window.partitionBy(ITEM_IDX).orderBy(F.desc(_SIMILARITY), F.asc(_NEIGHBOUR))
    kept = (
        similarities.withColumn("_n", F.row_number().over(best))
        .where(F.col("_n") <= neighbours)
        .select(ITEM_IDX, _NEIGHBOUR, F.col(_SIMILARITY).cast("float"))
        .toPandas()
    )
    item_ids = np.sort(
        pairs.select(ITEM_IDX).distinct().toPandas()[ITEM_IDX].to_numpy(np.int64)
    )
    pairs.unpersist()
    rows = np.searchsorted(item_ids, kept[ITEM_IDX].to_numpy(np.int64))
    cols = np.searchsorted(item_ids, kept[_NEIGHBOUR].to_numpy(np.int64))
    matrix = sparse.csr_matrix(
        (kept[_SIMILARITY].to_numpy(np.float32), (rows, cols)),
        shape=(len(item_ids), len(item_ids)),
    )
    matrix.sort_indices()
    return ItemKnnModel(
        item_ids=item_ids,
        indptr=matrix.indptr.astype(np.int64),
        indices=matrix.indices.astype(np.int32),
        data=matrix.data.astype(np.float32),
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


def fit_ease(interactions: DataFrame, l2: float, max_items: int) -> EaseModel:
    """EASE over the ``max_items`` books with the most interactions (ties: the
    lower id), fitted on the driver; see the module docstring."""
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
    gram = (x.T @ x).toarray()
    logger.info(
        "EASE l2 %g over %s books (%s interactions): %.0f MiB of weights",
        l2,
        len(item_ids),
        len(kept),
        len(item_ids) ** 2 * 4 / 2**20,
    )
    return EaseModel(item_ids=item_ids, matrix=ease_weights(gram, l2))


def item_table_of(model: ItemBasedModel, fallback_ids, fallback_scores) -> ItemTable:
    """The table over the model's books and those with a fallback score; an
    item-based model has no factors (rank 0)."""
    return ItemTable.build(
        model.item_ids,
        np.zeros((len(model.item_ids), 0), np.float32),
        fallback_ids,
        fallback_scores,
    )
