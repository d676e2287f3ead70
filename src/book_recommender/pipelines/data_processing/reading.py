"""Reading and validating the raw tables: each row kept or dropped for a
named reason, columns named by the ``columns`` parameters, shifted Books.csv
rows repaired, and errors that name the file, the column and the setting."""

from __future__ import annotations

import logging
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from book_recommender.errors import ProjectError
from book_recommender.params import (
    DataProcessingParams,
)
from book_recommender.spark_session import cached

logger = logging.getLogger(__name__)

PARAMS_FILE = "conf/base/parameters_data_processing.yml"
COLUMNS_FILE = "conf/base/parameters.yml"
_REASON = "_drop_reason"


class DataValidationError(ProjectError, ValueError):
    """Input data or configuration does not match what the pipeline needs."""


# --------------------------------------------------------------------------------------
# Configuration helpers


def column_name(columns: dict[str, str], key: str) -> str:
    """The configured name of a column, or an error naming its config key."""
    if key not in columns:
        raise DataValidationError(
            f"Missing config key 'columns.{key}' (see {COLUMNS_FILE})."
        )
    return columns[key]


def source_path(params: DataProcessingParams, file_key: str) -> str:
    return f"{params.data.folder}/{getattr(params.data, file_key)}"


def _require_columns(
    df: DataFrame,
    columns: dict[str, str],
    params: DataProcessingParams,
    file_key: str,
    column_keys: list[str],
) -> None:
    """Fails naming the file, the column and its config key if one is absent."""
    missing = [(key, column_name(columns, key)) for key in column_keys]
    missing = [(key, name) for key, name in missing if name not in df.columns]
    if missing:
        details = "; ".join(
            f"column '{name}' (config key columns.{key})" for key, name in missing
        )
        raise DataValidationError(
            f"{source_path(params, file_key)}: required {details} not found. "
            f"The file has the columns {df.columns}.{_header_hint(df.columns, missing)}"
            f" Fix the file's header or the column names in {COLUMNS_FILE}."
        )


_SEPARATORS = {";": "';'", "\t": "a tab", "|": "'|'"}


def _plain(name: str) -> str:
    return name.strip().strip("\"'").strip().casefold()


def _header_hint(found: list[str], missing: list[tuple[str, str]]) -> str:
    """Why the columns are likely missing: a header that is one column holding
    another separator (the original Book-Crossing dump uses ';'), or names
    that differ only in case or quotes."""
    if len(found) == 1:
        for separator, said in _SEPARATORS.items():
            if separator in found[0]:
                dump = (
                    " The original Book-Crossing dump (BX-*.csv) is read by "
                    "`kedro run --env bookcrossing_dump` (';', backslash escapes, "
                    "Latin-1)."
                    if separator == ";"
                    else ""
                )
                return (
                    f" The header is one column holding {said}: the file is likely "
                    f"separated by {said}, not commas.{dump} Otherwise set "
                    f"data.csv.sep: '{separator}' (and data.csv.escape, "
                    "data.csv.encoding) in conf/<env>/globals.yml."
                )
    plain = {_plain(name): name for name in found}
    near = [(name, plain[_plain(name)]) for _, name in missing if _plain(name) in plain]
    if near:
        pairs = ", ".join(f"'{have}' for '{want}'" for want, have in near)
        return (
            f" The file has {pairs}: column names must match exactly (case and "
            "quotes count)."
        )
    return ""


def _blank(column: Column) -> Column:
    return column.isNull() | (column == "")


def _text_flags(df: DataFrame) -> dict[str, Column]:
    """Row flags for text that is read but suspicious, over every string column.

    A line break inside a (quoted) field, and U+FFFD, which the reader puts where
    bytes are not valid in the file's encoding (latin-1 text read as UTF-8).
    """
    text = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string"]

    def any_of(*characters: str) -> Column:
        # A substring test per cell, not a regular expression.
        hits = [
            F.coalesce(F.col(c).contains(character), F.lit(False))
            for c in text
            for character in characters
        ]
        return reduce(lambda a, b: a | b, hits, F.lit(False))

    return {
        "line_breaks_in_a_field": any_of("\r", "\n"),
        "undecodable_bytes": any_of("\ufffd"),
    }


