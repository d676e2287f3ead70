"""Deterministic generator of Book-Crossing-shaped demo data.

It writes ``Books.csv``, ``Ratings.csv`` and ``Users.csv`` with the Kaggle
Book-Crossing header names and quoting, and with the warts of the real files:
long-tailed popularity and activity, ~62% implicit ``0`` ratings, explicit
ratings skewed high, ratings whose ISBN is missing from ``Books.csv``, users
with no or absurd ages, ``Year-Of-Publication`` 0, text with commas, quotes and
non-ASCII characters, ISBNs ending in ``X``.

Explicit ratings come from a planted model: ``mu + b_user + b_item + taste +
style`` plus noise, rounded and clipped to 1-10. ``taste`` is a user's affinity for
the book's genre (non-negative, rank = number of genres) and ``style`` a finer
low-rank match that moves scores but not choices. Which books a user reads
follows popularity, the item bias and the genre taste, so readers mostly rate
books of genres they like. A collaborative model therefore has something real
to find: biased ALS beats the damped bias baseline on RMSE and implicit ALS beats
the popularity ranking on NDCG. Like the real data, an explicit rating model
still ranks worse than popularity: it predicts how much a user would like a
book, not whether they would pick it up.

Only ``Generator.random`` (uniform doubles from PCG64) is used, and every other
distribution is derived from it here, so the output does not depend on how a
numpy version implements ``normal`` or ``choice``.

Two shapes. ``demo`` (the default, and the committed demo files) is a tidy
data set: lognormal activity and popularity, every generated book listed.
``bookcrossing`` copies the counts of the real files, scaled by the number of
rating rows (at 1,149,780 rows: ~105k rating users of 278,858 in Users.csv, ~340k
distinct ISBNs of which ~20% are missing from Books.csv and carry ~10% of the rows,
~270k listed books, most books and most users with a single rating, a heavy
Zipf tail of very active users and bestsellers); see ``bookcrossing_config``.

Run ``python -m book_recommender.demo_data --help``.
"""

from __future__ import annotations

import argparse
import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from book_recommender.demo_draws import normal, permutation, pick, zipf
from book_recommender.demo_text import (
    author_names,
    book_rows,
    isbn10,
    user_ids,
    user_rows,
)

logger = logging.getLogger(__name__)

BOOKS_HEADER = [
    "ISBN",
    "Book-Title",
    "Book-Author",
    "Year-Of-Publication",
    "Publisher",
    "Image-URL-S",
    "Image-URL-M",
    "Image-URL-L",
]
RATINGS_HEADER = ["User-ID", "ISBN", "Book-Rating"]
USERS_HEADER = ["User-ID", "Location", "Age"]


@dataclass(frozen=True)
class DemoConfig:
    """Size and shape of a generated data set.

    ``n_items`` counts every ISBN that can be rated; about ``unlisted_share`` of
    the rating rows point at ISBNs left out of ``Books.csv``, as in the real data.
    """

    n_users: int = 3_000
    n_items: int = 5_000
    n_ratings: int = 60_000
    seed: int = 42
    n_genres: int = 8
    implicit_share: float = 0.62
    unlisted_share: float = 0.10
    missing_age_share: float = 0.40
    absurd_age_share: float = 0.01
    year_zero_share: float = 0.015
    # Planted rating model, on the 1-10 scale.
    global_mean: float = 5.5
    user_bias_sd: float = 0.9
    item_bias_sd: float = 0.7
    taste_scale: float = 3.0
    noise_sd: float = 0.6
    outlier_share: float = 0.01
    # A finer taste that moves scores but not what people choose to read:
    # user and book vectors of this rank, dot product times style_scale.
    style_rank: int = 3
    style_scale: float = 1.8
    # Readers pick books they expect to like: the weight of a book in a user's
    # choice is popularity x exp(choice_from_bias x b_item + choice_from_taste x taste).
    choice_from_bias: float = 1.0
    choice_from_taste: float = 3.0
    popularity_sd: float = 2.0
    bias_popularity_corr: float = 0.5
    user_activity_sd: float = 1.8
    # Authors write in one genre; a genre's authors are unequally prolific (the
    # k-th of a genre weighs (k + 1)^-author_zipf), ~books_per_author books each.
    # A reading is, with chance author_return, another book by the author of one
    # of the reader's earlier books (by its weight): readers come back to authors.
    books_per_author: float = 2.5
    author_zipf: float = 0.4
    author_return: float = 0.3
    # Zipf-Mandelbrot (exponent, offset) weights instead of the lognormal ones:
    # the k-th most active user (most popular book) weighs (k + offset)^-exponent.
    activity_zipf: tuple[float, float] | None = None
    popularity_zipf: tuple[float, float] | None = None
    # False: Books.csv lists only books someone rated (the real file's way).
    list_unrated_books: bool = True
    # > 0: the ISBNs missing from Books.csv are mostly rarely rated ones (a
    # book's chance to be left out weighs (ratings + 1)^-orphan_rarity).
    orphan_rarity: float = 0.0


