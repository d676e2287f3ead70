"""EASE as a family: ``B = I - P / diag(P)``, ``P = (X'X + beta A'A + l2 I)^-1``
over the ``maxItems`` books with the most interactions (numpy on the driver;
A: side value x book), a reader scored by the sum over the books they have
seen (``items``); other books are neither recommended nor part of a history.
Memory: the float64 Gram matrices (``8 * maxItems^2`` bytes, twice with side
information) for the whole grid, and per fit one float64 working copy and the
float32 weights (``12 * maxItems^2`` bytes; 290 MiB at 5,000); time one
Cholesky inverse per grid point, one Gram matrix for the whole grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pydantic import Field
from pyspark import keyword_only
from pyspark.ml.param import TypeConverters
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import sparse
from scipy.linalg import lapack

from book_recommender.axes import NonNegativeAxis, PositiveAxis, Section
from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.item_topk import DenseWeights
from book_recommender.memory_plan import Footprint
from book_recommender.models.base import (
    ItemWeightsModel,
    SharedFitRecommender,
    TrainingData,
    param,
)
from book_recommender.models.families import Family, FamilyRow, with_and_without_side
from book_recommender.models.items import distinct_pairs, side_incidence
from book_recommender.topk import ItemTable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EaseWeights:
    """EASE's item-item weights over the books it was fitted on."""

    item_ids: np.ndarray  # int64 ITEM_IDX values, ascending
    matrix: np.ndarray  # float32 (m, m), zero diagonal

    def on(self, table: ItemTable) -> DenseWeights:
        return DenseWeights(
            subset=np.searchsorted(table.ids, self.item_ids).astype(np.int64),
            matrix=self.matrix,
        )

    @property
    def recommendable(self) -> np.ndarray:
        """Every book it was fitted on (and no other)."""
        return self.item_ids

    @property
    def nbytes(self) -> int:
        return self.item_ids.nbytes + self.matrix.nbytes


def ease_weights(
    gram: np.ndarray, l2: float, side: np.ndarray | None = None, beta: float = 0.0
) -> np.ndarray:
    """``B = I - P / diag(P)`` with ``P = (gram + beta side + l2 I)^-1`` (float64
    in, float32 out, zero diagonal), by one Cholesky inverse.

    In place on one float64 copy: two fits of the grid run at once, and the
    whole-matrix temporaries of the textbook form (a symmetrized copy, the
    division's result) took 1 GiB more per fit at 5,000 books.
    """
    if beta:
        regularized = side * beta
        regularized += gram
    else:
        regularized = gram.astype(np.float64, copy=True)
    regularized[np.diag_indices_from(regularized)] += l2
    # Its transpose is the same (symmetric) matrix in Fortran order, which
    # LAPACK overwrites in place instead of copying.
    factor, info = lapack.dpotrf(regularized.T, lower=False, overwrite_a=True)
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
    _mirror_upper(inverse)
    diagonal = np.diag(inverse).copy()
    inverse /= -diagonal[None, :]
    np.fill_diagonal(inverse, 0.0)
    # Row-major, as scoring gathers the rows of the books a reader has seen (the
    # Fortran-ordered working copy made scoring 2.5x slower).
    return np.ascontiguousarray(inverse, dtype=np.float32)


def _mirror_upper(matrix: np.ndarray, block: int = 512) -> None:
    """Copies the upper triangle onto the lower one, in place, a block of
    columns at a time (LAPACK's inverse fills only the upper triangle)."""
    n = len(matrix)
    for start in range(0, n, block):
        stop = min(start + block, n)
        square = matrix[start:stop, start:stop]
        below = np.tril_indices(stop - start, -1)
        square[below] = square.T[below]
        matrix[stop:, start:stop] = matrix[start:stop, stop:].T


@dataclass(frozen=True)
class EaseGram:
    """X'X of the binary user x book matrix over the books EASE is fitted on,
    and A'A of their side information (A: value x book incidence, e.g. one row
    per author): what every (l2, beta) of the grid starts from."""

    item_ids: np.ndarray  # int64 ITEM_IDX values, ascending
    gram: np.ndarray  # float64 (m, m)
    side: np.ndarray | None = None  # float64 (m, m): books sharing a value

    def model(self, l2: float, beta: float = 0.0) -> EaseWeights:
        """EASE on ``gram + beta * side``: each side value a pseudo-reader of
        all its books with weight ``beta`` (0: the plain EASE, exactly)."""
        logger.info(
            "EASE l2 %g beta %g over %s books: %.0f MiB of weights",
            l2,
            beta,
            len(self.item_ids),
            len(self.item_ids) ** 2 * 4 / 2**20,
        )
        if beta and self.side is None:
            raise ValueError(
                f"EASE beta {beta:g} needs side information: set "
                "item_based.side_information to the items' column(s)."
            )
        return EaseWeights(
            item_ids=self.item_ids,
            matrix=ease_weights(self.gram, l2, self.side, beta),
        )


