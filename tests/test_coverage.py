"""Catalog coverage of a candidate, on hand-computed examples: the books its
served lists hold (the evaluator's ``served_books``) and the books it can
recommend at all."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from book_recommender.columns import COLD_START, ITEM_IDX, SERVED, USER_IDX
from book_recommender.coverage import Catalog
from book_recommender.evaluation import SERVED_BOOKS, ServedEvaluator

# Ten books in the catalog; 0-5 have training readers 3, 1, 2, 2, 1, 5.
CATALOG = Catalog(
    books=10,
    trained_ids=np.arange(6, dtype=np.int64),
    readers=np.array([3, 1, 2, 2, 1, 5]),
)


def _model(weights=None, factors=None):
    return SimpleNamespace(item_weights=lambda: weights, item_factors=lambda: factors)


def test_coverage_of_an_item_based_model_counts_the_books_it_can_reach():
    # Books 0, 2, 3, 5 have two readers; it can recommend 0, 2 and 7.
    model = _model(weights=SimpleNamespace(recommendable=np.array([0, 2, 7])))
    assert CATALOG.coverage(model, served_books=3.0) == pytest.approx(
        {"catalog_coverage": 0.3, "trained_coverage": 0.5, "reach_2plus": 0.5}
    )


def test_coverage_of_a_factor_model_and_of_a_baseline(spark):
    factors = spark.createDataFrame([(0,), (3,), (5,)], "id int")
    assert CATALOG.coverage(_model(factors=factors), 6.0)["reach_2plus"] == 0.75  # noqa: PLR2004
    # A baseline ranks every book with readers.
    assert CATALOG.coverage(_model(), 1.0) == pytest.approx(
        {"catalog_coverage": 0.1, "trained_coverage": 1 / 6, "reach_2plus": 1.0}
    )


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
