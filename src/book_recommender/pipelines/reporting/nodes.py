"""Nodes of the reporting pipeline: the tutorial's figures, the next questions a
data scientist asks of the data, the model report and the recommendation sample.

Aggregation happens in Spark; only the few rows a figure shows reach pandas.
Figures are built on ``matplotlib.figure.Figure`` (no pyplot state, headless).
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from book_recommender.columns import ITEM_IDX, PREDICTION, USER_IDX  # noqa: E402
from book_recommender.models.records import Champion, TuningResult  # noqa: E402
from book_recommender.params import (
    DataProcessingParams,
    EvaluationParams,
    ReportingParams,
)

TOP_N = 10
LABEL_WIDTH = 42


def short_label(text: str, width: int = LABEL_WIDTH) -> str:
    """A bar label that fits: long titles are cut with an ellipsis."""
    text = str(text)
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _top(df: DataFrame, key: str, label: str, n: int = TOP_N) -> pd.DataFrame:
    """``df``'s rows counted per ``key``, the n largest (ties by key), with a label."""
    counts = df.groupBy(key).agg(
        F.count(F.lit(1)).alias("count"), F.first(label).alias("label")
    )
    return counts.orderBy(F.desc("count"), F.asc(key)).limit(n).toPandas()


def _top_items(
    ratings: DataFrame, items: DataFrame, title: str, n: int = TOP_N
) -> pd.DataFrame:
    """The n books with the most rows in ``ratings`` (ties by index), titled.

    Counted on the index alone and titled afterwards: joining the titles first
    shuffled every rating with its title (1-2 s a figure at the real shape).
    """
    top = (
        ratings.groupBy(ITEM_IDX)
        .agg(F.count(F.lit(1)).alias("count"))
        .orderBy(F.desc("count"), F.asc(ITEM_IDX))
        .limit(n)
        .toPandas()
    )
    ids = [int(i) for i in top[ITEM_IDX]]
    titles = (
        items.filter(F.col(ITEM_IDX).isin(ids))
        .select(ITEM_IDX, F.col(title).alias("label"))
        .toPandas()
    )
    return top.merge(titles, on=ITEM_IDX, how="left")  # in top's order