# Counts of the real Book-Crossing files (Kaggle), at 1,149,780 rating rows.
BOOKCROSSING_RATING_ROWS = 1_149_780
BOOKCROSSING_USERS = 278_858  # rows of Users.csv; ~105k of them rate anything


def bookcrossing_config(n_ratings: int = BOOKCROSSING_RATING_ROWS, seed: int = 42):
    """A ``DemoConfig`` with the real files' shape, scaled to ``n_ratings`` rows.

    Calibrated at 1,149,780 rows against the real counts (105,283 rating users,
    340,556 distinct ISBNs, 271,360 books, ~1.03M rows and ~92k users x ~270k
    books after the join with Books.csv, 62% implicit zeros); the pools and the
    Zipf offsets grow with ``n_ratings``, the exponents stay.
    """
    scale = n_ratings / BOOKCROSSING_RATING_ROWS
    return DemoConfig(
        n_users=max(1, round(BOOKCROSSING_USERS * scale)),
        n_items=max(1, round(1_400_000 * scale)),
        n_ratings=n_ratings,
        seed=seed,
        activity_zipf=(1.3, 40 * scale),
        popularity_zipf=(0.85, 50 * scale),
        list_unrated_books=False,
        orphan_rarity=0.6,
        author_return=0.45,
    )


SHAPES = ("bookcrossing", "demo")  # --shape: bookcrossing_config, DemoConfig


# --------------------------------------------------------------------------------------
# The generator


@dataclass(frozen=True)
class DemoTables:
    books: list[list[str]]
    ratings: list[list[str]]
    users: list[list[str]]


class _Books:
    """Draws of books: by genre (a reader's taste) or by author, each by the
    books' choice weight."""

    def __init__(self, weight: np.ndarray, item_genre: np.ndarray, author: np.ndarray):
        self.weight, self.item_genre, self.author = weight, item_genre, author
        self.by_genre = []
        for g in range(int(item_genre.max(initial=-1)) + 1):
            members = np.flatnonzero(item_genre == g)
            cdf = np.cumsum(weight[members])
            self.by_genre.append((members, cdf / cdf[-1] if len(cdf) else cdf))
        # Books sorted by author; an author's books are one run of the order.
        self.order = np.argsort(author, kind="stable")
        self.cumulative = np.cumsum(weight[self.order])
        n_authors = int(author.max(initial=-1)) + 1
        self.start = np.searchsorted(author[self.order], np.arange(n_authors))
        self.end = np.searchsorted(author[self.order], np.arange(n_authors), "right")

    def of_genres(self, genres: np.ndarray, u: np.ndarray) -> np.ndarray:
        books = np.empty(len(genres), dtype=np.int64)
        for g, (members, cdf) in enumerate(self.by_genre):
            rows = np.flatnonzero(genres == g)
            if len(rows):
                picked = np.searchsorted(cdf, u[rows], side="right")
                books[rows] = members[np.minimum(picked, len(members) - 1)]
        return books

    def of_authors(self, authors: np.ndarray, u: np.ndarray) -> np.ndarray:
        start, end = self.start[authors], self.end[authors]
        below = np.where(start > 0, self.cumulative[np.maximum(start - 1, 0)], 0.0)
        target = below + u * (self.cumulative[end - 1] - below)
        picked = np.searchsorted(self.cumulative, target, side="right")
        return self.order[np.clip(picked, start, end - 1)]


