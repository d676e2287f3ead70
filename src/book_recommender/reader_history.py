"""A reader's history in a request: the factors a factor model folds in from
it, and, for every pick, the book of the history it is due to.

``HistoryScorer`` holds what both need of a served model (``serving.Bundle``):
its item table, its item-item weights (item-based) and its ``fold_in`` spec
(factor models; see ``RecommenderModel.fold_in``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from scipy.optimize import nnls

from book_recommender.item_topk import DenseWeights, SparseWeights, Weights
from book_recommender.served_requests import Histories, RequestError
from book_recommender.topk import ItemTable, concatenated_ranges


@dataclass(frozen=True)
class HistoryScorer:
    """Fold-in and reasons over one model's items (see the module docstring)."""

    table: ItemTable
    weights: Weights | None
    spec: dict[str, Any] | None

    @cached_property
    def _gram(self) -> np.ndarray:
        """YtY over the item factors, in float64 (as ALS's solver sums it)."""
        factors = self.table.factors.astype(np.float64)
        return factors.T @ factors

    def fold_in(self, histories: Histories) -> tuple[np.ndarray, np.ndarray]:
        """The factors of each request of ``histories``, solved against the item
        factors as the model's last half-step solved its users' (``spec``:
        implicit ALS's weighted least squares, its regularisation scaled by the
        history's length; ``fixed``: every reader the same factors, as
        popularity). Returns (factors, row of each request in them, -1 where
        the history holds no book with factors: the fallback)."""
        spec = self.spec
        if spec is None:
            raise RequestError(
                "This model version cannot rank a sent history (it was registered "
                "before histories were served): send ids only, or serve a newer "
                "version."
            )
        n = len(histories.uses)
        usable = self.table.unknown[histories.positions] == 0
        rows, positions = histories.rows[usable], histories.positions[usable]
        ratings = histories.ratings[usable]
        has = np.zeros(n, dtype=bool)
        has[rows] = True
        fold_row = np.full(n, -1, np.int64)
        fold_row[has] = np.arange(int(has.sum()))
        rank = self.table.factors.shape[1]
        folded = np.zeros((int(has.sum()), rank), np.float32)
        if spec["kind"] == "fixed":
            folded[:] = np.asarray(spec["factors"], np.float32)
            return folded, fold_row
        strength = np.where(
            np.isnan(ratings) | (ratings == 0), spec["implicit_strength"], ratings
        )
        starts = np.searchsorted(rows, np.flatnonzero(has))
        ends = np.searchsorted(rows, np.flatnonzero(has), side="right")
        for row, (first, last) in enumerate(zip(starts, ends, strict=True)):
            folded[row] = self._solve(positions[first:last], strength[first:last], spec)
        return folded, fold_row

    def _solve(
        self, positions: np.ndarray, strength: np.ndarray, spec: dict[str, Any]
    ) -> np.ndarray:
        """One reader's factors from implicit ALS's normal equation: (YtY +
        Yt(C - I)Y + reg * n I) x = Yt C p, confidence c = 1 + alpha * |s|,
        preference 1 where the strength s > 0 (Spark's ``ALS.computeFactors``)."""
        factors = self.table.factors[positions].astype(np.float64)
        c1 = spec["alpha"] * np.abs(strength)
        positive = strength > 0
        ata = self._gram + (factors * c1[:, None]).T @ factors
        atb = ((1.0 + c1) * positive) @ factors
        ata[np.diag_indices_from(ata)] += spec["reg"] * int(positive.sum())
        if spec.get("nonnegative"):
            # Spark solves min x'Ax/2 - b'x, x >= 0: with A = LL', that is
            # min |L'x - L^-1 b|^2, a least-squares problem scipy solves.
            lower = np.linalg.cholesky(ata)
            return nnls(lower.T, np.linalg.solve(lower, atb))[0].astype(np.float32)
        return np.linalg.solve(ata, atb).astype(np.float32)

    def because_of(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        seen_rows: np.ndarray,
        seen_cols: np.ndarray,
    ) -> np.ndarray:
        """For each pick (``rows``, ``cols``: request row, table position), the
        seen book of its row that contributed most: item-based, the largest
        term of the pick's score (its weight from the seen book); a factor
        model, the seen book whose factors are most similar (cosine) to the
        pick's. Ties go to the lower position; -1 where no seen book counts
        (a model whose readers all share their factors, such as popularity)."""
        if self.weights is None and (self.spec or {}).get("kind") == "fixed":
            return np.full(len(rows), -1, np.int64)
        order = np.lexsort((seen_cols, seen_rows))
        seen_rows, seen_cols = seen_rows[order], seen_cols[order]
        starts = np.searchsorted(seen_rows, rows)
        lengths = np.searchsorted(seen_rows, rows, side="right") - starts
        pick = np.repeat(np.arange(len(rows)), lengths)
        book = seen_cols[concatenated_ranges(starts, lengths)]
        values = self._terms(book, cols[pick])
        best = np.full(len(rows), -1, np.int64)
        counted = np.isfinite(values)
        pick, book, values = pick[counted], book[counted], values[counted]
        # Best value first within each pick, then the lower position.
        order = np.lexsort((book, -values, pick))
        pick, book = pick[order], book[order]
        head = np.r_[True, pick[1:] != pick[:-1]] if len(pick) else pick.astype(bool)
        best[pick[head]] = book[head]
        return best

    def _terms(self, book: np.ndarray, pick: np.ndarray) -> np.ndarray:
        """What ``book`` adds to ``pick``'s score (item-based) or their cosine
        similarity (factor model); -inf where it adds nothing."""
        weights = self.weights
        if not len(book):
            return np.zeros(0)
        if isinstance(weights, DenseWeights):
            i, j = self._subset_index[book], self._subset_index[pick]
            inside = (i >= 0) & (j >= 0)
            values = np.full(len(book), -np.inf)
            values[inside] = weights.matrix[i[inside], j[inside]]
            return values
        if isinstance(weights, SparseWeights):
            values = np.asarray(weights.matrix[book, pick], np.float64).ravel()
            return np.where(values != 0, values, -np.inf)
        unit = self._unit_factors
        values = np.einsum("ij,ij->i", unit[book], unit[pick]).astype(np.float64)
        known = (self.table.unknown[book] == 0) & (self.table.unknown[pick] == 0)
        return np.where(known, values, -np.inf)

    @cached_property
    def _subset_index(self) -> np.ndarray:
        """Each table position's row of EASE's matrix (-1: outside its subset)."""
        index = np.full(len(self.table.ids), -1, np.int64)
        index[self.weights.subset] = np.arange(len(self.weights.subset))
        return index

    @cached_property
    def _unit_factors(self) -> np.ndarray:
        factors = self.table.factors.astype(np.float64)
        norms = np.linalg.norm(factors, axis=1, keepdims=True)
        return factors / np.where(norms > 0, norms, 1.0)