def ease_gram(
    interactions: DataFrame, max_items: int, side: DataFrame | None = None
) -> EaseGram:
    """The Gram matrix over the ``max_items`` books with the most interactions
    (ties: the lower id), and that of their ``side`` information (ITEM_IDX,
    SIDE), on the driver."""
    pairs = distinct_pairs(interactions)
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
        a = side_incidence(
            side.join(F.broadcast(top), on=ITEM_IDX).toPandas(), item_ids
        )
        side_gram = (a.T @ a).toarray()
    return EaseGram(item_ids=item_ids, gram=(x.T @ x).toarray(), side=side_gram)


def fit_ease(interactions: DataFrame, l2: float, max_items: int) -> EaseWeights:
    """EASE over the ``max_items`` books with the most interactions (ties: the
    lower id), fitted on the driver; see the module docstring."""
    return ease_gram(interactions, max_items).model(l2)


class Ease(SharedFitRecommender):
    """EASE; every grid point shares one Gram matrix (``fitMultiple``)."""

    l2 = param("l2", "ridge on the item-item weights", TypeConverters.toFloat)
    beta = param("beta", "weight of the side information", TypeConverters.toFloat)
    maxItems = param("maxItems", "most read books it covers", TypeConverters.toInt)

    @keyword_only
    def __init__(self, *, l2=None, beta=None, maxItems=None) -> None:
        super().__init__()
        self._setDefault(l2=250.0, beta=0.0, maxItems=5000)
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, l2=None, beta=None, maxItems=None):
        """Sets the given Params, by keyword."""
        return self._set(**self._input_kwargs)

    kind = "ease"
    axes = ("l2", "beta")

    def candidate_name(self) -> str:
        l2, beta = self.hyperparameters().values()
        return f"{self.kind}_l2_{l2:g}" + (f"_beta{beta:g}" if beta else "")

    def uses_side_information(self) -> bool:
        return bool(self.getOrDefault(self.beta))

    def footprint(self, books: int, parallel: int) -> Footprint:
        """Its Gram matrices (float64, twice with side information), one
        float64 working copy and the float32 weights per fit, ``parallel`` at
        once; the float32 weights broadcast."""
        max_items = self.getOrDefault(self.maxItems)
        m = min(max_items, books)
        side = 2 if self.getOrDefault(self.beta) else 1
        return Footprint(
            setting=f"item_based.ease.max_items = {max_items}",
            python_bytes=(8 * side + 12 * parallel) * m * m,
            broadcast_bytes=4 * m * m,
        )

    def _share_key(self) -> int:
        return self.getOrDefault(self.maxItems)

    def _shared(self, group: list[Ease], data: TrainingData) -> EaseGram:
        side = data.side if any(e.getOrDefault(e.beta) for e in group) else None
        return ease_gram(data.seen, self.getOrDefault(self.maxItems), side)

    def _from_shared(self, gram: EaseGram, data: TrainingData) -> EaseModel:
        return EaseModel.of(
            gram.model(self.getOrDefault(self.l2), self.getOrDefault(self.beta))
        )


class EaseModel(ItemWeightsModel):
    """A fitted EASE: its item-item weights (``EaseWeights``)."""


class EaseSection(Section):
    """EASE over the most read books (``fit_ease``): ``item_based.ease``."""

    enabled: bool
    l2: PositiveAxis
    beta: NonNegativeAxis  # weight of the side information (0: none)
    max_items: int = Field(ge=2)  # ~12 * max_items^2 bytes per fit on the driver


def ease_families(ease: EaseSection, item_based) -> list[Family]:
    """EASE without and with the side information."""
    estimator = Ease(maxItems=ease.max_items)
    return with_and_without_side(estimator, "beta", l2=ease.l2, beta=ease.beta)


FAMILIES = FamilyRow(
    order=40,
    key="ease",
    section=EaseSection,
    build=ease_families,
    side_axis="beta",
)