def _distinct(pairs: np.ndarray) -> np.ndarray:
    """``pairs`` without repeats, the first of each kept, in order."""
    _, first = np.unique(pairs, return_index=True)
    return pairs[np.sort(first)]


def _draw_pairs(
    rng: np.random.Generator,
    config: DemoConfig,
    activity: np.ndarray,
    taste: np.ndarray,
    books: _Books,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) index pairs, ordered by user."""
    n_u, n_i, n_g = config.n_users, config.n_items, config.n_genres
    # Rating rows: a user by activity, then a genre by taste and how much there
    # is to read in it, then a book of that genre by its weight. One row per
    # (user, book): the first draw wins; draw again until there are enough.
    # Then the returns to authors: a user by activity again, one of their books,
    # another book by its author (a user without books yet draws by genre).
    if config.n_ratings > n_u * n_i // 2:
        raise ValueError(
            f"n_ratings={config.n_ratings} is more than half of all "
            f"{n_u} x {n_i} user-book pairs; ask for fewer ratings or more users/items."
        )
    genre_mass = np.bincount(books.item_genre, weights=books.weight, minlength=n_g)
    genre_cdf = np.cumsum(
        genre_mass[None, :] * np.exp(config.choice_from_taste * taste), axis=1
    )
    genre_cdf /= genre_cdf[:, -1:]

    def by_taste(users: np.ndarray) -> np.ndarray:
        u = rng.random(len(users))
        genres = np.minimum((genre_cdf[users] < u[:, None]).sum(axis=1), n_g - 1)
        return books.of_genres(genres, rng.random(len(users)))

    first_pass = round(config.n_ratings * (1.0 - config.author_return))
    pairs = np.empty(0, dtype=np.int64)
    while len(pairs) < first_pass:
        users = pick(rng, activity, 2 * (first_pass - len(pairs)) + 100)
        pairs = _distinct(np.concatenate([pairs, users * n_i + by_taste(users)]))
    pairs = pairs[:first_pass]
    while len(pairs) < config.n_ratings:
        users = pick(rng, activity, 2 * (config.n_ratings - len(pairs)) + 100)
        read = np.sort(pairs)  # by user, then book
        start = np.searchsorted(read // n_i, users)
        count = np.searchsorted(read // n_i, users, side="right") - start
        chosen = start + (rng.random(len(users)) * count).astype(np.int64)
        earlier = read[np.minimum(chosen, len(read) - 1)] % n_i
        again = books.of_authors(books.author[earlier], rng.random(len(users)))
        drawn = by_taste(users)
        # A return that finds no book the user has not read (an author of one
        # book, or a repeat) is a draw by taste instead: the same user reads.
        returns = (count > 0) & ~np.isin(users * n_i + again, read)
        drawn[returns] = again[returns]
        pairs = _distinct(np.concatenate([pairs, users * n_i + drawn]))
    pairs = pairs[: config.n_ratings]
    # The real Ratings.csv is ordered by user.
    pairs = pairs[np.argsort(pairs // n_i, kind="stable")]
    return pairs // n_i, pairs % n_i


def _authors(
    rng: np.random.Generator, config: DemoConfig, item_genre: np.ndarray
) -> np.ndarray:
    """Each book's author index: authors of a book's genre, by prolificness."""
    n_g = config.n_genres
    n_authors = max(n_g, round(len(item_genre) / config.books_per_author))
    author_genre = np.arange(n_authors) % n_g
    author = np.empty(len(item_genre), dtype=np.int64)
    for g in range(n_g):
        pool = np.flatnonzero(author_genre == g)
        prolific = permutation(rng, len(pool))  # the k-th weighs (k + 1)^-zipf
        rows = np.flatnonzero(item_genre == g)
        picked = pick(rng, (prolific + 1.0) ** -config.author_zipf, len(rows))
        author[rows] = pool[picked]
    return author


@dataclass(frozen=True)
class _Planted:
    """The planted model's draws: what each book and reader is, and who read
    what (rows of Ratings.csv)."""

    item_genre: np.ndarray
    item_bias: np.ndarray
    user_bias: np.ndarray
    implicit_propensity: np.ndarray
    taste: np.ndarray  # (users, genres)
    user_style: np.ndarray
    item_style: np.ndarray
    author: np.ndarray
    row_user: np.ndarray
    row_item: np.ndarray


def _plant(rng: np.random.Generator, config: DemoConfig) -> _Planted:
    """Books, readers and who read what, drawn in this order from ``rng``."""
    n_u, n_i, n_g = config.n_users, config.n_items, config.n_genres

    # Items: genre, popularity (long tail), bias.
    item_genre = pick(rng, np.linspace(2.0, 1.0, n_g), n_i)
    hype = normal(rng, n_i)
    popularity = (
        np.exp(config.popularity_sd * hype)
        if config.popularity_zipf is None
        else zipf(hype, *config.popularity_zipf)
    )
    # Well-liked books are read more: item bias and popularity are correlated.
    rho = config.bias_popularity_corr
    item_bias = config.item_bias_sd * (
        rho * hype + np.sqrt(1 - rho**2) * normal(rng, n_i)
    )

    # Users: activity (long tail), genre affinities in [0, 1], bias, how often
    # they leave an implicit 0 rather than a score.
    spread = normal(rng, n_u)
    activity = (
        np.exp(config.user_activity_sd * spread)
        if config.activity_zipf is None
        else zipf(spread, *config.activity_zipf)
    )
    affinity = rng.random((n_u, n_g)) ** 2
    user_bias = config.user_bias_sd * normal(rng, n_u)
    p = config.implicit_share
    implicit_propensity = np.clip(p + 0.25 * normal(rng, n_u), 0.0, 1.0)

    taste = config.taste_scale * (affinity - 1.0 / 3.0)
    user_style = normal(rng, n_u * config.style_rank).reshape(n_u, config.style_rank)
    item_style = normal(rng, n_i * config.style_rank).reshape(n_i, config.style_rank)
    weight = popularity * np.exp(config.choice_from_bias * item_bias)
    author = _authors(rng, config, item_genre)
    books = _Books(weight, item_genre, author)
    row_user, row_item = _draw_pairs(rng, config, activity, taste, books)
    return _Planted(
        item_genre, item_bias, user_bias, implicit_propensity, taste,
        user_style, item_style, author, row_user, row_item,
    )  # fmt: skip


def _scores(
    rng: np.random.Generator, config: DemoConfig, planted: _Planted
) -> np.ndarray:
    """Each row's score from the planted model, rounded and clipped to 1-10;
    some rows implicit (0)."""
    u, i = planted.row_user, planted.row_item
    n_r = len(u)
    score = (
        config.global_mean
        + planted.user_bias[u]
        + planted.item_bias[i]
        + planted.taste[u, planted.item_genre[i]]
        + config.style_scale
        * np.einsum("ij,ij->i", planted.user_style[u], planted.item_style[i])
        / np.sqrt(config.style_rank)
        + config.noise_sd * normal(rng, n_r)
    )
    score = np.clip(np.rint(score), 1, 10).astype(int)
    # A few off-model scores (real raters are not all consistent) reach every value.
    outlier = rng.random(n_r) < config.outlier_share
    score[outlier] = 1 + (rng.random(int(outlier.sum())) * 10).astype(int)
    implicit = rng.random(n_r) < planted.implicit_propensity[u]
    score[implicit] = 0
    return score


def _listed(
    rng: np.random.Generator, config: DemoConfig, row_item: np.ndarray
) -> np.ndarray:
    """The books Books.csv lists: books missing from it are random ones until
    they carry the asked share of the rows."""
    n_i = config.n_items
    counts = np.bincount(row_item, minlength=n_i)
    if config.orphan_rarity > 0:
        # Weighted sampling without replacement: the largest u^(1/weight) first.
        weight = (counts + 1.0) ** -config.orphan_rarity
        order = np.argsort(-(rng.random(n_i) ** (1.0 / weight)), kind="stable")
        order = order[counts[order] > 0]
    else:
        order = permutation(rng, n_i)
    expected_share = counts / len(row_item)
    unlisted = order[
        : int(np.searchsorted(np.cumsum(expected_share[order]), config.unlisted_share))
        + 1
    ]
    return np.setdiff1d(
        np.arange(n_i) if config.list_unrated_books else np.flatnonzero(counts),
        unlisted,
    )


def generate(config: DemoConfig = DemoConfig()) -> DemoTables:
    """Draws the three tables as rows of strings, headers excluded."""
    rng = np.random.default_rng(config.seed)
    n_i = config.n_items
    planted = _plant(rng, config)
    score = _scores(rng, config, planted)

    # ISBNs: valid ISBN-10s, ~1/11 ending in X; leading zeros are common.
    space = max(10**6, n_i)
    step = 10**9 // space
    isbns = isbn10(
        permutation(rng, space)[:n_i] * step + (rng.random(n_i) * step).astype(int)
    )
    listed = _listed(rng, config, planted.row_item)

    author = planted.author
    names = author_names(rng, int(author.max()) + 1)
    books = book_rows(
        rng, config, [isbns[i] for i in listed], [names[a] for a in author[listed]]
    )
    users = user_rows(rng, config)
    # User ids are 1-based and sparse-ish, like the real ones.
    ids = user_ids(config.n_users)
    ratings = [
        [ids[uu], isbns[ii], str(s)]
        for uu, ii, s in zip(
            planted.row_user.tolist(), planted.row_item.tolist(), score.tolist()
        )
    ]
    users = [[ids[k], *row] for k, row in enumerate(users)]
    return DemoTables(books=books, ratings=ratings, users=users)


def write(tables: DemoTables, folder: Path) -> dict[str, Path]:
    """Writes the tables as Books.csv, Ratings.csv, Users.csv into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "Books.csv": (BOOKS_HEADER, tables.books),
        "Ratings.csv": (RATINGS_HEADER, tables.ratings),
        "Users.csv": (USERS_HEADER, tables.users),
    }
    written = {}
    for name, (header, rows) in files.items():
        path = folder / name
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        written[name] = path
        logger.info("Wrote %s rows to %s", len(rows), path)
    return written


