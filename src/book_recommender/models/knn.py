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
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BeforeValidator, Field
from pyspark import keyword_only
from pyspark.ml.param import TypeConverters
from pyspark.ml.param.shared import HasSeed
from pyspark.sql import DataFrame
from scipy import sparse

from book_recommender.axes import CountAxis, NonNegativeAxis, Section, words
from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.memory_plan import Footprint
from book_recommender.models.base import (
    ItemWeightsModel,
    SharedFitRecommender,
    TrainingData,
    param,
)
from book_recommender.models.families import Family, FamilyRow, with_and_without_side
from book_recommender.models.items import (
    NeighbourWeights,
    distinct_pairs,
    nearest_neighbours,
    neighbour_footprint,
    neighbour_weights,
    sampled,
    side_incidence,
)

logger = logging.getLogger(__name__)

SIMILARITIES = ("bm25", "cosine")


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
    keep = sampled(u, len(users), max_user_items, seed)
    matrix = sparse.csc_matrix(
        (weight[keep], (u[keep], i[keep])), shape=(len(users), len(item_ids))
    )
    return item_ids, matrix


def _side_rows(
    side: pd.DataFrame, item_ids: np.ndarray, weight: float, most: int, seed: int
) -> sparse.csc_matrix:
    """Side values x books, ``sqrt(weight)`` where a book has the value: stacked
    under the readers, each value is a pseudo-reader of its books, so the
    similarity gains ``weight`` x the values two books share. A value with more
    than ``most`` books keeps a seeded sample of them, as a prolific reader."""
    incidence = side_incidence(side, item_ids).tocoo()
    keep = sampled(incidence.row, incidence.shape[0], most, seed)
    return sparse.csc_matrix(
        (
            np.full(int(keep.sum()), np.sqrt(weight)),
            (incidence.row[keep], incidence.col[keep]),
        ),
        shape=incidence.shape,
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
) -> NeighbourWeights:
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
    return neighbour_weights(item_ids, *nearest_neighbours(spark, matrix, neighbours))


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

    @keyword_only
    def __init__(
        self,
        *,
        similarity=None,
        neighbours=None,
        sideWeight=None,
        maxUserItems=None,
        bm25K1=None,
        bm25B=None,
        seed=None,
    ) -> None:
        super().__init__()
        self._setDefault(
            similarity="bm25",
            neighbours=50,
            sideWeight=0.0,
            maxUserItems=500,
            bm25K1=1.2,
            bm25B=0.75,
            seed=42,
        )
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        similarity=None,
        neighbours=None,
        sideWeight=None,
        maxUserItems=None,
        bm25K1=None,
        bm25B=None,
        seed=None,
    ):
        """Sets the given Params, by keyword."""
        return self._set(**self._input_kwargs)

    kind = "knn"
    axes = ("similarity", "neighbours", "sideWeight")

    def candidate_name(self) -> str:
        similarity, neighbours, weight = self.hyperparameters().values()
        side = f"_w{weight:g}" if weight else ""
        return f"{self.kind}_{similarity}_k{neighbours}{side}"

    def uses_side_information(self) -> bool:
        return bool(self.getOrDefault(self.sideWeight))

    def footprint(self, books: int, parallel: int) -> Footprint:
        """Its neighbour lists (``items.neighbour_footprint``)."""
        neighbours = self.getOrDefault(self.neighbours)
        return neighbour_footprint(self.kind, neighbours, neighbours, books, parallel)

    def _share_key(self) -> tuple[str, float]:
        return self.getOrDefault(self.similarity), self.getOrDefault(self.sideWeight)

    def _shared(self, group: list[ItemKnn], data: TrainingData) -> NeighbourWeights:
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

    def _from_shared(
        self, widest: NeighbourWeights, data: TrainingData
    ) -> ItemKnnModel:
        return ItemKnnModel.of(widest.cut(self.getOrDefault(self.neighbours)))


class ItemKnnModel(ItemWeightsModel):
    """A fitted item-kNN: its neighbour lists (``NeighbourWeights``)."""


class KnnSection(Section):
    """Item-kNN over co-readers (``fit_item_knn``): ``item_based.knn``."""

    enabled: bool
    similarity: Annotated[
        list[Literal["bm25", "cosine"]], BeforeValidator(words), Field(min_length=1)
    ]
    neighbours: CountAxis  # kept per book
    side_weight: NonNegativeAxis  # similarity per shared side value (0: none)
    max_user_items: int = Field(ge=2)  # a reader's books sampled into the pairs
    bm25_k1: float = Field(gt=0)
    bm25_b: float = Field(ge=0, le=1)


def knn_families(knn: KnnSection, item_based) -> list[Family]:
    """Item-kNN without and with the side information."""
    estimator = ItemKnn(
        maxUserItems=knn.max_user_items,
        bm25K1=knn.bm25_k1,
        bm25B=knn.bm25_b,
        seed=item_based.seed,
    )
    return with_and_without_side(
        estimator,
        "sideWeight",
        similarity=knn.similarity,
        sideWeight=knn.side_weight,
        neighbours=knn.neighbours,
    )


FAMILIES = FamilyRow(
    order=20,
    key="knn",
    section=KnnSection,
    build=knn_families,
    side_axis="side_weight",
)