def _count_reasons(
    df: DataFrame, flags: dict[str, Column] | None = None
) -> dict[str, Any]:
    """Rows per drop reason in one pass; ``None`` (kept) is counted as ``kept``.

    ``flags`` are counted over all rows read (kept or not) as ``rows_with``.
    """
    flags = flags or {}
    aggregates = [F.count(F.lit(1)).alias("count")] + [
        F.sum(flag.cast("int")).alias(name) for name, flag in flags.items()
    ]
    rows = df.groupBy(_REASON).agg(*aggregates).collect()
    counts = {row[_REASON]: row["count"] for row in rows}
    report: dict[str, Any] = {"kept": int(counts.pop(None, 0))}
    report["dropped"] = {str(k): int(v) for k, v in sorted(counts.items())}
    report["read"] = report["kept"] + sum(report["dropped"].values())
    if flags:
        report["rows_with"] = {
            name: int(sum(row[name] or 0 for row in rows)) for name in flags
        }
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


def _mark_duplicate_pairs(
    checked: DataFrame, user: str, item: str, explicit: F.Column
) -> DataFrame:
    """Of several valid rows for one (user, item) pair, all but one marked
    ``duplicate_pair``: an explicit rating kept over an implicit one, then the
    last in the file."""
    valid = F.col(_REASON).isNull()
    # The window reshuffles the rows, and with them the seeded split downstream:
    # only data that has duplicate pairs pays for it.
    duplicated = (
        checked.filter(valid).groupBy(user, item).count().filter("count > 1").limit(1)
    )
    if not duplicated.count():
        return checked
    pair = Window.partitionBy(user, item, valid).orderBy(
        explicit.desc(), F.col("_order").desc()
    )
    return checked.withColumn(
        _REASON,
        F.when(valid & (F.row_number().over(pair) > 1), "duplicate_pair").otherwise(
            F.col(_REASON)
        ),
    )


def validate_ratings(
    raw_ratings: DataFrame,
    columns: dict[str, str],
    params: DataProcessingParams,
    raw_files: dict[str, Any] | None = None,
) -> tuple[DataFrame, dict[str, Any]]:
    """Keeps the ratings rows that parse; counts the others by reason.

    A row is dropped when its user id or item id is empty, its rating is not a
    number (or not a whole number, with ``ratings.integer``), or the rating lies
    outside ``ratings.min``..``ratings.max``. Of several valid rows for one
    (user, item) pair one is kept: an explicit rating over an implicit one, then
    the last in the file; the others count as ``duplicate_pair``. Ids are
    trimmed text; the rating becomes a double.
    """
    _require_columns(
        raw_ratings, columns, params, "ratings_file", ["user_id", "item_id", "rating"]
    )
    user, item, rating = (
        column_name(columns, k) for k in ("user_id", "item_id", "rating")
    )
    low, high, whole = params.ratings.min, params.ratings.max, params.ratings.integer
    value = F.trim(F.col(rating)).try_cast("double")
    checked = (
        cached(raw_ratings)
        .select(
            F.trim(F.col(user)).alias(user),
            F.trim(F.col(item)).alias(item),
            value.alias(rating),
            F.monotonically_increasing_id().alias("_order"),
        )
        .withColumn(
            _REASON,
            F.when(_blank(F.col(user)), "missing_user_id")
            .when(_blank(F.col(item)), "missing_item_id")
            .when(F.col(rating).isNull() | F.isnan(rating), "rating_not_numeric")
            .when(
                F.lit(whole) & (F.col(rating) != F.floor(rating)), "rating_not_integer"
            )
            .when(
                (F.col(rating) < low) | (F.col(rating) > high), "rating_out_of_range"
            ),
        )
    )
    implicit_value = params.ratings.implicit_value
    explicit = (
        F.lit(True)
        if implicit_value is None
        else F.col(rating) != float(implicit_value)
    )
    # Cached: counted here, then read by the merge and the join-loss counts.
    checked = cached(_mark_duplicate_pairs(checked.cache(), user, item, explicit))
    report = _with_file(_count_reasons(checked), raw_files, "ratings_file")
    _log_drops(source_path(params, "ratings_file"), report)
    return checked.filter(F.col(_REASON).isNull()).drop(_REASON, "_order"), report


def _validate_entities(
    raw: DataFrame,
    columns: dict[str, str],
    params: DataProcessingParams,
    *,
    file_key: str,
    id_key: str,
    required: list[str],
    raw_files: dict[str, Any] | None = None,
    flags: dict[str, Column] | None = None,
) -> tuple[DataFrame, dict[str, Any]]:
    """Drops rows without an id and all but one row per id; counts both.

    Also counts, among the rows read, those with suspicious text and those
    matching ``flags`` (row-level conditions, by name).
    """
    _require_columns(raw, columns, params, file_key, required)
    key = column_name(columns, id_key)
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
    checked = checked.cache()  # counted here, then indexed and written
    report = _with_file(
        _count_reasons(checked, {**_text_flags(raw), **(flags or {})}),
        raw_files,
        file_key,
    )
    _log_drops(source_path(params, file_key), report)
    return checked.filter(F.col(_REASON).isNull()).drop(_REASON), report