def main(argv: list[str] | None = None) -> None:
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(
        prog="python -m book_recommender.demo_data",
        description="Write Book-Crossing-shaped Books.csv, Ratings.csv, Users.csv.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/01_raw"),
        help="folder to write into (default: data/01_raw)",
    )
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="demo",
        help="demo: tidy data, sized by --users/--items/--ratings (default); "
        "bookcrossing: the real files' counts and tails, sized by --ratings alone "
        f"(default {BOOKCROSSING_RATING_ROWS:,}, the real file's rows)",
    )
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--ratings", type=int, default=None)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    for name, value in (
        ("--users", args.users),
        ("--items", args.items),
        ("--ratings", args.ratings),
    ):
        if value is not None and value < 1:
            parser.error(f"{name} must be a positive whole number, got {value}")
    if args.shape == "bookcrossing":
        if args.users is not None or args.items is not None:
            parser.error(
                "--shape bookcrossing derives the users and items from --ratings; "
                "leave out --users and --items"
            )
        config = bookcrossing_config(
            args.ratings or BOOKCROSSING_RATING_ROWS, seed=args.seed
        )
    else:
        config = DemoConfig(
            n_users=args.users or defaults.n_users,
            n_items=args.items or defaults.n_items,
            n_ratings=args.ratings or defaults.n_ratings,
            seed=args.seed,
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write(generate(config), args.out)


if __name__ == "__main__":
    main()
