"""Beyond accuracy: how much of the catalog a candidate's served lists reach,
how evenly, how novel and how varied they are, and how much they lean on the
most-read books. Computed from the top-k lists the evaluator collects anyway
(``evaluation.ServedEvaluator``: one row per judged user, cold users' popular
fallback lists included) and the training interactions (``Catalog``).

Coverage (Shani and Gunawardana, "Evaluating Recommendation Systems", 2011):

- ``catalog_coverage``: distinct recommended books over every book of the
  catalog (the indexed items, read or not); ``trained_coverage``: over the books
  with a training reader (Recommenders' ``catalog_coverage``);
- ``reach_2plus``: the share of the books with at least two training readers
  the model can recommend at all (a column of its weights, an item with
  factors; every book for the baselines). Dense EASE reaches its ``max_items``;
- ``distributional_coverage``: the entropy in bits of how often each book is
  recommended, ``-sum p(i) log2 p(i)`` (Recommenders' definition);
  ``gini_index``: the Gini index of the same counts over the books with a
  training reader (0: every book recommended equally often, 1: one book only).

Novelty (Castells et al., 2011; Recommenders' ``novelty``): the mean over
recommendations of ``-log2(readers(i) / training interactions)``, the
self-information of a training interaction being with book i. A recommended
book without training readers counts as one with one reader (Recommenders'
join drops it, which scores it 0: the least novel; it is the most).

Diversity, within each list, averaged over the lists that have one:

- ``diversity``: 1 - the mean cosine co-occurrence similarity of the list's
  pairs, ``co(i, j) / sqrt(readers(i) readers(j))`` over the training readers
  (Recommenders' ``diversity``; lists with one book have no pair and are left
  out, as there);
- ``author_share``: distinct authors (the first ``item_based.side_information``
  column, normalized) over the books of the list; a book without an author is
  an author of its own.

Popularity bias, with each book's popularity percentile among the catalog's
books by training readers (mid-rank: the share read by fewer, plus half the
share read by as many; unread books 0 readers):

- ``head_share``: the share of recommendations among the 1% most-read books
  (the ``ceil(1%)`` most-read books with a training reader; a tie with the last
  of them is in the head);
- ``popularity_percentile``: the mean percentile of the recommended books;
  ``read_popularity_percentile``: that of the books the judged users read in
  the held-out data, to compare with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from scipy import sparse

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.models.items import SIDE

HEAD = 0.01  # the most-read share of the books that is "the head"
# The most-read books whose pairwise co-occurrence is counted as one dense
# matrix (4 bytes a pair: 64 MiB); pairs with a rarer book look up its readers
# (diversity of 398k lists at 5M ratings: 2048 books 35 s, 4096 23 s).
_DENSE_BOOKS = 4096
_CHUNK_LISTS = 25_000  # lists whose pairs are counted at once
# The measures of the lists alone: every candidate's, on validation too.
LIST_MEASURES = (
    "catalog_coverage",
    "trained_coverage",
    "distributional_coverage",
    "gini_index",
    "novelty",
    "head_share",
    "popularity_percentile",
    "read_popularity_percentile",
)


@dataclass(frozen=True)
class Catalog:
    """The catalog's size and what the training interactions say of its books:
    each trained book's readers, who they are (a reader x book matrix) and its
    author."""

    books: int
    trained_ids: np.ndarray  # int64, ascending: books with a training reader
    readers: np.ndarray  # int64, their distinct training readers
    matrix: sparse.csc_matrix | None = None  # readers x trained books, 1 if read
    authors: np.ndarray | None = None  # int64 code per trained book, -1: none

    @classmethod
    def of(
        cls, items: DataFrame, seen: DataFrame, side: DataFrame | None = None
    ) -> Catalog:
        """The catalog of ``items`` (ITEM_IDX), the training interactions
        ``seen`` (USER_IDX, ITEM_IDX) and the books' ``side`` values (ITEM_IDX
        and ``items.SIDE``: the author of each book; the first of a book's
        values if it has several)."""
        pairs = seen.select(USER_IDX, ITEM_IDX).distinct().toPandas()
        users, u = np.unique(pairs[USER_IDX].to_numpy(np.int64), return_inverse=True)
        ids, i = np.unique(pairs[ITEM_IDX].to_numpy(np.int64), return_inverse=True)
        matrix = sparse.csc_matrix(
            (np.ones(len(u), np.float32), (u, i)), shape=(len(users), len(ids))
        )
        return cls(
            books=items.select(ITEM_IDX).distinct().count(),
            trained_ids=ids,
            readers=np.bincount(i, minlength=len(ids)).astype(np.int64),
            matrix=matrix,
            authors=None if side is None else _author_codes(side.toPandas(), ids),
        )

    def reach(self, model) -> dict[str, float]:
        """``reach_2plus`` of ``model`` (see the module docstring)."""
        two_plus = self.trained_ids[self.readers >= 2]  # noqa: PLR2004
        reachable = recommendable(model)
        reach = (
            1.0
            if reachable is None
            else np.isin(two_plus, reachable).sum() / max(len(two_plus), 1)
        )
        return {"reach_2plus": float(reach)}

    def measures(
        self,
        lists: Sequence[Sequence[int]],
        read: Sequence[int],
        pairs: bool = True,
    ) -> dict[str, float]:
        """The module docstring's list measures of the top-k ``lists`` (ITEM_IDX
        values, one list per judged user) and the held-out books ``read``; with
        ``pairs``, the within-list ones too (the co-occurrence of every pair of
        a list: the costly part)."""
        flat = np.fromiter((i for items in lists for i in items), np.int64)
        books, counts = np.unique(flat, return_counts=True)
        share = counts / max(counts.sum(), 1)
        readers = self._readers_of(flat)
        out = {
            "catalog_coverage": len(books) / max(self.books, 1),
            "trained_coverage": len(books) / max(len(self.trained_ids), 1),
            "distributional_coverage": float(-np.sum(share * np.log2(share))),
            "gini_index": self._gini(books, counts),
            "novelty": _mean(-np.log2(np.maximum(readers, 1) / self.interactions)),
            "head_share": _mean(readers >= self._head_readers()),
            "popularity_percentile": _mean(self._percentile(readers)),
            "read_popularity_percentile": _mean(
                self._percentile(self._readers_of(np.asarray(read, np.int64)))
            ),
        }
        if pairs:
            out["diversity"] = self._diversity(lists)
            if self.authors is not None:
                out["author_share"] = self._author_share(lists)
        return out

    @property
    def interactions(self) -> int:
        """Distinct training (reader, book) pairs."""
        return max(int(self.readers.sum()), 1)

    def _positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of ``ids`` in ``trained_ids`` and whether each is there."""
        position = np.searchsorted(self.trained_ids, ids).clip(
            0, max(len(self.trained_ids) - 1, 0)
        )
        if not len(self.trained_ids):
            return position, np.zeros(len(ids), bool)
        return position, self.trained_ids[position] == ids

    def _readers_of(self, ids: np.ndarray) -> np.ndarray:
        """Training readers of each of ``ids`` (0 for an unread book)."""
        position, known = self._positions(ids)
        if not len(self.trained_ids):
            return np.zeros(len(ids), np.int64)
        return np.where(known, self.readers[position], 0)

    def _head_readers(self) -> int:
        """The fewest readers a book of the head has (the ``ceil(HEAD)`` most-read)."""
        if not len(self.readers):
            return 1
        size = math.ceil(HEAD * len(self.readers))
        return int(np.sort(self.readers)[::-1][size - 1])

    def _percentile(self, readers: np.ndarray) -> np.ndarray:
        """Mid-rank popularity percentiles among the catalog's books of books
        with ``readers`` training readers (unread books have 0)."""
        ordered = np.sort(self.readers)
        unread = self.books - len(ordered)
        fewer = np.searchsorted(ordered, readers, "left") + np.where(
            readers > 0, unread, 0
        )
        equal = np.searchsorted(ordered, readers, "right") - np.searchsorted(
            ordered, readers, "left"
        )
        equal = equal + np.where(readers == 0, unread, 0)
        return (fewer + 0.5 * equal) / max(self.books, 1)

    def _gini(self, books: np.ndarray, counts: np.ndarray) -> float:
        """Gini index of the recommendation counts over the trained books (and
        any untrained book recommended)."""
        _, known = self._positions(books)
        n = len(self.trained_ids) + int((~known).sum())
        if n < 2 or not counts.sum():  # noqa: PLR2004
            return 0.0
        share = np.concatenate([np.zeros(n - len(counts)), np.sort(counts)])
        share = share / share.sum()
        rank = np.arange(1, n + 1)
        return float(np.sum((2 * rank - n - 1) * share) / (n - 1))

    def _diversity(self, lists: Sequence[Sequence[int]]) -> float:
        """1 - the mean pair similarity of each list with two books or more,
        averaged over those lists; ``_CHUNK_LISTS`` lists at a time (a list of
        10 has 45 pairs: 18M pairs at 5M ratings held at once took 6 GiB)."""
        if self.matrix is None:
            return 0.0
        counts = _Cooccurrence.of(self.matrix, self.readers)
        total, judged = 0.0, 0
        for start in range(0, len(lists), _CHUNK_LISTS):
            chunk = lists[start : start + _CHUNK_LISTS]
            owner, first, second = _list_pairs(chunk)
            if not len(owner):
                continue
            similarity = self._cosine(first, second, counts)
            pairs = np.bincount(owner, minlength=len(chunk))
            per_list = np.bincount(owner, similarity, minlength=len(chunk))
            mine = pairs > 0
            total += float(np.sum(1.0 - per_list[mine] / pairs[mine]))
            judged += int(mine.sum())
        return total / judged if judged else 0.0

    def _cosine(
        self, first: np.ndarray, second: np.ndarray, counts: _Cooccurrence
    ) -> np.ndarray:
        """Cosine co-occurrence similarity of each (first, second) pair of
        ITEM_IDX values over the training readers; 0 with an untrained book."""
        a, known_a = self._positions(first)
        b, known_b = self._positions(second)
        known = known_a & known_b
        similarity = np.zeros(len(first))
        if not known.any():
            return similarity
        n = np.int64(len(self.trained_ids))
        low, high = np.minimum(a[known], b[known]), np.maximum(a[known], b[known])
        keys, again = np.unique(low * n + high, return_inverse=True)
        low, high = keys // n, keys % n
        together = counts.together(low, high)[again]
        readers = self.readers[low] * self.readers[high]
        similarity[known] = together / np.sqrt(np.maximum(readers, 1))[again]
        return similarity

    def _author_share(self, lists: Sequence[Sequence[int]]) -> float:
        """Distinct authors over books, averaged over the non-empty lists."""
        lengths = np.fromiter((len(items) for items in lists), np.int64)
        if not lengths.sum():
            return 0.0
        flat = np.fromiter((i for items in lists for i in items), np.int64)
        owner = np.repeat(np.arange(len(lists)), lengths)
        position, known = self._positions(flat)
        authors = np.where(known, self.authors[position], -1)
        # A book without an author is an author of its own.
        authors = np.where(authors >= 0, authors, -2 - np.arange(len(flat)))
        _, first = np.unique(np.stack([owner, authors]), axis=1, return_index=True)
        distinct = np.bincount(owner[first], minlength=len(lists))
        listed = lengths > 0
        return float(np.mean(distinct[listed] / lengths[listed]))


