"""Nodes of the data_processing pipeline: the tutorial's data preparation.

Input columns are named by the ``columns`` parameters, so any user-item-rating
data set fits; the columns the pipeline adds are in ``book_recommender.columns``.
"""

from __future__ import annotations

import logging
from typing import Any

from pyspark.ml.feature import StringIndexer
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from book_recommender.columns import ITEM_IDX, ROW_ID, USER_IDX

logger = logging.getLogger(__name__)

PARAMS_FILE = "conf/base/parameters_data_processing.yml"
COLUMNS_FILE = "conf/base/parameters.yml"
_REASON = "_drop_reason"


class DataValidationError(ValueError):
    """Input data or configuration does not match what the pipeline needs."""


# --------------------------------------------------------------------------------------
# Configuration helpers


def _lookup(
    params: dict[str, Any], keys: tuple[str, ...], group: str, where: str
) -> Any:
    value: Any = params
    for depth, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            dotted = ".".join((group, *keys[: depth + 1]))
            raise DataValidationError(f"Missing config key '{dotted}' (see {where}).")
        value = value[key]
    return value


def _setting(params: dict[str, Any], *keys: str) -> Any:
    """``params[k1][k2]...`` of the data_processing group, or a clear error."""
    return _lookup(params, keys, "data_processing", PARAMS_FILE)


def _column(columns: dict[str, str], key: str) -> str:
    """The configured name of a column, or an error naming its config key."""
    return _lookup(columns, (key,), "columns", COLUMNS_FILE)


def _source(params: dict[str, Any], file_key: str) -> str:
    return f"{_setting(params, 'data', 'folder')}/{_setting(params, 'data', file_key)}"


def _require_columns(
    df: DataFrame,
    columns: dict[str, str],
    params: dict[str, Any],
    file_key: str,
    column_keys: list[str],
) -> None:
    """Fails naming the file, the column and its config key if one is absent."""
    missing = [(key, _column(columns, key)) for key in column_keys]
    missing = [(key, name) for key, name in missing if name not in df.columns]
    if missing:
        details = "; ".join(
            f"column '{name}' (config key columns.{key})" for key, name in missing
        )
        raise DataValidationError(
            f"{_source(params, file_key)}: required {details} not found. "
            f"The file has the columns {df.columns}. Fix the file's header or the "
            f"column names in {COLUMNS_FILE}."
        )


def _blank(column: Column) -> Column:
    return column.isNull() | (column == "")


def _count_reasons(df: DataFrame) -> dict[str, int]:
    """Rows per drop reason in one pass; ``None`` (kept) is counted as ``kept``."""
    counts = {
        row[_REASON]: row["count"] for row in df.groupBy(_REASON).count().collect()
    }
    report = {"kept": int(counts.pop(None, 0))}
    report["dropped"] = {str(k): int(v) for k, v in sorted(counts.items())}
    report["read"] = report["kept"] + sum(report["dropped"].values())
    return report


def _log_drops(table: str, report: dict[str, Any]) -> None:
    if report["dropped"]:
        logger.warning(
            "%s: dropped %s of %s rows: %s",
            table,
            sum(report["dropped"].values()),
            report["read"],
            report["dropped"],
        )


# --------------------------------------------------------------------------------------
# Validation


def validate_ratings(
    raw_ratings: DataFrame, columns: dict[str, str], params: dict[str, Any]
) -> tuple[DataFrame, dict[str, Any]]:
    """Keeps the ratings rows that parse; counts the others by reason.

    A row is dropped when its user id or item id is empty, its rating is not a
    number, or the rating lies outside ``ratings.min``..``ratings.max``. Ids are
    trimmed text; the rating becomes a double.
    """
    _require_columns(
        raw_ratings, columns, params, "ratings_file", ["user_id", "item_id", "rating"]
    )
    user, item, rating = (_column(columns, k) for k in ("user_id", "item_id", "rating"))
    low, high = _setting(params, "ratings", "min"), _setting(params, "ratings", "max")
    value = F.trim(F.col(rating)).try_cast("double")
    checked = raw_ratings.select(
        F.trim(F.col(user)).alias(user),
        F.trim(F.col(item)).alias(item),
        value.alias(rating),
    ).withColumn(
        _REASON,
        F.when(_blank(F.col(user)), "missing_user_id")
        .when(_blank(F.col(item)), "missing_item_id")
        .when(F.col(rating).isNull() | F.isnan(rating), "rating_not_numeric")
        .when((F.col(rating) < low) | (F.col(rating) > high), "rating_out_of_range"),
    )
    report = _count_reasons(checked)
    _log_drops(_source(params, "ratings_file"), report)
    return checked.filter(F.col(_REASON).isNull()).drop(_REASON), report


