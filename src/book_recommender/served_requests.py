"""What a request to the served recommender may hold, and the refusals of
what it may not: each names the column, the row and what was found, as HTTP
400 through ``mlflow models serve``, never a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import AnyType, Array, ColSpec, Schema

if TYPE_CHECKING:
    from book_recommender.serving import Bundle

K_COLUMN = "k"
RANK = "rank"
SCORE = "score"
COLD_START = "cold_start"
KNOWN = "known"
PREDICTION = "prediction"
HISTORY = "history"
RATINGS = "ratings"
UNKNOWN_IN_HISTORY = "unknown_in_history"
BECAUSE = "because"  # prefix of the columns naming the book a pick is due to
MAX_HISTORY = 10_000  # books in one request's history


@dataclass(frozen=True)
class Histories:
    """The books some requests sent as their reader's history.

    ``uses``: per request, whether it sent one (then it counts, not its id).
    ``rows``/``positions``/``ratings``: one entry per known book, request rows
    ascending, table positions, the rating sent (NaN: none, an implicit
    interaction). ``unknown``: per request, the ISBNs the model does not know
    (left out)."""

    uses: np.ndarray
    rows: np.ndarray
    positions: np.ndarray
    ratings: np.ndarray
    unknown: np.ndarray


class RequestError(MlflowException, ValueError):
    """A request the model refuses rather than guess at (a null id, a ``k``
    that is no whole number): ``mlflow models serve`` answers it with HTTP 400
    and this message, not a stack trace."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def _rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask).tolist()
    return f"{rows[:10]}{' ...' if len(rows) > 10 else ''}"


def k_values(model_input: pd.DataFrame, default: int, most: int | None) -> np.ndarray:
    """Each row's ``k``: a whole number from 1 to ``most`` (an int, or a float
    such as 5.0); a null ``k`` is the model's default. Anything else (2.5, "5",
    true, 0, 10**9) is refused, naming the rows: a request is never silently
    rounded, parsed or cut."""
    if K_COLUMN not in model_input:
        return np.full(len(model_input), default, dtype=np.int64)
    values = model_input[K_COLUMN].to_numpy(dtype=object)
    k = np.full(len(values), default, dtype=np.int64)
    bad = np.zeros(len(values), dtype=bool)
    top = np.iinfo(np.int64).max if most is None else most
    for row, value in enumerate(values):
        if value is None or (
            isinstance(value, float | np.floating) and np.isnan(value)
        ):
            continue
        whole = isinstance(value, int | np.integer) or (
            isinstance(value, float | np.floating) and float(value).is_integer()
        )
        if isinstance(value, bool | np.bool_) or not whole or not 1 <= value <= top:
            bad[row] = True
        else:
            k[row] = int(value)
    if bad.any():
        found = [values[i] for i in np.flatnonzero(bad)[:5]]
        bound = ">= 1" if most is None else f"from 1 to {most} (registry.max_k)"
        raise RequestError(
            f"Column '{K_COLUMN}' must hold whole numbers {bound} (or null for the "
            f"default {default}); row(s) {_rows(bad)} hold {_short(found)}."
        )
    return k


def _short(values: list[Any], width: int = 80) -> str:
    """``values`` as the request sent them, cut to ``width`` characters (a
    refusal never echoes a whole body back)."""
    text = repr(values)
    return text if len(text) <= width else text[: width - 3] + "..."


def _blank(value: Any) -> bool:
    """A null (None, NaN, NA) or an empty string."""
    if isinstance(value, str):
        return not value.strip()
    return value is None or bool(pd.isna(value))


def _nested(value: Any) -> bool:
    return isinstance(value, list | tuple | dict | set | np.ndarray)


def ids(model_input: pd.DataFrame, column: str) -> list[str]:
    """The raw ids of ``column`` as strings; a null, blank or non-scalar id (a
    list, an object) is refused, naming the rows (it would otherwise be served
    as the user "None" or "['8']")."""
    values = model_input[column].tolist()
    nested = np.fromiter(map(_nested, values), bool, len(values))
    if nested.any():
        found = [values[i] for i in np.flatnonzero(nested)[:3]]
        raise RequestError(
            f"Column '{column}' holds a list or an object in row(s) "
            f"{_rows(nested)} ({_short(found)}): send one id per row."
        )
    blank = np.fromiter(map(_blank, values), bool, len(values))
    if blank.any():
        raise RequestError(
            f"Column '{column}' has a null or empty id in row(s) {_rows(blank)}: "
            "send an id for every row (an unknown id gets the popular books)."
        )
    return [str(value) for value in values]


def _history_of(row: int, books: Any, ratings: Any) -> tuple[list[str], list[float]]:
    """One row's history as (ISBNs, ratings; NaN where none was sent), or a
    refusal naming the row and what is wrong with it."""
    if not isinstance(books, list | tuple | np.ndarray):
        raise RequestError(
            f"Column '{HISTORY}' in row {row} holds {_short([books])}: send a list "
            "of ISBNs (strings), or null to be answered by the id."
        )
    if len(books) > MAX_HISTORY:
        raise RequestError(
            f"Column '{HISTORY}' in row {row} holds {len(books):,} books; at most "
            f"{MAX_HISTORY:,} are read: send the most recent ones."
        )
    bad = [b for b in books if not isinstance(b, str) or not b.strip()]
    if bad:
        raise RequestError(
            f"Column '{HISTORY}' in row {row} holds {_short(bad[:3])}: every entry "
            "must be an ISBN as a non-empty string (leading zeros kept)."
        )
    if ratings is None or (not _nested(ratings) and _blank(ratings)):
        return [b.strip() for b in books], [np.nan] * len(books)
    numbers = isinstance(ratings, list | tuple | np.ndarray) and all(
        isinstance(r, int | float | np.integer | np.floating)
        and not isinstance(r, bool | np.bool_)
        and np.isfinite(r)
        for r in ratings
    )
    if not numbers or len(ratings) != len(books):
        raise RequestError(
            f"Column '{RATINGS}' in row {row} must be a list of {len(books)} "
            f"numbers, one per book of its history; found {_short([ratings])}."
        )
    return [b.strip() for b in books], [float(r) for r in ratings]