def _list_pairs(
    lists: Sequence[Sequence[int]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(list, first, second) of every pair of books within each list."""
    lengths = np.fromiter((len(items) for items in lists), np.int64)
    flat = np.fromiter((i for items in lists for i in items), np.int64)
    starts = np.cumsum(lengths) - lengths
    owner, first, second = [], [], []
    for length in np.unique(lengths[lengths >= 2]):  # noqa: PLR2004
        mine = np.flatnonzero(lengths == length)
        grid = flat[starts[mine][:, None] + np.arange(length)]
        a, b = np.triu_indices(length, 1)
        owner.append(np.repeat(mine, len(a)))
        first.append(grid[:, a].ravel())
        second.append(grid[:, b].ravel())
    if not owner:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    return np.concatenate(owner), np.concatenate(first), np.concatenate(second)


@dataclass(frozen=True)
class _Cooccurrence:
    """How many training readers read both books of a pair (positions in the
    catalog's trained books). Pairs of two of the ``_DENSE_BOOKS`` most-read
    books come from their dense co-occurrence matrix; any other pair has a
    rarer book (at most as many readers as the least read of those), whose
    readers are looked up among the other book's."""

    matrix: sparse.csc_matrix  # readers x trained books
    readers: np.ndarray  # each trained book's readers
    slot: np.ndarray  # a book's row in ``dense``, -1 outside the head
    dense: np.ndarray  # the head's co-occurrence counts
    reads: np.ndarray  # every (reader, book) as reader * books + book, sorted

    @classmethod
    def of(cls, matrix: sparse.csc_matrix, readers: np.ndarray) -> _Cooccurrence:
        n = matrix.shape[1]
        head = np.argsort(-readers, kind="stable")[:_DENSE_BOOKS]
        slot = np.full(n, -1, np.int64)
        slot[head] = np.arange(len(head))
        block = matrix[:, head]
        coo = matrix.tocoo()
        return cls(
            matrix=matrix,
            readers=readers,
            slot=slot,
            dense=(block.T @ block).toarray(),
            reads=np.sort(coo.row.astype(np.int64) * n + coo.col),
        )

    def together(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        matrix, n = self.matrix, np.int64(self.matrix.shape[1])
        out = np.zeros(len(first))
        dense = (self.slot[first] >= 0) & (self.slot[second] >= 0)
        out[dense] = self.dense[self.slot[first[dense]], self.slot[second[dense]]]
        rest = np.flatnonzero(~dense)
        if not len(rest):
            return out
        swap = self.readers[first[rest]] > self.readers[second[rest]]
        rare = np.where(swap, second[rest], first[rest])
        other = np.where(swap, first[rest], second[rest])
        starts, many = matrix.indptr[rare], np.diff(matrix.indptr)[rare]
        pair = np.repeat(np.arange(len(rest)), many)
        offset = np.arange(many.sum()) - np.repeat(np.cumsum(many) - many, many)
        readers = matrix.indices[np.repeat(starts, many) + offset].astype(np.int64)
        wanted = readers * n + np.repeat(other, many)
        # Looked up in order: a binary search of sorted keys stays in cache
        # (2x faster at 5M ratings than in the pairs' order).
        order = np.argsort(wanted)
        wanted, pair = wanted[order], pair[order]
        at = np.searchsorted(self.reads, wanted).clip(0, len(self.reads) - 1)
        out[rest] = np.bincount(pair, self.reads[at] == wanted, minlength=len(rest))
        return out


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def _author_codes(side: pd.DataFrame, ids: np.ndarray) -> np.ndarray:
    """Each of ``ids``'s first side value (ITEM_IDX, SIDE rows) as an integer
    code; -1 for a book without one."""
    side = side.sort_values([ITEM_IDX, SIDE]).drop_duplicates(ITEM_IDX)
    _, codes = np.unique(side[SIDE].to_numpy(str), return_inverse=True)
    book = side[ITEM_IDX].to_numpy(np.int64)
    position = np.searchsorted(ids, book).clip(0, max(len(ids) - 1, 0))
    known = (ids[position] == book) if len(ids) else np.zeros(len(book), bool)
    authors = np.full(len(ids), -1, np.int64)
    authors[position[known]] = codes[known]
    return authors


def recommendable(model) -> np.ndarray | None:
    """The ids of the books ``model`` (a ``models.RecommenderModel``) can
    recommend; None for a model that ranks every book with readers."""
    weights = model.item_weights()
    if weights is not None:
        return weights.recommendable
    factors = model.item_factors()
    if factors is not None:
        return factors.select("id").toPandas()["id"].to_numpy(np.int64)
    return None