def _validate_entities(
    raw: DataFrame,
    columns: dict[str, str],
    params: dict[str, Any],
    *,
    file_key: str,
    id_key: str,
    required: list[str],
) -> tuple[DataFrame, dict[str, Any]]:
    """Drops rows without an id and all but one row per id; counts both."""
    _require_columns(raw, columns, params, file_key, required)
    key = _column(columns, id_key)
    trimmed = raw.withColumn(key, F.trim(F.col(key)))
    # Which row of a duplicated id survives is fixed by the file order.
    order = F.monotonically_increasing_id()
    ranked = trimmed.withColumn("_order", order).withColumn(
        "_first", F.min("_order").over(Window.partitionBy(key))
    )
    checked = ranked.withColumn(
        _REASON,
        F.when(_blank(F.col(key)), f"missing_{id_key}").when(
            F.col("_order") != F.col("_first"), f"duplicate_{id_key}"
        ),
    ).drop("_order", "_first")
    report = _count_reasons(checked)
    _log_drops(_source(params, file_key), report)
    return checked.filter(F.col(_REASON).isNull()).drop(_REASON), report


def validate_users(
    raw_users: DataFrame, columns: dict[str, str], params: dict[str, Any]
) -> tuple[DataFrame, dict[str, Any]]:
    """Users with an id, one row per id; the age column (if any) parsed to double.

    An age that is not a number becomes null (users keep their ratings); absurd
    ages are kept as they are and counted in the statistics.
    """
    users, report = _validate_entities(
        raw_users,
        columns,
        params,
        file_key="users_file",
        id_key="user_id",
        required=["user_id"],
    )
    age = columns.get("user_age")
    if age and age in users.columns:
        users = users.withColumn(age, F.trim(F.col(age)).try_cast("double"))
    return users, report


def validate_items(
    raw_items: DataFrame, columns: dict[str, str], params: dict[str, Any]
) -> tuple[DataFrame, dict[str, Any]]:
    """Items with an id and an info (title) column, one row per id."""
    return _validate_entities(
        raw_items,
        columns,
        params,
        file_key="items_file",
        id_key="item_id",
        required=["item_id", "item_info"],
    )


# --------------------------------------------------------------------------------------
# Indexing and merging


def _index(df: DataFrame, input_col: str, output_col: str) -> DataFrame:
    """Adds a dense integer index (0..n-1, most frequent value first)."""
    indexer = StringIndexer(
        inputCol=input_col, outputCol=output_col, handleInvalid="skip"
    ).fit(df)
    return indexer.transform(df).withColumn(output_col, F.col(output_col).cast("int"))


def index_users(users: DataFrame, columns: dict[str, str]) -> DataFrame:
    """The users table with ``_user_id``, the mapping back to the user id column."""
    return _index(users, _column(columns, "user_id"), USER_IDX)


def index_items(items: DataFrame, columns: dict[str, str]) -> DataFrame:
    """The items table with ``_item_id``, the mapping back to the item id column."""
    return _index(items, _column(columns, "item_id"), ITEM_IDX)


def merge_ratings(
    ratings: DataFrame,
    indexed_users: DataFrame,
    indexed_items: DataFrame,
    columns: dict[str, str],
) -> DataFrame:
    """Ratings joined (inner) to known users and items, with a row ``id``.

    Ratings of users missing from the users table or of items missing from the
    items table are left out, as in the tutorial; the statistics count them.
    """
    user, item, rating = (_column(columns, k) for k in ("user_id", "item_id", "rating"))
    return (
        ratings.join(indexed_users.select(user, USER_IDX), on=user, how="inner")
        .join(indexed_items.select(item, ITEM_IDX), on=item, how="inner")
        .select(USER_IDX, ITEM_IDX, rating, user, item)
        .withColumn(ROW_ID, F.monotonically_increasing_id())
    )


def prepare_model_input(
    merged_ratings: DataFrame, columns: dict[str, str], params: dict[str, Any]
) -> DataFrame:
    """Optional sample of the first ``sample_rows`` rows by ``_user_id``; rating as float.

    Sorting by user before the limit keeps whole users together (as the tutorial
    explains), so a sample still has users with several ratings to learn from.
    """
    rating = _column(columns, "rating")
    preparation = _setting(params, "preparation")
    df = merged_ratings
    if preparation.get("is_sample", False):
        rows = int(_setting(params, "preparation", "sample_rows"))
        if rows < 1:
            raise DataValidationError(
                f"data_processing.preparation.sample_rows must be a positive number "
                f"when data_processing.preparation.is_sample is true; found {rows} ({PARAMS_FILE})."
            )
        df = df.orderBy(USER_IDX, ITEM_IDX).limit(rows)
    return df.withColumn(rating, F.col(rating).cast("float"))