def histories(model_input: pd.DataFrame, item_index: pd.Index) -> Histories | None:
    """The ``history`` (and ``ratings``) sent with the request, if any: a row
    with a history (even an empty one) is answered from it."""
    if HISTORY not in model_input:
        if RATINGS in model_input:
            raise RequestError(
                f"Column '{RATINGS}' was sent without '{HISTORY}': ratings are "
                "read only along the books of a history."
            )
        return None
    books = model_input[HISTORY].tolist()
    ratings = (
        model_input[RATINGS].tolist() if RATINGS in model_input else [None] * len(books)
    )
    uses = np.zeros(len(books), dtype=bool)
    rows, isbns, values = [], [], []
    for row, (sent, rated) in enumerate(zip(books, ratings, strict=True)):
        if not _nested(sent) and _blank(sent):
            continue  # no history: the id counts
        mine, scores = _history_of(row, sent, rated)
        uses[row] = True
        rows += [row] * len(mine)
        isbns += mine
        values += scores
    positions = item_index.get_indexer(isbns) if isbns else np.zeros(0, int)
    rows = np.asarray(rows, np.int64)
    known = positions >= 0
    unknown = np.bincount(rows[~known], minlength=len(books))
    rows, positions = rows[known], positions[known].astype(np.int64)
    values = np.asarray(values, np.float64)[known]
    # A book sent twice counts once, with the rating sent last.
    order = np.lexsort((np.arange(len(rows)), positions, rows))
    rows, positions, values = rows[order], positions[order], values[order]
    last = np.ones(len(rows), dtype=bool)
    last[:-1] = (rows[1:] != rows[:-1]) | (positions[1:] != positions[:-1])
    return Histories(uses, rows[last], positions[last], values[last], unknown)


def within_rows(model_input: pd.DataFrame, most: int | None) -> None:
    """Refuse a request of more than ``most`` rows (``registry.max_rows``)."""
    if most is not None and len(model_input) > most:
        raise RequestError(
            f"{len(model_input)} rows in one request; this model answers at most "
            f"{most} (registry.max_rows): send them in smaller requests."
        )


def require(model_input: pd.DataFrame, names: list[str]) -> None:
    missing = [name for name in names if name not in model_input]
    if missing:
        raise RequestError(
            f"The model input needs the column(s) {missing}; found "
            f"{list(model_input.columns)}."
        )


def because_columns(meta: dict[str, Any]) -> dict[str, str]:
    """Item column -> the column naming the book a pick is due to (the id and
    the title: ``because_ISBN``, ``because_Book-Title``)."""
    return {c: f"{BECAUSE}_{c}" for c in meta["item_columns"][:2]}


def signature(bundle: Bundle, role: str) -> ModelSignature:
    """The served model's input and output columns, for the registry."""
    user, item = bundle.columns["user_id"], bundle.columns["item_id"]
    if role == "rating":
        return ModelSignature(
            inputs=Schema([ColSpec("string", user), ColSpec("string", item)]),
            outputs=Schema(
                [
                    ColSpec("string", user),
                    ColSpec("string", item),
                    ColSpec("double", PREDICTION),
                    ColSpec("boolean", KNOWN),
                ]
            ),
        )
    return ModelSignature(
        inputs=Schema(
            # k as sent (any type): the model refuses 2.5 or "5" itself, where a
            # "long" column would have them rounded or parsed before it sees them.
            # history/ratings as sent too: the model names the row of a
            # malformed one, where a typed column would refuse the whole body.
            [
                ColSpec("string", user),
                ColSpec(AnyType(), K_COLUMN, required=False),
                ColSpec(AnyType(), HISTORY, required=False),
                ColSpec(AnyType(), RATINGS, required=False),
            ]
        ),
        outputs=Schema(
            [
                ColSpec("string", user),
                *[ColSpec(Array("string"), c) for c in bundle.meta["item_columns"]],
                ColSpec(Array("long"), RANK),
                ColSpec(Array("double"), SCORE),
                *[
                    ColSpec(Array("string"), c)
                    for c in because_columns(bundle.meta).values()
                ],
                ColSpec("boolean", COLD_START),
                ColSpec("long", UNKNOWN_IN_HISTORY),
            ]
        ),
    )


def input_example(bundle: Bundle, role: str) -> pd.DataFrame:
    """Two users the model knows (one with factors, if any) and, for the
    recommender, an id it has never seen and a new reader who sends the first
    user's history (up to 20 books)."""
    user = bundle.columns["user_id"]
    users = bundle.users.sort_values("factor_row", ascending=False).head(2)
    if role == "rating":
        seen = bundle.seen_items[bundle.seen_indptr[users.index.to_numpy()]]
        return pd.DataFrame(
            {
                user: users["user"].to_numpy(),
                bundle.columns["item_id"]: bundle.items[bundle.columns["item_id"]]
                .iloc[seen]
                .to_numpy(),
            }
        )
    first = users.index[0]
    books = bundle.items[bundle.columns["item_id"]].iloc[
        bundle.seen_items[bundle.seen_indptr[first] : bundle.seen_indptr[first + 1]]
    ]
    return pd.DataFrame(
        {
            user: [*users["user"], "no-such-user", "a-new-reader"],
            HISTORY: [None] * (len(users) + 1) + [books.head(20).tolist()],
        }
    )
