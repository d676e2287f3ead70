"""From a fitted champion to the files its served model answers from.

``export_bundle`` collects what ``serving`` needs from Spark (factors, raw ids,
seen books, titles, popularity); ``tracking.register_champion`` logs it as a
``pyfunc`` model and registers it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import scipy
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.models import RecommenderModel, popularity_scores
from book_recommender.models.records import Champion, TestResult
from book_recommender.ranking import fallback_arrays, item_table
from book_recommender.serving import (
    Bundle,
)
from book_recommender.topk import ItemTable

# What a served model imports: serving.py, topk.py and item_topk.py (shipped as
# code) need no more.
SERVING_REQUIREMENTS = [
    f"mlflow=={mlflow.__version__}",
    f"numpy=={np.__version__}",
    f"pandas=={pd.__version__}",
    f"scipy=={scipy.__version__}",
    "pyarrow",
]


def item_columns(columns: dict[str, Any]) -> list[str]:
    """The raw item id, then the columns that describe an item (title, author)."""
    return [
        c
        for c in (columns["item_id"], columns["item_info"], columns.get("item_author"))
        if c
    ]


def _user_factors(
    model: RecommenderModel, users: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """The factor row of each of ``users`` (-1 without) and those rows."""
    factors = model.user_factors().toPandas()
    found = pd.Index(factors["id"]).get_indexer(users["user_idx"])
    rows = np.full(len(users), -1, dtype=np.int64)
    rows[found >= 0] = np.arange(int((found >= 0).sum()))
    if not (found >= 0).any():
        return rows, np.zeros((0, model.rank), dtype=np.float32)
    matrix = np.stack(factors["features"].to_numpy()[found[found >= 0]])
    return rows, matrix.astype(np.float32)


def _seen_lists(
    seen: pd.DataFrame, users: pd.DataFrame, table: ItemTable
) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, item positions in ``table``) of the books each user saw."""
    rows = np.searchsorted(users["user_idx"].to_numpy(), seen[USER_IDX].to_numpy())
    positions, _ = table.positions(seen[ITEM_IDX].to_numpy())
    order = np.lexsort((positions, rows))
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(users)), out=indptr[1:])
    return indptr, positions[order].astype(np.int64)


@dataclass(frozen=True)
class RunTables:
    """What every champion's bundle takes from the run's data, on the driver:
    collected once for both champions."""

    popularity: tuple[np.ndarray, np.ndarray]  # (item ids, interaction counts)
    items: pd.DataFrame  # the described columns, indexed by ITEM_IDX
    users: pd.DataFrame  # user_idx and the raw id ("user") of every user
    seen: pd.DataFrame  # the distinct (USER_IDX, ITEM_IDX) interactions


def collect_run_tables(
    interactions: DataFrame,
    indexed_users: DataFrame,
    indexed_items: DataFrame,
    columns: dict[str, Any],
) -> RunTables:
    """Users are those with an interaction (the ones scoring ranks); the books
    they interacted with are "seen" and ranked by their interaction count for
    the popular fallback, as in evaluation."""
    items = (
        indexed_items.select(
            ITEM_IDX, *[F.col(c).cast("string") for c in item_columns(columns)]
        )
        .toPandas()
        .set_index(ITEM_IDX)
    )
    raw_ids = indexed_users.select(
        USER_IDX, F.col(columns["user_id"]).cast("string").alias("user")
    )
    users = (
        interactions.select(USER_IDX)
        .distinct()
        .join(raw_ids, on=USER_IDX)
        .toPandas()
        .rename(columns={USER_IDX: "user_idx"})
        .sort_values("user_idx", ignore_index=True)
    )
    return RunTables(
        popularity=fallback_arrays(popularity_scores(interactions)),
        items=items,
        users=users,
        seen=interactions.select(USER_IDX, ITEM_IDX).distinct().toPandas(),
    )


