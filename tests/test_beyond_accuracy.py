"""Beyond accuracy, on hand-computed examples: the catalog coverage of a
candidate (the books its served lists hold, the evaluator's ``served_books``,
and the books it can recommend at all), and the distribution, novelty,
diversity and popularity of its lists."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import sparse

from book_recommender import beyond_accuracy
from book_recommender.beyond_accuracy import LIST_MEASURES, Catalog
from book_recommender.columns import COLD_START, ITEM_IDX, SERVED, USER_IDX
from book_recommender.evaluation import SERVED_BOOKS, ServedEvaluator
from book_recommender.models.items import SIDE

# Ten books in the catalog; 0-5 have training readers 3, 1, 2, 2, 1, 5.
CATALOG = Catalog(
    books=10,
    trained_ids=np.arange(6, dtype=np.int64),
    readers=np.array([3, 1, 2, 2, 1, 5]),
)


def _model(weights=None, factors=None):
    return SimpleNamespace(item_weights=lambda: weights, item_factors=lambda: factors)


def test_an_item_based_model_reaches_the_books_its_weights_hold():
    # Books 0, 2, 3, 5 have two readers; it can recommend 0, 2 and 7.
    model = _model(weights=SimpleNamespace(recommendable=np.array([0, 2, 7])))
    assert CATALOG.reach(model) == {"reach_2plus": 0.5}


def test_a_factor_model_reaches_its_items_and_a_baseline_every_book(spark):
    factors = spark.createDataFrame([(0,), (3,), (5,)], "id int")
    assert CATALOG.reach(_model(factors=factors)) == {"reach_2plus": 0.75}
    # A baseline ranks every book with readers.
    assert CATALOG.reach(_model()) == {"reach_2plus": 1.0}


def test_coverage_is_the_share_of_the_catalog_and_of_the_trained_books():
    # Lists holding books 0, 2 and 7 (7 has no training reader).
    measures = CATALOG.measures([[0, 2], [2, 7], []], read=[], pairs=False)
    assert measures["catalog_coverage"] == pytest.approx(3 / 10)
    assert measures["trained_coverage"] == pytest.approx(3 / 6)


def test_the_catalog_counts_distinct_readers_and_every_indexed_book(spark):
    items = spark.createDataFrame([(i,) for i in range(7)], f"{ITEM_IDX} int")
    seen = spark.createDataFrame(
        [(1, 0), (2, 0), (2, 0), (1, 4)], f"{USER_IDX} int, {ITEM_IDX} int"
    )
    catalog = Catalog.of(items, seen)
    assert catalog.books == 7  # noqa: PLR2004
    assert catalog.trained_ids.tolist() == [0, 4]
    assert catalog.readers.tolist() == [2, 1]  # a pair seen twice is one reader


@pytest.fixture
def judged(spark):
    """Three users' held-out ratings and served lists (k = 2): user 1's list is
    longer than k, user 3 is cold (no list), user 4 has no held-out rating."""
    rows = [
        (1, 10, 8.0, [1, 2, 3], False),
        (1, 11, 3.0, [1, 2, 3], False),
        (2, 12, 4.0, [2, 4], False),
        (3, 13, 9.0, None, True),
    ]
    return spark.createDataFrame(
        rows,
        f"{USER_IDX} int, {ITEM_IDX} int, rating float, {SERVED} array<int>, "
        f"{COLD_START} boolean",
    )


def test_served_books_are_the_distinct_books_of_the_judged_top_k(judged):
    evaluator = ServedEvaluator(k=2, ratingCol="rating")
    assert evaluator.metrics(judged)[SERVED_BOOKS] == 3.0  # {1, 2, 4}  # noqa: PLR2004
    # Only users with a relevant held-out item are judged: user 2 is not.
    strict = ServedEvaluator(k=2, ratingCol="rating", relevanceThreshold=5.0)
    assert strict.metrics(judged)[SERVED_BOOKS] == 2.0  # {1, 2}  # noqa: PLR2004


# Beyond accuracy on a hand-computed example. Training: reader 0 read books
# 0, 1, 2; reader 1 read 0, 1; reader 2 read 0, 3; reader 3 read 4. Books 5-7
# have no reader. Readers per book: 3, 2, 1, 1, 1 (8 interactions); authors:
# 0 and 1 by "a", 2 by "b", 3 none, 4 by "c".
TRAINING = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 3), (3, 4)]
AUTHORS = [(0, "a"), (1, "a"), (2, "b"), (4, "c")]
# A full list, a list shorter than k (k = 3), a list of an unread book only and
# an empty list (a cold user with no fallback).
LISTS = [[0, 1, 2], [0, 3], [5], []]


@pytest.fixture(scope="module")
def catalog(spark):
    items = spark.createDataFrame([(i,) for i in range(8)], f"{ITEM_IDX} int")
    seen = spark.createDataFrame(
        TRAINING + [(0, 0)], f"{USER_IDX} int, {ITEM_IDX} int"
    )  # a pair twice is one interaction
    side = spark.createDataFrame(AUTHORS, f"{ITEM_IDX} int, {SIDE} string")
    return Catalog.of(items, seen, side)


def test_list_measures_match_a_hand_computation(catalog):
    measures = catalog.measures(LISTS, read=[1, 5, 6])
    # Six recommendations: book 0 twice, 1, 2, 3 and 5 once each.
    entropy = -(1 / 3) * math.log2(1 / 3) - 4 * (1 / 6) * math.log2(1 / 6)
    # Gini over the five trained books and book 5: counts 0, 1, 1, 1, 1, 2.
    gini = (
        sum((2 * j - 7) * c / 6 for j, c in enumerate([0, 1, 1, 1, 1, 2], start=1)) / 5
    )
    # -log2(readers / 8); the unread book 5 counts as one with one reader.
    novelty = (2 * -math.log2(3 / 8) + 2 + 3 + 3 + 3) / 6
    # Mid-rank percentiles among 8 books read by 3, 2, 1, 1, 1, 0, 0, 0:
    # 3 -> 7.5/8, 2 -> 6.5/8, 1 -> 4.5/8 (a tie of three), 0 -> 1.5/8.
    percentile = (2 * 7.5 + 6.5 + 4.5 + 4.5 + 1.5) / 8 / 6
    read = (6.5 + 1.5 + 1.5) / 8 / 3
    # List [0, 1, 2]: co-occurrences 2, 1, 1 over sqrt(3*2), sqrt(3*1),
    # sqrt(2*1); list [0, 3]: 1 over sqrt(3*1); the others have no pair.
    first = 1 - (2 / math.sqrt(6) + 1 / math.sqrt(3) + 1 / math.sqrt(2)) / 3
    second = 1 - 1 / math.sqrt(3)
    assert measures == pytest.approx(
        {
            # Five distinct books of 8 in the catalog, of 5 with a reader.
            "catalog_coverage": 5 / 8,
            "trained_coverage": 5 / 5,
            "distributional_coverage": entropy,
            "gini_index": gini,
            "novelty": novelty,
            # The head: the ceil(1%) = 1 most-read book (0), 2 of 6 picks.
            "head_share": 2 / 6,
            "popularity_percentile": percentile,
            "read_popularity_percentile": read,
            "diversity": (first + second) / 2,
            # [0, 1, 2]: authors a, a, b; [0, 3]: a and a book of its own;
            # [5]: one book, one author; the empty list is left out.
            "author_share": (2 / 3 + 1 + 1) / 3,
        },
        abs=1e-12,
    )
    assert gini == pytest.approx(1 / 3)


def test_without_pairs_the_costly_measures_are_left_out(catalog):
    measures = catalog.measures(LISTS, read=[1], pairs=False)
    assert set(measures) == set(LIST_MEASURES)


def test_equal_lists_for_everyone_have_no_distributional_spread(catalog):
    measures = catalog.measures([[0], [0], [0]], read=[0])
    assert measures["distributional_coverage"] == 0.0
    # Every recommendation is one of the five trained books: the Gini index is 1.
    assert measures["gini_index"] == pytest.approx(1.0)
    assert measures["head_share"] == 1.0
    # One-book lists have no pair: no list has a diversity to average.
    assert measures["diversity"] == 0.0


def test_the_evaluator_adds_the_measures_of_the_lists_it_judges(judged, catalog):
    # User 1's top 2 [1, 2], user 2's [2, 4], user 3 cold with an empty list.
    evaluator = ServedEvaluator(k=2, ratingCol="rating").judge_beyond_accuracy(
        catalog, pairs=True
    )
    metrics = evaluator.metrics(judged)
    expected = catalog.measures([[1, 2], [2, 4], []], read=[10, 11, 12, 13])
    assert {m: metrics[m] for m in expected} == pytest.approx(expected, abs=1e-12)


def test_co_occurrence_counts_are_exact_on_both_paths(monkeypatch):
    """Pairs of two of the most-read books (the dense matrix, here 5 books)
    and pairs with a rarer one (its readers looked up) count the readers of
    both books exactly as sets do."""
    monkeypatch.setattr(beyond_accuracy, "_DENSE_BOOKS", 5)
    rng = np.random.default_rng(7)
    reads = {(u, int(i)) for u in range(40) for i in rng.zipf(1.6, 6) % 30}
    users, books = (np.array(c) for c in zip(*sorted(reads), strict=True))
    ids = np.unique(books)
    matrix = sparse.csc_matrix(
        (np.ones(len(users), np.float32), (users, np.searchsorted(ids, books))),
        shape=(40, len(ids)),
    )
    catalog = Catalog(
        books=30,
        trained_ids=ids.astype(np.int64),
        readers=np.bincount(np.searchsorted(ids, books)).astype(np.int64),
        matrix=matrix,
    )
    readers_of = {i: {u for u, b in reads if b == i} for i in ids.tolist()}
    lists = [rng.choice(30, size=rng.integers(0, 8), replace=False) for _ in range(50)]
    expected = []
    for books_of in lists:
        sims = [
            len(readers_of[a] & readers_of[b])
            / math.sqrt(len(readers_of[a]) * len(readers_of[b]))
            if a in readers_of and b in readers_of
            else 0.0
            for a, b in itertools.combinations(books_of.tolist(), 2)
        ]
        if sims:
            expected.append(1 - sum(sims) / len(sims))
    measured = catalog.measures(lists, read=[])["diversity"]
    assert measured == pytest.approx(sum(expected) / len(expected), abs=1e-12)
