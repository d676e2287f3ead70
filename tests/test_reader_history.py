"""A reader's history in the request: the served answer from the books sent,
for an item-based model and for implicit ALS (its factors folded in), and the
book each pick is due to, against numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.models.als import ImplicitAls
from book_recommender.models.base import Interactions
from book_recommender.models.ease import EaseModel, fit_ease
from book_recommender.models.knn import ItemKnnModel, fit_item_knn
from book_recommender.registry import RunTables, export_bundle
from book_recommender.serving import (
    MAX_HISTORY,
    Bundle,
    Recommender,
    RequestError,
)

N_USERS, N_ITEMS, K = 50, 30, 5
COLUMNS = {"user_id": "User-ID", "item_id": "ISBN", "item_info": "Book-Title"}


@pytest.fixture(scope="module")
def pairs() -> pd.DataFrame:
    """Seeded (user, item, rating) with a popularity skew: ratings 1-10, and
    0 (an implicit interaction) for about a third."""
    rng = np.random.default_rng(11)
    weights = 1.0 / np.arange(1, N_ITEMS + 1)
    seen = {
        (int(u), int(i))
        for u in range(N_USERS)
        for i in rng.choice(N_ITEMS, size=rng.integers(2, 9), p=weights / weights.sum())
    }
    frame = pd.DataFrame(sorted(seen), columns=[USER_IDX, ITEM_IDX])
    ratings = rng.integers(1, 11, len(frame)).astype(float)
    ratings[rng.random(len(frame)) < 0.35] = 0.0  # noqa: PLR2004
    return frame.assign(r=ratings)


def _bundle(pairs: pd.DataFrame, model) -> Bundle:
    """The served bundle of ``model``, the run's tables built from ``pairs``
    in pandas (what ``collect_run_tables`` collects from Spark)."""
    items = np.unique(pairs[ITEM_IDX])
    counts = pairs.groupby(ITEM_IDX).size()
    tables = RunTables(
        popularity=(counts.index.to_numpy(), counts.to_numpy(np.float32)),
        items=pd.DataFrame(
            {
                "ISBN": [f"{i:010d}" for i in items],
                "Book-Title": [f"Title {i}" for i in items],
            },
            index=pd.Index(items, name=ITEM_IDX),
        ),
        users=pd.DataFrame({"user_idx": np.unique(pairs[USER_IDX])}).assign(
            user=lambda u: "u" + u["user_idx"].astype(str)
        ),
        seen=pairs[[USER_IDX, ITEM_IDX]],
    )
    return export_bundle(model, None, None, None, COLUMNS, K, tables=tables)


@pytest.fixture(scope="module")
def bundles(spark, pairs) -> dict[str, Bundle]:
    frame = spark.createDataFrame(pairs[[USER_IDX, ITEM_IDX]])
    explicit = spark.createDataFrame(pairs[pairs["r"] > 0])
    implicit = spark.createDataFrame(pairs.loc[pairs["r"] == 0, [USER_IDX, ITEM_IDX]])
    als = (
        ImplicitAls(rank=4, regParam=0.05, maxIter=4, alpha=2.0, seed=1)
        .with_interactions(Interactions(implicit, "r"))
        .fit(explicit)
    )
    return {
        "ease": _bundle(pairs, EaseModel.of(fit_ease(frame, 10.0, 20))),
        "knn": _bundle(
            pairs,
            ItemKnnModel.of(fit_item_knn(frame, "cosine", 8, 1000, 1.2, 0.75, seed=1)),
        ),
        "als": _bundle(pairs, als),
    }


def _served(bundle: Bundle) -> Recommender:
    model = Recommender()
    model.bundle = bundle
    return model


def _history(bundle: Bundle, row: int) -> tuple[list[str], list[float], np.ndarray]:
    """The ISBNs, ratings and table positions of ``users`` row ``row``."""
    positions = bundle.seen_items[bundle.seen_indptr[row] : bundle.seen_indptr[row + 1]]
    isbns = bundle.items["ISBN"].iloc[positions].tolist()
    return isbns, positions


@pytest.mark.parametrize("family", ["ease", "knn", "als"])
def test_a_users_own_history_is_answered_as_their_id(bundles, pairs, family):
    """By id and by the history the model was fitted on: the same books, order
    and scores; for ALS the factors are solved from the history with the
    ratings it was fitted on, as its last half-step solved them."""
    bundle = bundles[family]
    model = _served(bundle)
    warm = [r for r in range(len(bundle.users)) if family != "als" or
            bundle.users["factor_row"].iloc[r] >= 0]  # fmt: skip
    checked = 0
    for row in warm[:12]:
        isbns, positions = _history(bundle, row)
        item_idx = bundle.items["item_idx"].to_numpy()[positions]
        user_idx = bundle.users["user_idx"].iloc[row]
        rated = pairs[pairs[USER_IDX] == user_idx].set_index(ITEM_IDX)["r"]
        by_id = model.predict(
            None, pd.DataFrame({"User-ID": [bundle.users["user"][row]]})
        )
        sent = model.predict(
            None,
            pd.DataFrame(
                {
                    "User-ID": ["someone-new"],
                    "history": [isbns],
                    "ratings": [rated.loc[item_idx].tolist()],
                }
            ),
        )
        assert sent["ISBN"][0] == by_id["ISBN"][0], row
        assert sent["score"][0] == pytest.approx(by_id["score"][0], abs=1e-6)
        assert sent["because_ISBN"][0] == by_id["because_ISBN"][0]
        assert not sent["cold_start"][0] and sent["unknown_in_history"][0] == 0
        checked += 1
    assert checked >= 10  # noqa: PLR2004


@pytest.mark.parametrize("family", ["ease", "knn", "als"])
def test_a_new_reader_with_a_history_gets_a_personal_list(bundles, family):
    """An id the model never saw, with books that have readers: not the
    popular list, none of the books sent, unknown ISBNs counted; with no
    known book (or none at all) the popular list, flagged."""
    bundle = bundles[family]
    model = _served(bundle)
    popular = model.predict(None, pd.DataFrame({"User-ID": ["nobody"]}))
    assert popular["cold_start"][0]
    isbns, _ = _history(bundle, 3)
    answer = model.predict(
        None,
        pd.DataFrame(
            {
                "User-ID": ["nobody", "nobody", "nobody"],
                "history": [[*isbns, "not-a-book", "9999999999"], ["nope"], []],
            }
        ),
    )
    mine = answer.iloc[0]
    assert not mine["cold_start"] and mine["unknown_in_history"] == 2  # noqa: PLR2004
    assert mine["ISBN"] != popular["ISBN"][0]
    assert not set(mine["ISBN"]) & set(isbns)
    assert all(b in isbns for b in mine["because_ISBN"] if b is not None)
    for row, unknown in [(1, 1), (2, 0)]:
        fallback = answer.iloc[row]
        assert fallback["cold_start"] and fallback["unknown_in_history"] == unknown
        assert fallback["ISBN"] == popular["ISBN"][0]
        assert fallback["because_ISBN"] == [None] * K


def _numpy_because(bundle: Bundle, family: str, row: int, picks: list[str]) -> list:
    """The history book of each pick by numpy alone: the largest weight from
    a seen book (EASE's matrix over its subset, kNN's neighbour rows) or the
    most similar factors (ALS); ties to the lower position."""
    _, positions = _history(bundle, row)
    positions = np.sort(positions)
    where = {isbn: p for p, isbn in enumerate(bundle.items["ISBN"])}
    found = []
    for isbn in picks:
        j = where[isbn]
        if family == "ease":
            subset = list(bundle.weights.subset)
            terms = [
                bundle.weights.matrix[subset.index(h), subset.index(j)]
                if h in subset and j in subset
                else -np.inf
                for h in positions
            ]
        elif family == "knn":
            dense = bundle.weights.matrix.toarray()
            terms = [dense[h, j] if dense[h, j] != 0 else -np.inf for h in positions]
        else:
            y = bundle.table.factors.astype(np.float64)
            cosine = y @ y[j] / (np.linalg.norm(y, axis=1) * np.linalg.norm(y[j]))
            terms = [cosine[h] for h in positions]
        found.append(bundle.items["ISBN"].iloc[positions[int(np.argmax(terms))]])
    return found


@pytest.mark.parametrize("family", ["ease", "knn", "als"])
def test_each_pick_is_due_to_the_history_book_numpy_finds(bundles, family):
    bundle = bundles[family]
    model = _served(bundle)
    rows = [r for r in range(len(bundle.users)) if bundle.seen_indptr[r + 1] -
            bundle.seen_indptr[r] >= 3][:6]  # fmt: skip
    answers = model.predict(None, pd.DataFrame({"User-ID": bundle.users["user"][rows]}))
    for row, (_, answer) in zip(rows, answers.iterrows(), strict=True):
        if answer["cold_start"]:
            continue
        scored = [
            i
            for i, s in zip(answer["ISBN"], answer["score"], strict=True)
            if s is not None
        ]
        because = answer["because_ISBN"][: len(scored)]
        assert because == _numpy_because(bundle, family, row, scored), row
        titles = dict(
            zip(bundle.items["ISBN"], bundle.items["Book-Title"], strict=True)
        )
        assert answer["because_Book-Title"][: len(scored)] == [
            titles[b] for b in because
        ]
    assert len(rows) == 6  # noqa: PLR2004


@pytest.mark.parametrize(
    ("history", "ratings", "problem"),
    [
        ("0000000001", None, "row 1 holds ['0000000001']: send a list"),
        ([1, 2], None, "row 1 holds [1, 2]: every entry must be an ISBN"),
        (["0000000001", None], None, "row 1 holds [None]"),
        (["0000000001"] * (MAX_HISTORY + 1), None, "row 1 holds 10,001 books"),
        (["0000000001"], [1.0, 2.0], "'ratings' in row 1 must be a list of 1"),
        (["0000000001"], ["7"], "'ratings' in row 1 must be a list of 1"),
    ],
)
def test_a_malformed_history_is_refused_naming_the_row(
    bundles, history, ratings, problem
):
    model = _served(bundles["ease"])
    request = pd.DataFrame(
        {
            "User-ID": ["a", "b"],
            "history": [None, history],
            "ratings": [None, ratings],
        }
    )
    with pytest.raises(
        RequestError, match=problem.replace("[", r"\[").replace("]", r"\]")
    ):
        model.predict(None, request)