def export_bundle(
    model: RecommenderModel,
    interactions: DataFrame,
    indexed_users: DataFrame,
    indexed_items: DataFrame,
    columns: dict[str, Any],
    k: int,
    tables: RunTables | None = None,
) -> Bundle:
    """Everything the served model needs, collected to the driver (``tables``:
    the run's part of it, when already collected for another champion)."""
    if tables is None:
        tables = collect_run_tables(interactions, indexed_users, indexed_items, columns)
    table = item_table(model, tables.popularity)
    described = item_columns(columns)
    items = tables.items.reindex(table.ids).rename_axis("item_idx").reset_index()
    users = tables.users.copy()  # factor rows are the model's
    if model.item_weights() is None:
        users["factor_row"], user_factors = _user_factors(model, users)
        weights, rank = None, int(model.rank)
    else:  # item-based: a user is the books they have seen
        users["factor_row"] = -1
        user_factors = np.zeros((0, 0), dtype=np.float32)
        weights, rank = model.item_weights().on(table), 0
    indptr, seen_items = _seen_lists(tables.seen, users, table)
    return Bundle(
        users=users,
        user_factors=user_factors,
        items=items,
        table=table,
        seen_indptr=indptr,
        seen_items=seen_items,
        weights=weights,
        meta={
            "columns": {"user_id": columns["user_id"], "item_id": columns["item_id"]},
            "item_columns": described,
            "k": int(k),
            "clip": list(model.clip) if model.clip else None,
            "rank": rank,
            "fold_in": model.fold_in,
        },
    )


def version_description(
    champion: Champion,
    n_candidates: int,
    candidate_metrics: list[TestResult],
    data_statistics: dict[str, Any],
    columns: dict[str, Any],
    k: int,
) -> str:
    """What the version is, what it beat and on which data, for the registry."""
    metric = champion.metric
    test = {m.name: m.metrics for m in candidate_metrics}
    mine, theirs = champion.test_metrics[metric], test[champion.baseline][metric]
    data = data_statistics["model_input"]
    params = ", ".join(
        f"{key} {value:g}" if not isinstance(value, str) else f"{key} {value}"
        for key, value in champion.candidate.hyperparameters.items()
    )
    what = what_it_serves(champion.role, columns, k)
    without = champion.without_side_information
    side = (
        f" The best candidate without side information, {without.name}: "
        f"{without.test_metrics[metric]:.4f}."
        if without
        else ""
    )
    return (
        f"{champion.role.capitalize()} champion {champion.name} "
        f"({champion.kind}{', ' + params if params else ''}), picked on "
        f"{champion.selected_by} among {n_candidates} candidates. "
        f"On test it {champion.verdict} {champion.baseline}: {metric} {mine:.4f} vs "
        f"{theirs:.4f}.{side} Data: {data['users']:,} users x {data['items']:,} items, "
        f"{data['interactions']:,} interactions. {what}"
    )


def what_it_serves(role: str, columns: dict[str, Any], k: int) -> str:
    """What a served model of the role answers, for the registry's texts."""
    if role == "recommender":
        return (
            f"Top-{k} unseen books for a raw '{columns['user_id']}' (column 'k' "
            "optional), or for the ISBNs of a row's 'history' (a list; 'ratings' "
            "optional), which then counts instead of the id; each book names the "
            "history book it is 'because' of. Unknown users and histories without "
            "a known book get the most popular books, flagged cold_start."
        )
    return (
        f"Ratings of raw ('{columns['user_id']}', '{columns['item_id']}') pairs, "
        "clipped to the rating range; pairs without factors come back known=false."
    )


def model_description(role: str, columns: dict[str, Any], k: int) -> str:
    """What every version of the role's registered model does."""
    served = (
        "Alias 'champion' is the one scoring serves." if role == "recommender" else ""
    )
    return f"The {role} champions. {what_it_serves(role, columns, k)} {served}".strip()


def run_description(
    champions: dict[str, Champion], registered: dict[str, dict[str, Any]]
) -> str:
    """The parent run's description (Markdown, the UI's Overview): each
    champion against its baseline on test, where it was registered, and
    where to look next."""
    lines = [
        "**Champions of this run** (each picked on validation, judged on test):",
        "",
    ]
    for role, champion in champions.items():
        metric = champion.metric
        entry = registered[role]
        lines.append(
            f"- {role}: `{champion.name}` ({champion.kind}), test {metric} "
            f"{champion.test_metrics[metric]:.4f}; it {champion.verdict} {champion.baseline} "
            f"({champion.baseline_test_metrics[metric]:.4f}). Registered as "
            f"`{entry['model_name']}` version {entry['version']}."
        )
    lines += [
        "",
        "Every candidate is a nested run (the champions' carry the tag "
        "`champion`); `candidates.json` (Artifacts) is "
        "the table of them all, with the `test.*` metrics of this run's. "
        "Figures: Artifacts > reporting, after the reporting pipeline.",
    ]
    return "\n".join(lines)