def _with_file(
    report: dict[str, Any], raw_files: dict[str, Any] | None, file_key: str
) -> dict[str, Any]:
    """The report, with the size and digest of the file it was read from."""
    if raw_files and file_key in raw_files:
        report["file"] = raw_files[file_key]
    return report


def validate_users(
    raw_users: DataFrame,
    columns: dict[str, str],
    params: DataProcessingParams,
    raw_files: dict[str, Any] | None = None,
) -> tuple[DataFrame, dict[str, Any]]:
    """Users with an id, one row per id; the age column (if any) parsed to double.

    An age that is not a number becomes null (users keep their ratings); ages
    outside ``users.age_range`` are kept as they are and counted
    (``rows_with.age_out_of_range``).
    """
    age = columns.get("user_age")
    flags: dict[str, Column] = {}
    age_range = params.users.age_range
    if age and age in raw_users.columns and age_range:
        parsed = F.trim(F.col(age)).try_cast("double")
        flags["age_out_of_range"] = F.coalesce(
            (parsed < age_range[0]) | (parsed > age_range[1]), F.lit(False)
        )
    users, report = _validate_entities(
        cached(raw_users),  # the file as read: the raw summary shares it
        columns,
        params,
        file_key="users_file",
        id_key="user_id",
        required=["user_id"],
        raw_files=raw_files,
        flags=flags,
    )
    if age and age in users.columns:
        users = users.withColumn(age, F.trim(F.col(age)).try_cast("double"))
    return users, report


def validate_items(
    raw_items: DataFrame,
    columns: dict[str, str],
    params: DataProcessingParams,
    raw_files: dict[str, Any] | None = None,
) -> tuple[DataFrame, dict[str, Any]]:
    """Items with an id and an info (title) column, one row per id.

    With ``columns.item_year`` set, the year becomes an integer (null when it is
    not one, counted as ``invalid_year``). Rows whose columns shifted one place
    left (see ``repair_shifted_items``) are put back and counted as
    ``shifted_columns_repaired``.
    """
    year = columns.get("item_year")
    flags: dict[str, Column] = {}
    raw_items = cached(raw_items)  # the file as read: the raw summary shares it
    if year and year in raw_items.columns:
        raw_items = repair_shifted_items(raw_items, columns)
        value = F.trim(F.col(year))
        flags = {
            "shifted_columns_repaired": F.col(_REPAIRED),
            "invalid_year": value.isNotNull()
            & (value != "")
            & value.try_cast("int").isNull(),
        }
    items, report = _validate_entities(
        raw_items,
        columns,
        params,
        file_key="items_file",
        id_key="item_id",
        required=["item_id", "item_info"],
        raw_files=raw_files,
        flags=flags,
    )
    if flags:
        items = items.withColumn(year, F.trim(F.col(year)).try_cast("int"))
    return items.drop(_REPAIRED), report


_REPAIRED = "_shifted_columns_repaired"


def repair_shifted_items(raw_items: DataFrame, columns: dict[str, str]) -> DataFrame:
    """Puts back rows whose author was swallowed by the title.

    Book-Crossing has rows whose title field reads ``DK Readers: ... Readers)\\";
    James Buckley"`` followed by ``2000,DK Publishing Inc,http://...``: the year
    sits in the author column, the publisher in the year column, and every later
    column one place left (the last is empty). Such a row (year not a number,
    author a number, title holding ``";``) is shifted back: author from the
    title, then each column from its left-hand neighbour. The boolean column
    ``_REPAIRED`` marks the repaired rows.
    """
    title, author, year = (
        columns.get("item_info"),
        columns.get("item_author"),
        columns.get("item_year"),
    )
    names = raw_items.columns
    if not (title in names and author in names and year in names):
        return raw_items.withColumn(_REPAIRED, F.lit(False))
    shifted = (
        F.trim(F.col(year)).try_cast("int").isNull()
        & F.trim(F.col(author)).rlike("^[0-9]{1,4}$")
        & F.col(title).contains('";')
    )
    parts = F.split(F.col(title), '\\\\?";', 2)
    clean = F.regexp_replace(parts.getItem(1), '[\\\\"]+$', "")
    fixed = {
        title: F.trim(F.regexp_replace(parts.getItem(0), "\\\\$", "")),
        author: F.trim(clean),
    }
    later = names[names.index(author) :]
    for column, previous in zip(later[1:], later[:-1], strict=True):
        fixed[column] = F.col(previous)
    return raw_items.select(
        *[
            F.when(shifted, fixed[c]).otherwise(F.col(c)).alias(c)
            if c in fixed
            else F.col(c)
            for c in names
        ],
        shifted.alias(_REPAIRED),
    )
