"""The demo data generator: reproducible, and shaped like Book-Crossing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from book_recommender import demo_data
from book_recommender.demo_data import DemoConfig

RAW = Path(__file__).resolve().parents[1] / "data" / "01_raw"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The committed demo files, read as the strings they are."""
    read = {"dtype": str, "keep_default_na": False}
    return {
        "books": pd.read_csv(RAW / "Books.csv", **read),
        "ratings": pd.read_csv(RAW / "Ratings.csv", **read),
        "users": pd.read_csv(RAW / "Users.csv", **read),
    }


def test_regenerated_files_are_byte_identical_to_committed(tmp_path):
    demo_data.main(["--out", str(tmp_path)])
    for name in ("Books.csv", "Ratings.csv", "Users.csv"):
        assert (tmp_path / name).read_bytes() == (RAW / name).read_bytes(), name


def test_demo_files_are_small_and_have_kaggle_headers(demo):
    total = sum(
        (RAW / n).stat().st_size for n in ("Books.csv", "Ratings.csv", "Users.csv")
    )
    assert total < 3.5 * 2**20
    assert list(demo["books"].columns) == demo_data.BOOKS_HEADER
    assert list(demo["ratings"].columns) == ["User-ID", "ISBN", "Book-Rating"]
    assert list(demo["users"].columns) == ["User-ID", "Location", "Age"]


def test_ratings_are_mostly_implicit_and_explicit_ones_skew_high(demo):
    rating = demo["ratings"]["Book-Rating"].astype(int)
    assert rating.between(0, 10).all()
    assert (rating == 0).mean() == pytest.approx(0.62, abs=0.02)
    explicit = rating[rating > 0].value_counts()
    assert set(explicit.index) == set(range(1, 11))
    assert explicit.idxmax() in (7, 8)  # the real file's: 8; 7 and 8 are close here
    assert rating[rating > 0].mean() > 7


def test_popularity_and_activity_are_long_tailed(demo):
    per_item = demo["ratings"]["ISBN"].value_counts()
    per_user = demo["ratings"]["User-ID"].value_counts()
    assert per_item.iloc[0] >= 300  # a few books with hundreds of ratings
    assert (per_item <= 2).mean() > 0.3  # many with one or two
    assert per_user.iloc[0] >= 300
    assert (per_user <= 5).mean() > 0.35  # many users rate a handful
    assert per_user.median() < per_user.mean() / 2


def test_demo_has_the_real_data_warts(demo):
    books, ratings, users = demo["books"], demo["ratings"], demo["users"]
    unlisted = ~ratings["ISBN"].isin(books["ISBN"])
    assert unlisted.mean() == pytest.approx(0.10, abs=0.02)
    assert (users["Age"] == "").mean() == pytest.approx(0.40, abs=0.03)
    ages = pd.to_numeric(users["Age"], errors="coerce")
    assert (ages == 0).any() and (ages >= 200).any()
    assert users["Age"].str.fullmatch(r"(\d+\.0)?").all()  # text like "34.0"
    assert (books["Year-Of-Publication"] == "0").any()
    assert books["ISBN"].str.endswith("X").any()
    assert books["ISBN"].str.startswith("0").any()
    text = books["Book-Title"] + books["Publisher"]
    assert text.str.contains(",").any()
    assert text.str.contains('"').any()
    assert text.map(lambda s: not s.isascii()).any()
    assert users["Location"].str.contains(",").all()
    assert not ratings.duplicated(["User-ID", "ISBN"]).any()
    assert books["ISBN"].is_unique and users["User-ID"].is_unique


def test_isbns_are_valid_isbn10(demo):
    def valid(isbn: str) -> bool:
        digits = [10 if c == "X" else int(c) for c in isbn]
        return (
            len(isbn) == 10
            and sum((10 - i) * d for i, d in enumerate(digits)) % 11 == 0
        )

    assert demo["books"]["ISBN"].map(valid).all()


def test_scale_knob_sets_the_sizes_and_seed_changes_the_draw():
    small = demo_data.generate(DemoConfig(n_users=200, n_items=300, n_ratings=4_000))
    assert len(small.ratings) == 4_000
    assert len(small.users) == 200
    assert len(small.books) < 300  # some ISBNs are rated but not listed
    again = demo_data.generate(DemoConfig(n_users=200, n_items=300, n_ratings=4_000))
    other = demo_data.generate(
        DemoConfig(n_users=200, n_items=300, n_ratings=4_000, seed=7)
    )
    assert small == again
    assert small.ratings != other.ratings


def test_cli_rejects_a_non_positive_size(capsys):
    with pytest.raises(SystemExit):
        demo_data.main(["--ratings", "0"])
    assert "--ratings must be a positive whole number" in capsys.readouterr().err


def test_bookcrossing_shape_has_the_real_files_proportions_and_tails():
    """At 60k rows (the 1.15M counts are in the scale benchmark's output): the
    real files' shares of zeros, orphan ISBNs and single-rating books, most
    users with a handful of ratings and a few with thousands."""
    tables = demo_data.generate(demo_data.bookcrossing_config(60_000))
    ratings = pd.DataFrame(tables.ratings, columns=demo_data.RATINGS_HEADER)
    books = {row[0] for row in tables.books}
    per_book = ratings["ISBN"].value_counts()
    per_user = ratings["User-ID"].value_counts()
    orphan = ~ratings["ISBN"].isin(books)

    assert len(ratings) == 60_000
    assert (ratings["Book-Rating"] == "0").mean() == pytest.approx(0.62, abs=0.04)
    assert orphan.mean() == pytest.approx(0.10, abs=0.02)
    assert 0.1 < 1 - per_book.index.isin(books).mean() < 0.3  # orphan ISBNs
    assert books <= set(per_book.index)  # Books.csv lists rated books only
    assert (per_book == 1).mean() > 0.5  # most books: one rating
    assert (per_user <= 5).mean() > 0.75  # most users: 1-5 ratings
    assert per_user.max() > 200 * per_user.median()  # and a heavy tail
    # Users.csv lists everyone; fewer than half of them rate anything.
    assert 0.3 < len(per_user) / len(tables.users) < 0.5
    assert len(tables.users) == round(
        demo_data.BOOKCROSSING_USERS * 60_000 / demo_data.BOOKCROSSING_RATING_ROWS
    )


def test_bookcrossing_shape_is_sized_by_ratings_alone(capsys):
    with pytest.raises(SystemExit):
        demo_data.main(["--shape", "bookcrossing", "--users", "10"])
    assert "leave out --users and --items" in capsys.readouterr().err
