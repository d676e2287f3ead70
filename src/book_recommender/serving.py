"""The registered models as MLflow ``pyfunc`` models: raw ids in, answers out.

A champion is registered with everything it needs to answer without Spark or
the project's data: the users' and books' raw ids, the factors, the books each
user has seen, the titles and the popular-books fallback (a ``Bundle``, a folder
of Parquet and ``.npy`` files logged as the model's artifact).

- ``Recommender`` (alias ``champion``): a ``User-ID`` column (and optionally
  ``k``) in, one row per input row out: the top-k unseen ISBNs, titles, ranks
  and scores. Unknown users and users without factors get the popular books,
  flagged ``cold_start``. Batch scoring (``scoring`` pipeline) ranks every user
  with the same ``Bundle.top_k``, so the Delta table and the served answers agree.
- ``RatingPredictor`` (alias ``rating``): (``User-ID``, ``ISBN``) pairs in, the
  predicted rating clipped to the rating range out, and ``known`` false (with no
  prediction) where the model has no factors for the user or the book.

This module needs numpy, pandas and pyarrow, not Spark: a served model answers in
milliseconds without a JVM.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from book_recommender.item_topk import DenseWeights, SparseWeights, Weights, rank_users
from book_recommender.topk import BLOCK_USERS, TILE_CELLS, ItemTable, Workspace

K_COLUMN = "k"
RANK = "rank"
SCORE = "score"
COLD_START = "cold_start"
KNOWN = "known"
PREDICTION = "prediction"
_ARRAYS = ("user_factors", "item_factors", "seen_indptr", "seen_items")
# An item-based model's weights, by kind: the arrays each is saved as.
_WEIGHTS = {
    "sparse": (SparseWeights, ("indptr", "indices", "data")),
    "dense": (DenseWeights, ("subset", "matrix")),
}


@dataclass(frozen=True)
class Bundle:
    """A model's factors with the raw ids, seen books, titles and fallback.

    ``users`` (one row per user, by internal id): ``user`` raw id as text,
    ``user_idx``, ``factor_row`` (row of ``user_factors``, -1 without factors).
    ``items`` (one row per position of ``table``): ``item`` raw id, ``item_idx``
    and the item's descriptive columns. ``seen_indptr``/``seen_items``: the
    table positions each user has seen (CSR, by ``users`` row). ``meta`` holds the
    data set's column names, the default k and the rating clip.
    """

    users: pd.DataFrame
    user_factors: np.ndarray
    items: pd.DataFrame
    table: ItemTable
    seen_indptr: np.ndarray
    seen_items: np.ndarray
    meta: dict[str, Any]
    weights: Weights | None = None

    @property
    def columns(self) -> dict[str, Any]:
        return self.meta["columns"]

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.users.to_parquet(folder / "users.parquet", index=False)
        items = self.items.assign(
            _factors_known=self.table.unknown == 0, _popular=self.table.popular
        )
        items.to_parquet(folder / "items.parquet", index=False)
        arrays = {
            "user_factors": self.user_factors,
            "item_factors": self.table.factors,
            "seen_indptr": self.seen_indptr,
            "seen_items": self.seen_items,
        }
        meta = dict(self.meta)
        if self.weights is not None:
            kind = next(
                k for k, (cls, _) in _WEIGHTS.items() if isinstance(self.weights, cls)
            )
            meta["weights"] = kind
            for name in _WEIGHTS[kind][1]:
                arrays[f"weights_{name}"] = getattr(self.weights, name)
        for name, array in arrays.items():
            np.save(folder / f"{name}.npy", array)
        (folder / "meta.json").write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Bundle:
        folder = Path(folder)
        arrays = {name: np.load(folder / f"{name}.npy") for name in _ARRAYS}
        items = pd.read_parquet(folder / "items.parquet")
        table = ItemTable(
            ids=items["item_idx"].to_numpy(np.int64),
            factors=arrays["item_factors"],
            unknown=np.where(items.pop("_factors_known"), 0.0, -np.inf).astype(
                np.float32
            ),
            popular=items.pop("_popular").to_numpy(np.float32),
        )
        users = pd.read_parquet(folder / "users.parquet")
        meta = json.loads((folder / "meta.json").read_text())
        weights = None
        if "weights" in meta:
            kind, names = _WEIGHTS[meta.pop("weights")]
            weights = kind(**{n: np.load(folder / f"weights_{n}.npy") for n in names})
        return cls(
            users=users,
            user_factors=arrays["user_factors"],
            items=items,
            table=table,
            seen_indptr=arrays["seen_indptr"],
            seen_items=arrays["seen_items"],
            meta=meta,
            weights=weights,
        )

    # ----------------------------------------------------------------------------
    # Look-ups

    def user_rows(self, raw_ids: pd.Series) -> np.ndarray:
        """Row of each raw user id in ``users``; -1 for ids the model never saw."""
        index = pd.Index(self.users["user"])
        return index.get_indexer(raw_ids.astype(str).str.strip())

    def factor_rows(self, rows: np.ndarray) -> np.ndarray:
        """Row of ``user_factors`` of each ``users`` row; -1 for unknown users
        (row -1) and users without factors."""
        factor_rows = self.users["factor_row"].to_numpy(np.int64)
        return np.where(rows >= 0, factor_rows[np.clip(rows, 0, None)], -1)

    def item_positions(self, raw_ids: pd.Series) -> np.ndarray:
        """Position of each raw item id in the table; -1 for unknown ids."""
        return pd.Index(self.items[self.columns["item_id"]]).get_indexer(
            raw_ids.astype(str).str.strip()
        )

    # ----------------------------------------------------------------------------
    # Ranking

    def top_k(
        self,
        rows: np.ndarray,
        k: int,
        tile_cells: int = TILE_CELLS,
        exclude_seen: bool = True,
    ) -> Iterator[pd.DataFrame]:
        """Top ``k`` unseen items of each request, in blocks of bounded memory
        (``tile_cells`` scores at once, see ``topk``).

        ``rows`` are ``users`` rows (-1: unknown user, ranked by the fallback with
        nothing seen). Yields long frames: ``request`` (index into ``rows``),
        ``rank`` from 1, ``position`` in the table, ``score`` (clipped to the
        rating range for rating models, after ranking), ``cold_start``. Seen
        items are left out unless ``exclude_seen`` is false (an item-based model
        still scores from them).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1; found {k}.")
        rows = np.asarray(rows, dtype=np.int64)
        block = BLOCK_USERS
        workspace = Workspace.create(tile_cells)
        clip = self.meta["clip"]  # a rating model's scores are ratings
        for start in range(0, len(rows), block):
            requests = np.arange(start, min(start + block, len(rows)))
            user = rows[requests]
            factor = self.factor_rows(user)
            # Users with factors first: their scores are one contiguous product.
            order = np.argsort(factor < 0, kind="stable")
            requests, user, factor = requests[order], user[order], factor[order]
            n_warm = int((factor >= 0).sum())
            seen_rows, seen_cols = self._seen(user)
            found, cols, rank, scores, cold = rank_users(
                self.table,
                self.weights,
                self.user_factors[factor[:n_warm]],
                len(requests),
                seen_rows,
                seen_cols,
                k,
                workspace,
                exclude_seen,
            )
            if clip:
                scores = np.clip(scores, clip[0], clip[1])
            yield pd.DataFrame(
                {
                    "request": requests[found],
                    RANK: (rank + 1).astype(np.int32),
                    "position": cols,
                    SCORE: scores,
                    COLD_START: cold,
                }
            )

    def _seen(self, user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(request row, table position) of every item the known users saw."""
        known = np.flatnonzero(user >= 0)
        starts = self.seen_indptr[user[known]]
        lengths = self.seen_indptr[user[known] + 1] - starts
        # Position j of the concatenated lists is starts[i] + (j - first j of i).
        first = np.cumsum(lengths) - lengths
        offsets = np.repeat(starts - first, lengths) + np.arange(lengths.sum())
        return np.repeat(known, lengths), self.seen_items[offsets]


class RequestError(MlflowException, ValueError):
    """A request the model refuses rather than guess at (a null id, a ``k``
    that is no whole number): ``mlflow models serve`` answers it with HTTP 400
    and this message, not a stack trace."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def _rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask).tolist()
    return f"{rows[:10]}{' ...' if len(rows) > 10 else ''}"


def _k_values(model_input: pd.DataFrame, default: int, most: int | None) -> np.ndarray:
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


def _ids(model_input: pd.DataFrame, column: str) -> pd.Series:
    """The raw ids of ``column`` as strings; a null, blank or non-scalar id (a
    list, an object) is refused, naming the rows (it would otherwise be served
    as the user "None" or "['8']")."""
    ids = model_input[column]
    nested = ids.map(
        lambda v: isinstance(v, list | tuple | dict | set | np.ndarray)
    ).to_numpy(dtype=bool)
    if nested.any():
        found = [ids.iloc[i] for i in np.flatnonzero(nested)[:3]]
        raise RequestError(
            f"Column '{column}' holds a list or an object in row(s) "
            f"{_rows(nested)} ({_short(found)}): send one id per row."
        )
    text = ids.astype(str)
    blank = ids.isna().to_numpy() | (text.str.strip() == "").to_numpy()
    if blank.any():
        raise RequestError(
            f"Column '{column}' has a null or empty id in row(s) {_rows(blank)}: "
            "send an id for every row (an unknown id gets the popular books)."
        )
    return text


def _within_rows(model_input: pd.DataFrame, most: int | None) -> None:
    """Refuse a request of more than ``most`` rows (``registry.max_rows``)."""
    if most is not None and len(model_input) > most:
        raise RequestError(
            f"{len(model_input)} rows in one request; this model answers at most "
            f"{most} (registry.max_rows): send them in smaller requests."
        )


def _require(model_input: pd.DataFrame, names: list[str]) -> None:
    missing = [name for name in names if name not in model_input]
    if missing:
        raise RequestError(
            f"The model input needs the column(s) {missing}; found "
            f"{list(model_input.columns)}."
        )


class _BundleModel(mlflow.pyfunc.PythonModel):
    """A pyfunc model that answers from the ``Bundle`` logged as its artifact."""

    def load_context(self, context) -> None:
        self.bundle = Bundle.load(context.artifacts["bundle"])


class Recommender(_BundleModel):
    """Top-k unseen books for raw user ids; popular books for unknown users."""

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        bundle = self.bundle
        user = bundle.columns["user_id"]
        _require(model_input, [user])
        _within_rows(model_input, bundle.meta.get("max_rows"))
        ids = _ids(model_input, user)
        k = _k_values(model_input, int(bundle.meta["k"]), bundle.meta.get("max_k"))
        rows = bundle.user_rows(ids)
        output = pd.DataFrame({user: ids.to_numpy()})
        if not len(output):
            return output.assign(
                **{c: [] for c in [*bundle.meta["item_columns"], RANK, SCORE]},
                **{COLD_START: np.zeros(0, dtype=bool)},
            )
        ranked = pd.concat(list(bundle.top_k(rows, int(k.max()))))
        ranked = ranked[ranked[RANK] <= k[ranked["request"].to_numpy()]]
        items = bundle.items.iloc[ranked["position"].to_numpy()]
        answer = pd.DataFrame(
            {
                "request": ranked["request"].to_numpy(),
                RANK: ranked[RANK].to_numpy(),
                SCORE: ranked[SCORE].astype(float).to_numpy(),
                **{
                    name: items[name].to_numpy() for name in bundle.meta["item_columns"]
                },
            }
        ).sort_values(["request", RANK])
        grouped = answer.groupby("request")
        for name in [*bundle.meta["item_columns"], RANK, SCORE]:
            lists = grouped[name].agg(list)
            output[name] = [lists.get(i, []) for i in range(len(output))]
        # A fallback's score is a popularity count, not the model's: none (null).
        if bundle.weights is None:
            cold = bundle.factor_rows(rows) < 0
        else:  # cold: nothing the model scored, only the fallback
            cold = np.ones(len(output), dtype=bool)
            cold[ranked.loc[~ranked[COLD_START], "request"].to_numpy()] = False
        output[SCORE] = [
            [None] * len(scores)
            if is_cold
            else [None if np.isnan(s) else s for s in scores]
            for scores, is_cold in zip(output[SCORE], cold, strict=True)
        ]
        output[COLD_START] = cold
        return output


class RatingPredictor(_BundleModel):
    """Predicted ratings of raw (user, book) pairs, clipped to the rating range."""

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        bundle = self.bundle
        user, item = bundle.columns["user_id"], bundle.columns["item_id"]
        _require(model_input, [user, item])
        _within_rows(model_input, bundle.meta.get("max_rows"))
        users, items = _ids(model_input, user), _ids(model_input, item)
        factor = bundle.factor_rows(bundle.user_rows(users))
        positions = bundle.item_positions(items)
        known = (factor >= 0) & (positions >= 0)
        known[known] = bundle.table.unknown[positions[known]] == 0
        prediction = np.full(len(model_input), np.nan)
        prediction[known] = np.einsum(
            "ij,ij->i",
            bundle.user_factors[factor[known]],
            bundle.table.factors[positions[known]],
        )
        clip = bundle.meta["clip"]
        if clip:
            prediction = np.clip(prediction, clip[0], clip[1])
        return pd.DataFrame(
            {
                user: users.to_numpy(),
                item: items.to_numpy(),
                PREDICTION: prediction,
                KNOWN: known,
            }
        )