def split_ratings(
    model_input_ratings: DataFrame, columns: dict[str, str], params: dict[str, Any]
) -> tuple[DataFrame, DataFrame]:
    """Train/test split stratified by rating value, implicit ratings left out.

    Train holds about ``train_fraction`` of the rows of each explicit rating value
    (``sampleBy``, seeded); test holds the other explicit rows (anti-join on ``id``).
    """
    rating = _column(columns, "rating")
    fraction = float(_setting(params, "preparation", "train_fraction"))
    seed = int(_setting(params, "preparation", "seed"))
    if not 0.0 < fraction < 1.0:
        raise DataValidationError(
            f"data_processing.preparation.train_fraction must lie strictly between 0 and 1; "
            f"found {fraction} ({PARAMS_FILE})."
        )
    explicit = model_input_ratings
    implicit_value = params.get("ratings", {}).get("implicit_value")
    if implicit_value is not None:
        explicit = explicit.filter(F.col(rating) != float(implicit_value))
    values = [row[0] for row in explicit.select(rating).distinct().collect()]
    train = explicit.sampleBy(
        rating, fractions=dict.fromkeys(values, fraction), seed=seed
    )
    test = explicit.join(train.select(ROW_ID), on=ROW_ID, how="left_anti")
    return train, test


# --------------------------------------------------------------------------------------
# Statistics


def _rating_key(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def count_join_losses(
    validated_ratings: DataFrame,
    indexed_users: DataFrame,
    indexed_items: DataFrame,
    columns: dict[str, str],
) -> dict[str, int]:
    """Valid ratings the inner joins leave out: unknown user, unknown item."""
    user, item = _column(columns, "user_id"), _column(columns, "item_id")
    return {
        "ratings_validated": validated_ratings.count(),
        "ratings_with_unknown_user": validated_ratings.join(
            indexed_users.select(user), on=user, how="left_anti"
        ).count(),
        "ratings_with_unknown_item": validated_ratings.join(
            indexed_items.select(item), on=item, how="left_anti"
        ).count(),
    }


def compute_statistics(
    ratings_report: dict[str, Any],
    users_report: dict[str, Any],
    items_report: dict[str, Any],
    joins_report: dict[str, int],
    model_input_ratings: DataFrame,
    train_ratings: DataFrame,
    test_ratings: DataFrame,
    columns: dict[str, str],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Sizes, sparsity, id ranges, ratings per value and rows dropped per reason."""
    rating = _column(columns, "rating")
    model_input = model_input_ratings.agg(
        F.count(F.lit(1)).alias("interactions"),
        F.countDistinct(USER_IDX).alias("users"),
        F.countDistinct(ITEM_IDX).alias("items"),
        F.max(USER_IDX).alias("max_user_id"),
        F.max(ITEM_IDX).alias("max_item_id"),
    ).first()
    per_value = {
        _rating_key(row[rating]): int(row["count"])
        for row in model_input_ratings.groupBy(rating).count().orderBy(rating).collect()
    }
    implicit_value = params.get("ratings", {}).get("implicit_value")
    implicit_key = None if implicit_value is None else _rating_key(implicit_value)
    explicit_per_value = {k: v for k, v in per_value.items() if k != implicit_key}
    implicit = per_value.get(implicit_key, 0)
    interactions = int(model_input["interactions"])
    users, items = int(model_input["users"]), int(model_input["items"])
    train_per_value = {
        _rating_key(row[rating]): int(row["count"])
        for row in train_ratings.groupBy(rating).count().collect()
    }
    n_train, n_test = train_ratings.count(), test_ratings.count()
    stats = {
        "source": {
            "ratings": _source(params, "ratings_file"),
            "users": _source(params, "users_file"),
            "items": _source(params, "items_file"),
        },
        "rows": {
            "ratings": ratings_report,
            "users": users_report,
            "items": items_report,
        },
        "joins": joins_report,
        "sample": {
            "is_sample": bool(params.get("preparation", {}).get("is_sample", False)),
            "sample_rows": params.get("preparation", {}).get("sample_rows"),
        },
        "model_input": {
            "interactions": interactions,
            "explicit_interactions": interactions - implicit,
            "implicit_interactions": implicit,
            "users": users,
            "items": items,
            "sparsity": 1.0 - interactions / (users * items)
            if users and items
            else None,
            "max_user_id": model_input["max_user_id"],
            "max_item_id": model_input["max_item_id"],
            "rating_values": sorted(per_value, key=float),
            "ratings_per_value": per_value,
        },
        "split": {
            "train_rows": n_train,
            "test_rows": n_test,
            "train_fraction_asked": float(params["preparation"]["train_fraction"]),
            "train_share_per_value": {
                key: round(train_per_value.get(key, 0) / count, 4)
                for key, count in explicit_per_value.items()
            },
        },
    }
    logger.info(
        "Model input: %s users, %s items, %s interactions (sparsity %.5f); "
        "train %s rows, test %s rows",
        users,
        items,
        interactions,
        stats["model_input"]["sparsity"] or 0.0,
        n_train,
        n_test,
    )
    return stats
