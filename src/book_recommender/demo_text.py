"""The demo data's text: valid ISBN-10s, titles, author names, publishers and
cities, and the rows of Books.csv and Users.csv built from them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from book_recommender.demo_draws import normal, permutation, pick

if TYPE_CHECKING:
    from book_recommender.demo_data import DemoConfig


def isbn10(body: np.ndarray) -> list[str]:
    """Valid ISBN-10 strings (check digit ``X`` for 10) from 9-digit bodies."""
    out = []
    for value in body.tolist():
        digits = f"{value:09d}"
        total = sum((10 - pos) * int(d) for pos, d in enumerate(digits))
        check = (11 - total % 11) % 11
        out.append(digits + ("X" if check == 10 else str(check)))
    return out


_TITLE_HEAD = [
    "The",
    "A",
    "Night",
    "Secret",
    "Last",
    "Silent",
    "Lost",
    "Hidden",
    "Broken",
    "Winter",
    "Summer",
    "Dark",
    "Little",
    "Golden",
    "Wild",
    "Bitter",
    "Sweet",
]
_TITLE_NOUN = [
    "Garden",
    "River",
    "House",
    "Letters",
    "Daughter",
    "Storm",
    "Island",
    "Road",
    "Promise",
    "Witness",
    "Kingdom",
    "Harbor",
    "Orchard",
    "Mirror",
    "Voyage",
    "Clock",
    "Café",
    "Señorita",
    "Fjord",
    "Über-Mensch",
    "Naïve Heart",
    "Château",
]
_TITLE_TAIL = [
    "",
    "",
    "",
    "",
    ": A Novel",
    ", Book 2",
    " (Paperback)",
    ", Vol. 1",
    ": Stories",
    " and Other Tales",
    ' of "Nobody"',
    ': The "Lost" Years',
]
_FIRST = [
    "Mary",
    "John",
    "Anne",
    "Stephen",
    "Nora",
    "James",
    "Dean",
    "Agatha",
    "Zoë",
    "José",
    "Søren",
    "Françoise",
    "Michael",
    "Sue",
    "Janet",
    "Tom",
    "Laura",
    "Ray",
]
_LAST = [
    "King",
    "Grisham",
    "Christie",
    "Roberts",
    "Steel",
    "Koontz",
    "Evanovich",
    "García Márquez",
    "Kierkegaard",
    "Brontë",
    "O'Brien",
    "Smith",
    "Müller",
    "Dostoyevsky",
    "Atwood",
    "Pratchett",
    "Lee",
    "Brown",
]
_PUBLISHERS = [
    "Ballantine Books",
    "Harper Perennial",
    "Farrar, Straus and Giroux",
    "Simon & Schuster",
    "Penguin Books",
    "Bantam",
    "Pocket",
    "Vintage",
    "Éditions Gallimard",
    "Doubleday",
    "Little, Brown",
    "Warner Books",
    'Scholastic "Point"',
    "Berkley Publishing Group",
    "Del Rey",
]
_CITIES = [
    ("nyc", "new york", "usa"),
    ("stockton", "california", "usa"),
    ("toronto", "ontario", "canada"),
    ("london", "england", "united kingdom"),
    ("münchen", "bayern", "germany"),
    ("barcelona", "barcelona", "spain"),
    ("porto", "porto", "portugal"),
    ("melbourne", "victoria", "australia"),
    ("são paulo", "são paulo", "brazil"),
    ("farnborough", "hants", "united kingdom"),
    ("timmins", "ontario", "canada"),
    ("kuala lumpur", "n/a", "malaysia"),
    ("seattle", "washington", "usa"),
    ("st. louis", "missouri", "usa"),
]


def draw_titles(rng: np.random.Generator, n: int) -> list[str]:
    heads = pick(rng, np.ones(len(_TITLE_HEAD)), n)
    nouns = pick(rng, np.ones(len(_TITLE_NOUN)), n)
    tails = pick(rng, np.ones(len(_TITLE_TAIL)), n)
    numbers = (rng.random(n) * 60).astype(int)
    titles = []
    for h, w, t, k in zip(heads, nouns, tails, numbers):
        # A number keeps most titles distinct; a low one is dropped, so some
        # titles recur across ISBNs (editions), as in the real Books.csv.
        suffix = f" {k}" if k >= 6 else ""
        titles.append(f"{_TITLE_HEAD[h]} {_TITLE_NOUN[w]}{suffix}{_TITLE_TAIL[t]}")
    return titles


def author_names(rng: np.random.Generator, n_authors: int) -> list[str]:
    """Distinct "First I. Last" names (a number after them once those run out)."""
    n_first, n_last = len(_FIRST), len(_LAST)
    n_names = n_first * 26 * n_last
    code = permutation(rng, n_names)[np.arange(n_authors) % n_names]
    first, rest = code // (26 * n_last), code % (26 * n_last)
    names = []
    for a in range(n_authors):
        initial, last = divmod(int(rest[a]), n_last)
        name = f"{_FIRST[first[a]]} {chr(65 + initial)}. {_LAST[last]}"
        names.append(name if a < n_names else f"{name} {a // n_names + 1}")
    return names


def user_ids(n_users: int) -> list[str]:
    # Every third id is skipped, so ids are not simply 1..n.
    return [str(1 + k + k // 2) for k in range(n_users)]


def book_rows(
    rng: np.random.Generator, config: DemoConfig, isbns: list[str], authors: list[str]
) -> list[list[str]]:
    n = len(isbns)
    titles = draw_titles(rng, n)
    # Written as the real file does, not always the same way: some upper case,
    # some without the initial's dot (side information normalizes both away).
    spelling = rng.random(n)
    years = 1950 + (rng.random(n) ** 0.4 * 55).astype(int)
    years[rng.random(n) < config.year_zero_share] = 0
    publisher = pick(rng, np.exp(-0.2 * np.arange(len(_PUBLISHERS))), n)
    rows = []
    for k, isbn in enumerate(isbns):
        url = "http://images.amazon.com/images/P/" + isbn + ".01.{}.jpg"
        rows.append(
            [
                isbn,
                titles[k],
                _spelled(authors[k], spelling[k]),
                str(years[k]),
                _PUBLISHERS[publisher[k]],
                url.format("THUMBZZZ"),
                url.format("MZZZZZZZ"),
                url.format("LZZZZZZZ"),
            ]
        )
    return rows


def _spelled(name: str, draw: float) -> str:
    if draw < 0.05:
        return name.upper()
    if draw < 0.10:
        return name.replace(".", "")
    return name


def user_rows(rng: np.random.Generator, config: DemoConfig) -> list[list[str]]:
    n = config.n_users
    city = pick(rng, np.exp(-0.1 * np.arange(len(_CITIES))), n)
    age = np.clip(np.rint(33 + 13 * normal(rng, n)), 5, 95).astype(int)
    draw = rng.random(n)
    absurd = (rng.random(n) * 2).astype(int)  # 0 or 1: age 0 or age 200+
    rows = []
    for k in range(n):
        if draw[k] < config.missing_age_share:
            age_text = ""
        elif draw[k] < config.missing_age_share + config.absurd_age_share:
            age_text = "0.0" if absurd[k] == 0 else f"{200 + age[k]}.0"
        else:
            age_text = f"{age[k]}.0"
        rows.append([", ".join(_CITIES[city[k]]), age_text])
    return rows