def _barh(top: pd.DataFrame, title: str, xlabel: str, color: str) -> Figure:
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    labels = [short_label(v) for v in top["label"]]
    positions = range(len(top))
    ax.barh(positions, top["count"], color=color)
    ax.set_yticks(list(positions), labels)
    ax.invert_yaxis()  # largest on top
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    for position, value in zip(positions, top["count"], strict=True):
        ax.annotate(
            f"{value:,}",
            (value, position),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.margins(x=0.12)
    return fig


def _not_available(title: str, why: str) -> Figure:
    """A figure that says why it is empty, so every run saves the same files."""
    fig = Figure(figsize=(9, 3), layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True)
    return fig


def _missing_column(df: DataFrame, columns: dict[str, str], key: str) -> str | None:
    """Why the figure for config key ``columns.<key>`` cannot be drawn, if it can't."""
    name = columns.get(key)
    if not name:
        return f"This data set has no such column (columns.{key} is not set)."
    if name not in df.columns:
        return f"Column '{name}' (columns.{key}) is not in the table."
    return None


def plot_top_authors(indexed_items: DataFrame, columns: dict[str, str]) -> Figure:
    """The 10 authors with the most books (distinct ISBNs) in the books table."""
    title = f"Top {TOP_N} authors by number of books"
    if why := _missing_column(indexed_items, columns, "item_author"):
        return _not_available(title, why)
    author = columns["item_author"]
    top = _top(indexed_items.filter(F.col(author).isNotNull()), author, author)
    return _barh(
        top,
        title,
        "books (distinct ISBNs)",
        "#4C72B0",
    )


def plot_most_rated_books(
    model_input_ratings: DataFrame, indexed_items: DataFrame, columns: dict[str, str]
) -> Figure:
    """The 10 books with the most explicit ratings (1-10).

    The tutorial's code counts how often a title occurs in Books.csv (editions),
    while its caption says "per number of ratings"; this plots what the caption
    promises: explicit rating rows per book.
    """
    rating, title = columns["rating"], columns["item_info"]
    explicit = model_input_ratings.filter(F.col(rating) > 0)
    top = _top_items(explicit, indexed_items, title)
    return _barh(
        top,
        f"Top {TOP_N} books by number of ratings (1-10)",
        "explicit ratings",
        "#55A868",
    )


def plot_most_popular_items(
    model_input_ratings: DataFrame, indexed_items: DataFrame, columns: dict[str, str]
) -> Figure:
    """The 10 books with the most interactions, implicit (0) ratings included."""
    top = _top_items(model_input_ratings, indexed_items, columns["item_info"])
    return _barh(
        top,
        f"Top {TOP_N} most popular books (all interactions)",
        "ratings, implicit 0 included",
        "#C44E52",
    )


def plot_rating_distribution(
    model_input_ratings: DataFrame,
    columns: dict[str, str],
    data_processing: DataProcessingParams,
) -> Figure:
    """How many ratings of each value, the implicit value set apart."""
    rating = columns["rating"]
    counts = model_input_ratings.groupBy(rating).count().orderBy(rating).toPandas()
    implicit = data_processing.ratings.implicit_value
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    colors = [
        "#999999" if implicit is not None and v == implicit else "#4C72B0"
        for v in counts[rating]
    ]
    ax.bar([f"{v:g}" for v in counts[rating]], counts["count"], color=colors)
    ax.set_xlabel(
        "rating"
        + (
            f" ({implicit:g} = implicit: read, not rated)"
            if implicit is not None
            else ""
        )
    )
    ax.set_ylabel("ratings")
    share = (
        counts.loc[counts[rating] == implicit, "count"].sum() / counts["count"].sum()
        if implicit is not None
        else 0
    )
    ax.set_title(f"Rating values ({share:.0%} implicit)")
    return fig


def _ranked_counts(
    ratings: DataFrame, key: str
) -> tuple[np.ndarray, np.ndarray, float]:
    """The curve of rows per ``key``, most first, against rank (1-based), and
    the share of keys with 1-2 rows.

    Only how many keys have each count reaches the driver (a few hundred rows,
    not one per book): the sorted counts are a staircase, drawn exactly by the
    first and last rank of each step.
    """
    steps = (
        ratings.groupBy(key)
        .count()
        .groupBy("count")
        .agg(F.count(F.lit(1)).alias("keys"))
        .orderBy(F.desc("count"))
        .toPandas()
    )
    last = steps["keys"].cumsum().to_numpy()
    first = last - steps["keys"].to_numpy() + 1
    ranks = np.column_stack([first, last]).ravel()
    counts = np.repeat(steps["count"].to_numpy(), 2)
    total = int(last[-1]) if len(last) else 0
    few = int(steps.loc[steps["count"] <= 2, "keys"].sum())
    return ranks, counts, few / total if total else 0.0


def plot_long_tail(model_input_ratings: DataFrame) -> Figure:
    """Ratings per book and per user, sorted, on log-log axes: the long tail."""
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, what in ((axes[0], ITEM_IDX, "books"), (axes[1], USER_IDX, "users")):
        ranks, counts, single = _ranked_counts(model_input_ratings, key)
        ax.loglog(ranks, counts, color="#4C72B0")
        ax.set_xlabel(f"{what}, most active first (log)")
        ax.set_ylabel("ratings (log)")
        ax.set_title(f"Ratings per {what[:-1]}: {single:.0%} have 1-2")
    return fig


def plot_user_ages(indexed_users: DataFrame, columns: dict[str, str]) -> Figure:
    """Users' ages, absurd ones (under 5, over 100) counted in the title."""
    if why := _missing_column(indexed_users, columns, "user_age"):
        return _not_available("User ages", why)
    age = columns["user_age"]
    ages = indexed_users.select(F.col(age).alias("age")).toPandas()["age"]
    known = ages.dropna()
    absurd = ((known < 5) | (known > 100)).sum()
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.subplots()
    sns.histplot(
        known, bins=range(0, int(max(known.max(), 100)) + 6, 5), ax=ax, color="#4C72B0"
    )
    ax.set_xlabel("age (years)")
    ax.set_ylabel("users")
    ax.set_title(
        f"User ages: {ages.isna().mean():.0%} missing, {absurd} absurd (<5 or >100)"
    )
    return fig


ROLE_COLORS = {"ranking": "#4C72B0", "rating": "#DD8452"}


def plot_model_comparison(
    tuning_results: list[TuningResult],
    champions: dict[str, Champion],
    evaluation: EvaluationParams,
) -> Figure:
    """Every candidate on validation, where the champions are picked: the
    ranking metric of all of them against the popularity baseline, RMSE of the
    rating family against the bias baseline. Champions are starred; baselines
    are the dashed lines. (Only champions and baselines reach test: their test
    metrics are in the MLflow run and the registry.)"""
    ranking_key = evaluation.ranking_key
    table = pd.DataFrame(
        [
            {"name": r.name, "role": r.candidate.role, **r.validation}
            for r in tuning_results
        ]
    )
    stars = {c.name: role for role, c in champions.items()}
    table["label"] = [
        f"{n}  \N{BLACK STAR} {stars[n]}" if n in stars else n for n in table["name"]
    ]
    recommender = champions["recommender"]
    panels = [
        (
            ranking_key,
            recommender.baseline,
            f"{ranking_key} on validation (higher is better)",
        )
    ]
    if "rating" in champions and "rmse" in table and table["rmse"].notna().any():
        baseline = champions["rating"].baseline
        panels.append(("rmse", baseline, "RMSE on validation (lower is better)"))
    height = 1.2 + 0.32 * len(table)
    fig = Figure(figsize=(6.5 * len(panels), height), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (metric, baseline, title) in zip(axes, panels, strict=True):
        rows = table[table[metric].notna()]
        bars = ax.barh(
            rows["label"],
            rows[metric],
            color=[ROLE_COLORS[role] for role in rows["role"]],
        )
        ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
        value = float(table.loc[table["name"] == baseline, metric].iloc[0])
        ax.axvline(
            value,
            color="#C44E52",
            linestyle="--",
            label=f"{baseline.replace('_', ' ')} {value:.3f}",
        )
        ax.invert_yaxis()
        ax.set_title(title)
        ax.set_xlabel(metric)
        ax.set_xlim(0, max(rows[metric].max(), value) * 1.2)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        "Candidates on validation: ranking family (blue) and rating family "
        "(orange) against their baselines"
    )
    return fig


def plot_predicted_vs_actual(
    champion_test_predictions: DataFrame,
    columns: dict[str, str],
    champions: dict[str, Champion],
) -> Figure:
    """The rating champion's predictions on test, one box per actual rating value
    (the recommender champion's scores when no rating family was trained)."""
    champion = champions.get("rating", champions["recommender"])
    rating = columns["rating"]
    data = champion_test_predictions.select(rating, PREDICTION).toPandas()
    order = sorted(data[rating].unique())
    data[rating] = pd.Categorical(
        data[rating].map(lambda v: f"{v:g}"), [f"{v:g}" for v in order]
    )
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    sns.boxplot(data=data, x=rating, y=PREDICTION, ax=ax, color="#8DA0CB", fliersize=1)
    ax.set_xlabel("actual rating on test")
    ax.set_ylabel("predicted " + ("rating" if "rating" in champions else "score"))
    ax.set_title(
        f"{'Rating' if 'rating' in champions else 'Recommender'} champion "
        f"{champion.name}: predicted vs actual ({len(data):,} test ratings)"
    )
    return fig


def _sample_section(
    uid: int,
    liked: pd.DataFrame,
    recs: pd.DataFrame,
    book: Callable[[pd.Series], str],
    columns: dict[str, str],
    n_books: int,
) -> list[str]:
    """One user's section: their top rated books, then their recommended ones
    (plain Markdown lists: MLflow's preview shows HTML tags in tables as text)."""
    rating, title, user = columns["rating"], columns["item_info"], columns["user_id"]
    top_rated = (
        liked[liked[USER_IDX] == uid]
        .sort_values([rating, title], ascending=[False, True])
        .head(n_books)
    )
    recommended = recs[recs[USER_IDX] == uid].sort_values("rank").head(n_books)
    user_id = recommended[user].iloc[0] if len(recommended) else uid
    return [
        f"## {user} {user_id}",
        "",
        "Rated highly:",
        "",
        *(f"- {book(row)}: {row[rating]:g}" for _, row in top_rated.iterrows()),
        "",
        "Recommended:",
        "",
        *(f"{row['rank']}. {book(row)}" for _, row in recommended.iterrows()),
        "",
    ]


def sample_recommendations(
    user_recommendations: DataFrame,
    model_input_ratings: DataFrame,
    indexed_items: DataFrame,
    columns: dict[str, str],
    reporting: ReportingParams,
) -> str:
    """Markdown: for a few active users, books they rated highly and then the
    books recommended to them, each with its author when the data has one
    (``columns.item_author``): a reader can see the model come back to authors."""
    n_users, n_books = reporting.sample_users, reporting.sample_books
    rating, title, user = columns["rating"], columns["item_info"], columns["user_id"]
    author = (
        None
        if _missing_column(indexed_items, columns, "item_author")
        else (columns["item_author"])
    )
    explicit = model_input_ratings.filter(F.col(rating) > 0)
    users = [
        r[USER_IDX]
        for r in explicit.groupBy(USER_IDX)
        .count()
        .orderBy(F.desc("count"), F.asc(USER_IDX))
        .limit(n_users)
        .collect()
    ]
    books = indexed_items.select(ITEM_IDX, title, *([author] if author else []))
    # The few users' rows are the broadcast side of each join: a plain join
    # shuffled the whole items table, twice (8 s at the real shape).
    liked = books.join(
        F.broadcast(explicit.filter(F.col(USER_IDX).isin(users))), on=ITEM_IDX
    ).toPandas()
    recs = (
        user_recommendations.filter(F.col(USER_IDX).isin(users))
        .select(USER_IDX, user, "rank", ITEM_IDX)
        .toPandas()
    )
    recs = recs.merge(
        books.filter(F.col(ITEM_IDX).isin(sorted(set(recs[ITEM_IDX])))).toPandas(),
        on=ITEM_IDX,
        how="left",
    )

    def book(row: pd.Series) -> str:
        return f"{row[title]} ({row[author]})" if author else str(row[title])

    lines = ["# Recommendations for the most active readers", ""]
    for uid in users:
        lines += _sample_section(uid, liked, recs, book, columns, n_books)
    return "\n".join(lines)
