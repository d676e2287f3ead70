"""Reporting figures and tables on the demo data, checked against pandas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from book_recommender.params import parse
from book_recommender.pipelines.data_processing import nodes as dp
from book_recommender.pipelines.reporting.nodes import (
    plot_long_tail,
    plot_most_popular_items,
    plot_most_rated_books,
    plot_rating_distribution,
    plot_top_authors,
    plot_user_ages,
    short_label,
)
from book_recommender.pipelines.reporting.raw_summary import summarize_raw_tables
from tests.conftest import data_processing_params

ROOT = Path(__file__).resolve().parents[3]
RAW = ROOT / "data" / "01_raw"
COLUMNS = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())["columns"]
PARAMS = data_processing_params(
    ratings={"integer": False},
    preparation={"sample_rows": 1, "seed": 1},
)
PARAMS["data"]["folder"] = str(RAW)
TYPED = parse("data_processing", PARAMS)
READ = {"dtype": str, "keep_default_na": False}


@pytest.fixture(scope="module")
def raw(spark):
    options = {"header": True, "quote": '"', "escape": '"', "multiLine": True}
    return {
        name: spark.read.options(**options).csv(str(RAW / f"{name}.csv"))
        for name in ("Books", "Ratings", "Users")
    }


@pytest.fixture(scope="module")
def prepared(raw):
    ratings, _ = dp.validate_ratings(raw["Ratings"], COLUMNS, TYPED)
    users, _ = dp.validate_users(raw["Users"], COLUMNS, TYPED)
    items, _ = dp.validate_items(raw["Books"], COLUMNS, TYPED)
    indexed_users, indexed_items = (
        dp.index_users(users, COLUMNS),
        dp.index_items(items, COLUMNS),
    )
    merged = dp.merge_ratings(ratings, indexed_users, indexed_items, COLUMNS)
    model_input = dp.prepare_model_input(merged, COLUMNS, TYPED).cache()
    return model_input, indexed_users.cache(), indexed_items.cache()


@pytest.fixture(scope="module")
def pandas_tables():
    books = pd.read_csv(RAW / "Books.csv", **READ).drop_duplicates("ISBN")
    users = pd.read_csv(RAW / "Users.csv", **READ).drop_duplicates("User-ID")
    ratings = pd.read_csv(RAW / "Ratings.csv", **READ)
    ratings["Book-Rating"] = ratings["Book-Rating"].astype(int)
    merged = ratings.merge(users[["User-ID"]], on="User-ID").merge(
        books[["ISBN", "Book-Title"]], on="ISBN"
    )
    return books, users, merged


def _bars(fig):
    """(labels, widths) of a horizontal bar chart, top bar first."""
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    widths = [p.get_width() for p in ax.patches]
    return labels, widths


def _expected_top(
    counts: pd.DataFrame, key: str, label: str
) -> tuple[list[str], list[int]]:
    top = counts.sort_values(["count", key], ascending=[False, True]).head(10)
    return [short_label(v) for v in top[label]], top["count"].tolist()


def test_top_authors_match_pandas(prepared, pandas_tables):
    books, _, _ = pandas_tables
    counts = books.groupby("Book-Author").size().rename("count").reset_index()
    assert _bars(plot_top_authors(prepared[2], COLUMNS)) == _expected_top(
        counts, "Book-Author", "Book-Author"
    )


def test_most_rated_books_count_explicit_ratings(prepared, pandas_tables):
    _, _, merged = pandas_tables
    explicit = merged[merged["Book-Rating"] > 0]
    counts = (
        explicit.groupby(["ISBN", "Book-Title"]).size().rename("count").reset_index()
    )
    model_input, _, items = prepared
    labels, widths = _bars(plot_most_rated_books(model_input, items, COLUMNS))
    expected_labels, expected_widths = _expected_top(counts, "ISBN", "Book-Title")
    assert widths == expected_widths
    assert labels == expected_labels  # ties break by ISBN in both; labels follow


def test_most_popular_items_count_all_interactions(prepared, pandas_tables):
    _, _, merged = pandas_tables
    counts = merged.groupby(["ISBN", "Book-Title"]).size().rename("count").reset_index()
    model_input, _, items = prepared
    assert _bars(plot_most_popular_items(model_input, items, COLUMNS)) == _expected_top(
        counts, "ISBN", "Book-Title"
    )


def test_long_tail_draws_every_rank_of_the_sorted_counts(prepared, pandas_tables):
    _, _, merged = pandas_tables
    model_input, _, _ = prepared
    fig = plot_long_tail(model_input)
    for ax, key in zip(fig.axes, ("ISBN", "User-ID"), strict=True):
        expected = merged.groupby(key).size().sort_values(ascending=False).to_numpy()
        ranks, counts = ax.lines[0].get_data()
        assert ranks[0] == 1 and ranks[-1] == len(expected)
        # Corners in pairs: each count from its first rank to its last, so
        # repeating each count over its ranks gives the sorted counts back.
        first, last, height = ranks[::2], ranks[1::2], counts[::2]
        assert (first[1:] == last[:-1] + 1).all() and (counts[1::2] == height).all()
        steps = np.repeat(height, (last - first + 1).astype(int))
        assert steps.tolist() == expected.tolist()
        assert f"{(expected <= 2).mean():.0%} have 1-2" in ax.get_title()


def test_rating_distribution_heights(prepared, pandas_tables):
    _, _, merged = pandas_tables
    fig = plot_rating_distribution(prepared[0], COLUMNS, TYPED)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == merged["Book-Rating"].value_counts().sort_index().tolist()
    assert "implicit" in fig.axes[0].get_title()


def test_user_ages_title_counts_missing_and_absurd(prepared, pandas_tables):
    _, users, _ = pandas_tables
    ages = pd.to_numeric(users["Age"], errors="coerce")
    absurd = int(((ages < 5) | (ages > 100)).sum())
    title = plot_user_ages(prepared[1], COLUMNS).axes[0].get_title()
    assert f"{absurd} absurd" in title
    assert f"{ages.isna().mean():.0%} missing" in title


def test_summary_table_matches_pandas(raw):
    summary = summarize_raw_tables(raw["Books"], raw["Ratings"], raw["Users"])
    for table, name in (("books", "Books"), ("ratings", "Ratings"), ("users", "Users")):
        frame = pd.read_csv(RAW / f"{name}.csv", **READ)
        for column in frame.columns:
            row = summary[
                (summary["table"] == table) & (summary["column"] == column)
            ].iloc[0]
            present = frame[column].str.strip() != ""
            assert row["count"] == present.sum(), (table, column)
            assert row["missing"] == (~present).sum(), (table, column)
            assert row["distinct"] == frame.loc[present, column].nunique(), (
                table,
                column,
            )
    ratings = summary[
        (summary["table"] == "ratings") & (summary["column"] == "Book-Rating")
    ].iloc[0]
    values = pd.read_csv(RAW / "Ratings.csv")["Book-Rating"]
    assert (ratings["min"], ratings["max"]) == (values.min(), values.max())
    assert ratings["mean"] == pytest.approx(values.mean())
