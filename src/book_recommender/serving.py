"""The registered models as MLflow ``pyfunc`` models: raw ids in, answers out.

A champion is registered with everything it needs to answer without Spark or
the project's data: the users' and books' raw ids, the factors, the books each
user has seen, the titles and the popular-books fallback (a ``Bundle``, a folder
of Parquet and ``.npy`` files logged as the model's artifact).

- ``Recommender`` (alias ``champion``): a ``User-ID`` column (and optionally
  ``k``, and a reader's ``history`` of ISBNs with its ``ratings``) in, one row
  per input row out: the top-k unseen ISBNs, titles, ranks, scores and, per
  book, the book of the history it is recommended ``because`` of. Unknown users
  and users without factors get the popular books, flagged ``cold_start``. A
  row with a ``history`` is answered from that history, not from what the
  model saw of the id (``Histories``). Batch scoring (``scoring`` pipeline)
  ranks every user with the same ``Bundle.top_k``, so the Delta table and the
  served answers agree.
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
from functools import cached_property
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from book_recommender import served_requests
from book_recommender.item_topk import (
    DenseWeights,
    SparseWeights,
    Weights,
    rank_users,
)
from book_recommender.reader_history import HistoryScorer
from book_recommender.served_requests import (  # noqa: F401 (the model's interface)
    BECAUSE,
    COLD_START,
    HISTORY,
    K_COLUMN,
    KNOWN,
    MAX_HISTORY,
    PREDICTION,
    RANK,
    RATINGS,
    SCORE,
    UNKNOWN_IN_HISTORY,
    Histories,
    RequestError,
    because_columns,
)
from book_recommender.topk import (
    BLOCK_USERS,
    TILE_CELLS,
    ItemTable,
    Workspace,
    concatenated_ranges,
)

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

    @cached_property
    def user_index(self) -> pd.Index:
        """The users' raw ids (a position is a ``users`` row)."""
        return pd.Index(self.users["user"])

    @cached_property
    def item_index(self) -> pd.Index:
        """The items' raw ids (a position is a table position)."""
        return pd.Index(self.items[self.columns["item_id"]])

    @cached_property
    def history(self) -> HistoryScorer:
        """Fold-in and the reason for each pick (``reader_history``)."""
        return HistoryScorer(self.table, self.weights, self.meta.get("fold_in"))

    def user_rows(self, raw_ids: list[str]) -> np.ndarray:
        """Row of each raw user id (text) in ``users``; -1 for ids the model
        never saw."""
        return self.user_index.get_indexer([i.strip() for i in raw_ids])

    def factor_rows(self, rows: np.ndarray) -> np.ndarray:
        """Row of ``user_factors`` of each ``users`` row; -1 for unknown users
        (row -1) and users without factors."""
        factor_rows = self.users["factor_row"].to_numpy(np.int64)
        return np.where(rows >= 0, factor_rows[np.clip(rows, 0, None)], -1)

    def item_positions(self, raw_ids: list[str]) -> np.ndarray:
        """Position of each raw item id (text) in the table; -1 for unknown ids."""
        return self.item_index.get_indexer([i.strip() for i in raw_ids])

    # ----------------------------------------------------------------------------
    # Ranking

    def top_k(self, *args: Any, **kwargs: Any) -> Iterator[pd.DataFrame]:
        """``ranked``'s blocks (same arguments) as frames."""
        for block in self.ranked(*args, **kwargs):
            yield pd.DataFrame(block)

    def ranked(
        self,
        rows: np.ndarray,
        k: int,
        tile_cells: int = TILE_CELLS,
        exclude_seen: bool = True,
        histories: Histories | None = None,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Top ``k`` unseen items of each request, in blocks of bounded memory
        (``tile_cells`` scores at once, see ``topk``).

        ``rows`` are ``users`` rows (-1: unknown user, ranked by the fallback
        with nothing seen). A request of ``histories`` is ranked from the books
        it sent instead (item-based: scored from them; factor model: factors
        folded in from them, ``HistoryScorer.fold_in``). Yields the columns of
        long frames: ``request`` (index into ``rows``), ``rank`` from 1,
        ``position`` in the table, ``score`` (clipped to the rating range for
        rating models, after ranking), ``cold_start``, ``because`` (the seen
        book the pick is due to, ``HistoryScorer.because_of``; -1: none, as for
        the fallback's). Seen items are left out unless ``exclude_seen`` is
        false (an item-based model still scores from them).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1; found {k}.")
        rows = np.asarray(rows, dtype=np.int64)
        n = len(rows)
        factor, fold, folded = self._reader_factors(rows, histories)
        workspace = Workspace.create(tile_cells)
        clip = self.meta["clip"]  # a rating model's scores are ratings
        for start in range(0, n, BLOCK_USERS):
            requests, warm = self._warm_first(
                np.arange(start, min(start + BLOCK_USERS, n)), factor, fold, folded
            )
            seen_rows, seen_cols = self._block_seen(rows, requests, histories)
            found, cols, rank, scores, cold = rank_users(
                self.table,
                self.weights,
                warm,
                len(requests),
                seen_rows,
                seen_cols,
                k,
                workspace,
                exclude_seen,
            )
            because = np.full(len(found), -1, np.int64)
            modelled = ~cold & np.isfinite(scores)
            because[modelled] = self.history.because_of(
                found[modelled], cols[modelled], seen_rows, seen_cols
            )
            if clip:
                scores = np.clip(scores, clip[0], clip[1])
            yield {
                "request": requests[found],
                RANK: (rank + 1).astype(np.int32),
                "position": cols,
                SCORE: scores,
                COLD_START: cold,
                BECAUSE: because,
            }

    def _reader_factors(
        self, rows: np.ndarray, histories: Histories | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per request, its row of ``user_factors`` and its row of the factors
        folded in from its history (-1: none), and those folded factors. A
        request with a history has no row of ``user_factors``."""
        factor = self.factor_rows(rows)
        fold = np.full(len(rows), -1, np.int64)
        folded = np.zeros((0, self.table.factors.shape[1]), np.float32)
        if histories is not None:
            factor[histories.uses] = -1  # the history counts, not the id
            if self.weights is None:
                folded, fold = self.history.fold_in(histories)
        return factor, fold, folded

    def _warm_first(
        self,
        requests: np.ndarray,
        factor: np.ndarray,
        fold: np.ndarray,
        folded: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``requests`` reordered with those with factors first (their scores
        are one contiguous product), and their factors."""
        model_row, fold = factor[requests], fold[requests]
        order = np.argsort((model_row < 0) & (fold < 0), kind="stable")
        requests, model_row, fold = requests[order], model_row[order], fold[order]
        n_warm = int(((model_row >= 0) | (fold >= 0)).sum())
        warm = np.empty((n_warm, self.table.factors.shape[1]), np.float32)
        mine = model_row[:n_warm] >= 0
        warm[mine] = self.user_factors[model_row[:n_warm][mine]]
        warm[~mine] = folded[fold[:n_warm][~mine]]
        return requests, warm

    def _block_seen(
        self, rows: np.ndarray, requests: np.ndarray, histories: Histories | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(block row, table position) of what each of ``requests`` has seen:
        the books the model saw of the user, or those of its history."""
        user = rows[requests]
        if histories is None:
            return self._seen(user)
        user = np.where(histories.uses[requests], -1, user)
        seen_rows, seen_cols = self._seen(user)
        local = np.full(len(rows), -1, np.int64)
        local[requests] = np.arange(len(requests))
        sent = local[histories.rows] >= 0
        history_rows = local[histories.rows[sent]]
        return (
            np.concatenate([seen_rows, history_rows]),
            np.concatenate([seen_cols, histories.positions[sent]]),
        )

    def _seen(self, user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(request row, table position) of every item the known users saw."""
        known = np.flatnonzero(user >= 0)
        starts = self.seen_indptr[user[known]]
        lengths = self.seen_indptr[user[known] + 1] - starts
        offsets = concatenated_ranges(starts, lengths)
        return np.repeat(known, lengths), self.seen_items[offsets]


class _BundleModel(mlflow.pyfunc.PythonModel):
    """A pyfunc model that answers from the ``Bundle`` logged as its artifact."""

    def load_context(self, context) -> None:
        self.bundle = Bundle.load(context.artifacts["bundle"])


class Recommender(_BundleModel):
    """Top-k unseen books for raw user ids, or for the history a request sends;
    popular books for unknown users and histories without a known book."""

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        bundle = self.bundle
        user = bundle.columns["user_id"]
        served_requests.require(model_input, [user])
        served_requests.within_rows(model_input, bundle.meta.get("max_rows"))
        ids = served_requests.ids(model_input, user)
        k = served_requests.k_values(
            model_input, int(bundle.meta["k"]), bundle.meta.get("max_k")
        )
        histories = served_requests.histories(model_input, bundle.item_index)
        described = bundle.meta["item_columns"]
        because = because_columns(bundle.meta)
        n = len(ids)
        if not n:
            lists = [*described, RANK, SCORE, *because.values()]
            return pd.DataFrame(
                {
                    user: [],
                    **{c: [] for c in lists},
                    COLD_START: [],
                    UNKNOWN_IN_HISTORY: [],
                }
            )
        rows = bundle.user_rows(ids)
        blocks = list(bundle.ranked(rows, int(k.max()), histories=histories))
        ranked = {c: np.concatenate([b[c] for b in blocks]) for c in blocks[0]}
        request = ranked["request"]
        order = np.lexsort((ranked[RANK], request))
        order = order[ranked[RANK][order] <= k[request[order]]]
        ranked = {c: values[order] for c, values in ranked.items()}
        request = ranked["request"]
        cuts = np.searchsorted(request, np.arange(n + 1))
        positions = ranked["position"]
        cold_pick = ranked[COLD_START]
        # A fallback's score is a popularity count, not the model's: none (null).
        scores = np.where(cold_pick, np.nan, ranked[SCORE].astype(np.float64))
        reason = ranked[BECAUSE]
        output = {user: ids}
        for name in described:
            output[name] = _split(bundle.items[name].to_numpy()[positions], cuts)
        output[RANK] = _split(ranked[RANK].astype(np.int64), cuts)
        output[SCORE] = _split(
            np.where(np.isnan(scores), None, scores.astype(object)), cuts
        )
        for name, column in because.items():
            values = bundle.items[name].to_numpy(dtype=object)[np.clip(reason, 0, None)]
            output[column] = _split(np.where(reason >= 0, values, None), cuts)
        # Cold: nothing the model scored, only the fallback.
        cold = np.ones(n, dtype=bool)
        cold[request[~cold_pick]] = False
        output[COLD_START] = cold
        output[UNKNOWN_IN_HISTORY] = (
            histories.unknown if histories is not None else np.zeros(n, np.int64)
        )
        return pd.DataFrame(output)


def _split(values: np.ndarray, cuts: np.ndarray) -> list[list[Any]]:
    """``values`` (sorted by request) as one list per request."""
    listed = values.tolist()
    return [listed[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


class RatingPredictor(_BundleModel):
    """Predicted ratings of raw (user, book) pairs, clipped to the rating range."""

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        bundle = self.bundle
        user, item = bundle.columns["user_id"], bundle.columns["item_id"]
        served_requests.require(model_input, [user, item])
        served_requests.within_rows(model_input, bundle.meta.get("max_rows"))
        users, items = (
            served_requests.ids(model_input, user),
            served_requests.ids(model_input, item),
        )
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
                user: users,
                item: items,
                PREDICTION: prediction,
                KNOWN: known,
            }
        )
