"""The served models on a bundle small enough to rank by hand (no Spark)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from book_recommender.serving import Bundle, RatingPredictor, Recommender, RequestError
from book_recommender.topk import ItemTable

COLUMNS = {"user_id": "User-ID", "item_id": "ISBN"}
ITEM_COLUMNS = ["ISBN", "Book-Title"]
# Item factors (rank 2) of items 10..14; item 14 has none (popular only).
ITEM_FACTORS = np.array([[1, 0], [0, 1], [1, 1], [2, 0]], dtype=np.float32)
POPULARITY = np.array([5, 9, 1, 9, 7], dtype=np.float32)
USER_FACTORS = np.array([[1, 0], [0, 2]], dtype=np.float32)


def _bundle(clip=None) -> Bundle:
    table = ItemTable.build(
        np.array([10, 11, 12, 13]), ITEM_FACTORS, np.arange(10, 15), POPULARITY
    )
    users = pd.DataFrame(
        {
            "user_idx": [0, 1, 2],
            "user": ["7", "8", "9"],
            "factor_row": [0, 1, -1],  # user 9 has no factors
        }
    )
    items = pd.DataFrame(
        {
            "item_idx": np.arange(10, 15),
            "ISBN": [f"isbn{i}" for i in range(10, 15)],
            "Book-Title": [f"Title {i}" for i in range(10, 15)],
        }
    )
    # User 7 has seen item 13 (position 3), user 9 item 11 (position 1).
    return Bundle(
        users=users,
        user_factors=USER_FACTORS,
        items=items,
        table=table,
        seen_indptr=np.array([0, 1, 1, 2]),
        seen_items=np.array([3, 1]),
        meta={
            "columns": COLUMNS,
            "item_columns": ITEM_COLUMNS,
            "k": 2,
            "clip": clip,
            "rank": 2,
        },
    )


def _model(cls, bundle: Bundle):
    model = cls()
    model.bundle = bundle
    return model


def test_every_input_row_gets_its_own_answer_in_order():
    model = _model(Recommender, _bundle())
    ids = pd.DataFrame({"User-ID": ["8", "nobody", "7", " 9", "8"]})
    out = model.predict(None, ids)

    assert out["User-ID"].tolist() == ["8", "nobody", "7", " 9", "8"]
    # User 8 = [0, 2]: items 11 and 12 score 2, ties go to the lower id.
    assert out["ISBN"][0] == ["isbn11", "isbn12"]
    assert out["score"][0] == pytest.approx([2.0, 2.0])
    assert out["rank"][0] == [1, 2]
    assert out["Book-Title"][0] == ["Title 11", "Title 12"]
    # An unknown id: the most popular books (9, 9: ids 11, 13), flagged, no score.
    assert out["ISBN"][1] == ["isbn11", "isbn13"]
    assert out["cold_start"].tolist() == [False, True, False, True, False]
    assert out["score"][1] == [None, None]
    # User 7 = [1, 0] has seen item 13 (score 2): 10 and 12 (score 1) remain.
    assert out["ISBN"][2] == ["isbn10", "isbn12"]
    # User 9 has no factors and has seen 11: popular 13 then 14; the id is trimmed.
    assert out["ISBN"][3] == ["isbn13", "isbn14"]
    # A repeated id is answered twice.
    assert out["ISBN"][4] == out["ISBN"][0]


def test_k_per_row_and_items_without_factors_never_recommended_by_the_model():
    model = _model(Recommender, _bundle())
    out = model.predict(None, pd.DataFrame({"User-ID": ["8", "7"], "k": [5, 1]}))
    # User 8 can rank the 4 items with factors only, not item 14; 10 and 13
    # tie at 0.
    assert out["ISBN"][0] == ["isbn11", "isbn12", "isbn10", "isbn13"]
    assert out["ISBN"][1] == ["isbn10"]

    with pytest.raises(ValueError, match="Column 'k' must hold whole numbers >= 1"):
        model.predict(None, pd.DataFrame({"User-ID": ["8"], "k": [0]}))
    with pytest.raises(ValueError, match=r"needs the column\(s\) \['User-ID'\]"):
        model.predict(None, pd.DataFrame({"user": ["8"]}))
    empty = model.predict(None, pd.DataFrame({"User-ID": pd.Series([], dtype=str)}))
    assert len(empty) == 0 and "ISBN" in empty


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ({"User-ID": ["8", None]}, r"null or empty id in row\(s\) \[1\]"),
        ({"User-ID": ["8", " "]}, r"null or empty id in row\(s\) \[1\]"),
        ({"User-ID": ["8", "7"], "k": [3, 2.5]}, r"row\(s\) \[1\] hold \[2.5\]"),
        ({"User-ID": ["8", "7"], "k": ["5", 3]}, r"row\(s\) \[0\] hold \['5'\]"),
        ({"User-ID": ["8"], "k": [True]}, r"row\(s\) \[0\] hold \[True\]"),
    ],
)
def test_a_request_the_model_would_have_to_guess_at_is_refused(rows, problem):
    """A null id is not the user "None", 2.5 is not 2 and "5" is not 5: each
    is refused with the row and the value (a 400 from `mlflow models serve`)."""
    model = _model(Recommender, _bundle())
    with pytest.raises(RequestError, match=problem) as refused:
        model.predict(None, pd.DataFrame(rows, dtype=object))
    assert refused.value.get_http_status_code() == 400  # noqa: PLR2004


def test_a_request_above_the_registered_bounds_is_refused_without_overflow():
    """``registry.max_k`` and ``max_rows`` travel in the bundle: k = 2**63 or
    1e30 is refused as too large, not cast; a list id is not its string."""
    bundle = _bundle()
    bundle.meta.update(max_k=3, max_rows=2)
    model = _model(Recommender, bundle)
    for k in (2**63, 1e30, 4):
        frame = pd.DataFrame({"User-ID": ["8"], "k": [k]}, dtype=object)
        with pytest.raises(RequestError, match=r"from 1 to 3 \(registry.max_k\)"):
            model.predict(None, frame)
    assert len(model.predict(None, pd.DataFrame({"User-ID": ["8"], "k": [3]}))) == 1
    with pytest.raises(RequestError, match=r"3 rows in one request; .* at most 2"):
        model.predict(None, pd.DataFrame({"User-ID": ["8", "7", "9"]}))
    listed = pd.DataFrame({"User-ID": [["8", "7"], "9"]})
    with pytest.raises(RequestError, match=r"a list or an object in row\(s\) \[0\]"):
        model.predict(None, listed)
    rating = _model(RatingPredictor, bundle)
    with pytest.raises(RequestError, match="at most 2"):
        rating.predict(None, pd.DataFrame({"User-ID": ["8"] * 3, "ISBN": ["x"] * 3}))


def test_whole_numbers_and_nulls_in_k_are_accepted():
    model = _model(Recommender, _bundle())
    out = model.predict(
        None, pd.DataFrame({"User-ID": ["8", "7"], "k": [1.0, None]}, dtype=object)
    )
    assert [len(isbns) for isbns in out["ISBN"]] == [1, 2]  # 2: the default k


def test_rating_predictions_are_clipped_and_unknown_pairs_marked_not_dropped():
    model = _model(RatingPredictor, _bundle(clip=[0.5, 1.5]))
    pairs = pd.DataFrame(
        {
            "User-ID": ["8", "7", "nobody", "9", "7"],
            "ISBN": ["isbn11", "isbn10", "isbn10", "isbn10", "isbn14"],
        }
    )
    out = model.predict(None, pairs)
    assert len(out) == len(pairs)
    assert out["known"].tolist() == [True, True, False, False, False]
    # 8 . 11 = 2, clipped to 1.5; 7 . 10 = 1.
    assert out["prediction"][:2].tolist() == pytest.approx([1.5, 1.0])
    assert out["prediction"][2:].isna().all()


def test_the_bundle_survives_a_round_trip_through_files(tmp_path):
    bundle = _bundle(clip=[1, 10])
    loaded = Bundle.load(bundle.save(tmp_path / "bundle"))
    ids = pd.DataFrame({"User-ID": ["8", "nobody", "9"]})
    before = _model(Recommender, bundle).predict(None, ids)
    after = _model(Recommender, loaded).predict(None, ids)
    pd.testing.assert_frame_equal(before, after)
    np.testing.assert_array_equal(loaded.table.popular, bundle.table.popular)
    np.testing.assert_array_equal(loaded.table.unknown, bundle.table.unknown)
    assert loaded.meta == bundle.meta
