"""Nodes of the data_processing pipeline: the tutorial's data preparation.

Input columns are named by the ``columns`` parameters, so any user-item-rating
data set fits; the columns the pipeline adds are in ``book_recommender.columns``.
"""

from __future__ import annotations

import logging
from functools import reduce
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from book_recommender.columns import ITEM_IDX, ROW_ID, USER_IDX
from book_recommender.download import (
    DownloadError,
    Expected,
    download_file,
    file_digest,
)
from book_recommender.errors import ProjectError
from book_recommender.models.items import SIDE, side_information
from book_recommender.params import (
    DataProcessingParams,
    Download,
    EvaluationParams,
    FileCheck,
    ItemBasedParams,
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


def _column(columns: dict[str, str], key: str) -> str:
    """The configured name of a column, or an error naming its config key."""
    if key not in columns:
        raise DataValidationError(
            f"Missing config key 'columns.{key}' (see {COLUMNS_FILE})."
        )
    return columns[key]


def _source(params: DataProcessingParams, file_key: str) -> str:
    return f"{params.data.folder}/{getattr(params.data, file_key)}"


def _require_columns(
    df: DataFrame,
    columns: dict[str, str],
    params: DataProcessingParams,
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
                return (
                    f" The header is one column holding {said}: the file is likely "
                    f"separated by {said}, not commas. Convert it to commas, or read "
                    f"it with load_args sep: '{separator}' in the catalog "
                    "(conf/<env>/catalog.yml, the raw_* datasets)."
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
# Raw files

_FILES = {
    "items_file": ["item_id", "item_info"],
    "ratings_file": ["user_id", "item_id", "rating"],
    "users_file": ["user_id"],
}


def _fetch(
    key: str,
    source: str,
    files: dict[str, Path],
    columns: dict[str, str],
    download: Download,
    folder: str,
) -> dict[str, Any]:
    """``download_file`` of one input file, checked against what it must be."""
    name = files[key].name
    check = download.expected.get(name, FileCheck())
    spec = Expected(
        header=[_column(columns, c) for c in _FILES[key]],
        size=check.size,
        sha256=check.sha256,
        min_bytes=download.min_bytes,
        max_bytes=download.max_bytes,
    )
    try:
        return download_file(
            source,
            files[key],
            spec,
            timeout=download.timeout_seconds,
            retries=download.retries,
            backoff=download.backoff_seconds,
            allowed_hosts=download.allowed_redirect_hosts,
        )
    except DownloadError as error:
        kept = "The existing file was left as it was. " if files[key].exists() else ""
        raise DownloadError(
            f"{error}. {kept}Without network access to {download.remote_url}, "
            f"download {', '.join(p.name for p in files.values())} elsewhere and "
            f"put them in {folder}/ by hand; the run then uses them as they are."
        ) from error


def fetch_raw_data(
    columns: dict[str, str], params: DataProcessingParams
) -> dict[str, Any]:
    """The three input files: downloaded if absent (or asked to), then described.

    With ``download.remote_url`` set, a file missing from ``data.folder`` is
    fetched from ``<remote_url>/<file name>`` (``download.overwrite: true``
    fetches them all again); see ``book_recommender.download`` for the checks
    that keep a bad download from replacing a good file. Returns, per file key,
    the local path, size and SHA-256, which the validation reports carry.
    Folders on object storage (``s3a://...``) are read by Spark as they are.
    """
    folder = params.data.folder
    if "://" in folder:
        return {key: {"path": _source(params, key)} for key in _FILES}
    download = params.download
    url = download.remote_url
    files = {key: Path(folder) / getattr(params.data, key) for key in _FILES}
    wanted = [k for k, path in files.items() if download.overwrite or not path.exists()]
    if wanted and not url:
        missing = ", ".join(str(files[k]) for k in wanted)
        raise DataValidationError(
            f"Input file(s) not found: {missing}. Put them there, point "
            f"data.folder (conf/<env>/globals.yml) at their folder, or set "
            f"data_processing.download.remote_url to fetch them ({PARAMS_FILE})."
        )
    sources = {key: f"{str(url).rstrip('/')}/{files[key].name}" for key in wanted}
    fetched = {
        key: _fetch(key, sources[key], files, columns, download, folder)
        for key in wanted
    }
    described = {}
    for key, path in files.items():
        described[key] = file_digest(path)
        if key in wanted:
            described[key]["url"] = sources[key]
            described[key]["final_url"] = fetched[key]["final_url"]
    return described


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
    user, item, rating = (_column(columns, k) for k in ("user_id", "item_id", "rating"))
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
    _log_drops(_source(params, "ratings_file"), report)
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
    checked = checked.cache()  # counted here, then indexed and written
    report = _with_file(
        _count_reasons(checked, {**_text_flags(raw), **(flags or {})}),
        raw_files,
        file_key,
    )
    _log_drops(_source(params, file_key), report)
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


# --------------------------------------------------------------------------------------
# Indexing and merging


def _index(df: DataFrame, input_col: str, output_col: str) -> DataFrame:
    """Adds a dense integer index 0..n-1: most frequent value first, ties in
    alphabetical order (StringIndexer's default order; the tables indexed here
    hold each id once, so it is the ids' order). Rows with a null value are
    dropped.

    Not StringIndexer itself: its fitted model carries every id in the task
    binary of every stage reading its output (8-17 MiB in about 15 stages of
    data_processing at the real shape). Here the ids are sorted by Spark, each
    sorted partition numbers its rows, and the partitions' sizes (a few numbers,
    collected) give each its offset.
    """
    position = "_position"
    ordered = (
        df.groupBy(input_col)
        .count()
        .filter(F.col(input_col).isNotNull())
        .orderBy(F.desc("count"), F.asc(input_col))
        # The partition's index in the upper 31 bits, the row's in the lower 33.
        .select(input_col, F.monotonically_increasing_id().alias(position))
        .cache()  # read twice: the sort's partition bounds are sampled at random
    )
    partition = F.shiftright(position, 33)
    sizes = dict(ordered.groupBy(partition.alias("p")).count().collect())
    offsets, total = [], 0
    for index in range(max(sizes, default=-1) + 1):
        offsets.append(total)
        total += sizes.get(index, 0)
    offset = F.element_at(
        F.array(*[F.lit(o) for o in offsets] or [F.lit(0)]), partition.cast("int") + 1
    )
    mapping = ordered.select(
        input_col,
        (offset + F.col(position).bitwiseAND((1 << 33) - 1))
        .cast("int")
        .alias(output_col),
    )
    # Cached: the merge, the join-loss counts and the written mapping read it.
    indexed = (
        df.join(mapping, on=input_col, how="inner")
        .select(*df.columns, output_col)
        .cache()
    )
    indexed.count()
    ordered.unpersist()
    return indexed


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
    merged_ratings: DataFrame, columns: dict[str, str], params: DataProcessingParams
) -> DataFrame:
    """Optional sample of the first ``sample_rows`` rows by ``_user_id``; rating as float.

    Sorting by user before the limit keeps whole users together (as the tutorial
    explains), so a sample still has users with several ratings to learn from.
    """
    rating = _column(columns, "rating")
    preparation = params.preparation
    df = merged_ratings
    if preparation.is_sample:
        df = df.orderBy(USER_IDX, ITEM_IDX).limit(preparation.sample_rows)
    # Cached: the split, the checks and the written model input read it.
    return df.withColumn(rating, F.col(rating).cast("float")).cache()


def split_ratings(
    model_input_ratings: DataFrame,
    columns: dict[str, str],
    params: DataProcessingParams,
) -> tuple[DataFrame, DataFrame]:
    """Train/test split of the explicit ratings, implicit ratings left out.

    Each explicit row draws a seeded uniform number: below ``train_fraction`` it
    goes to train, else to test, so train holds about ``train_fraction`` of the
    rows of each rating value. (The draw is ``sampleBy``'s with one fraction
    for every value, which gives the same train; test is its complement
    without an anti-join.)
    """
    rating = _column(columns, "rating")
    fraction, seed = params.preparation.train_fraction, params.preparation.seed
    explicit = model_input_ratings
    implicit_value = params.ratings.implicit_value
    if implicit_value is not None:
        explicit = explicit.filter(F.col(rating) != float(implicit_value))
    # Cached: both sides are counted by the checks, then written.
    drawn = explicit.withColumn(_DRAW, F.rand(seed)).cache()
    train = drawn.filter(F.col(_DRAW) < fraction).drop(_DRAW)
    test = drawn.filter(F.col(_DRAW) >= fraction).drop(_DRAW)
    return train, test


_DRAW = "_draw"


def check_model_input(
    user_index: DataFrame,
    item_index: DataFrame,
    prepared_ratings: DataFrame,
    train_split: DataFrame,
    test_split: DataFrame,
    params: DataProcessingParams,
    evaluation: EvaluationParams,
) -> tuple[DataFrame, DataFrame, DataFrame, DataFrame, DataFrame]:
    """The model inputs, passed on only if there is enough to train and test on.

    Requires ``minimum.interactions`` interactions, ``minimum.train_rows`` and
    ``minimum.test_rows`` explicit ratings in train and test, and at least
    ``evaluation.k`` items to recommend. Fails before any of them is written, so
    the previous run's model inputs stay as they were.
    """
    minimum = params.minimum
    counts = prepared_ratings.agg(
        F.count(F.lit(1)).alias("interactions"),
        F.countDistinct(ITEM_IDX).alias("items"),
    ).first()
    found = {
        "interactions": int(counts["interactions"]),
        "train_rows": train_split.count(),
        "test_rows": test_split.count(),
        "items": int(counts["items"]),
    }
    needed = {
        "interactions": minimum.interactions,
        "train_rows": minimum.train_rows,
        "test_rows": minimum.test_rows,
        "items": evaluation.k,
    }
    short = [key for key in needed if found[key] < needed[key]]
    if short:
        details = "; ".join(
            f"{key.replace('_', ' ')}: {found[key]}, at least {needed[key]} needed "
            f"({'evaluation.k' if key == 'items' else f'data_processing.minimum.{key}'})"
            for key in short
        )
        raise DataValidationError(
            f"Not enough data to train and evaluate on ({details}). Ratings: "
            f"{_source(params, 'ratings_file')}; explicit ratings are those other "
            f"than ratings.implicit_value ({params.ratings.implicit_value}), "
            "and only they are split into train and test. See "
            "data/08_reporting/data_statistics.json of the last good run for what "
            "a usable input looks like. Nothing was written: the previous model "
            "inputs are untouched."
        )
    return user_index, item_index, prepared_ratings, train_split, test_split


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
    """Valid ratings the inner joins leave out: unknown user, unknown item (one
    pass: the ids are unique in both tables, so the left joins add no rows)."""
    user, item = _column(columns, "user_id"), _column(columns, "item_id")
    known_user, known_item = "_known_user", "_known_item"
    row = (
        validated_ratings.select(user, item)
        .join(indexed_users.select(user, F.lit(1).alias(known_user)), user, "left")
        .join(indexed_items.select(item, F.lit(1).alias(known_item)), item, "left")
        .agg(
            F.count(F.lit(1)).alias("ratings_validated"),
            F.count_if(F.col(known_user).isNull()).alias("ratings_with_unknown_user"),
            F.count_if(F.col(known_item).isNull()).alias("ratings_with_unknown_item"),
        )
        .first()
    )
    return {key: int(row[key]) for key in row.asDict()}


def measure_side_information(
    model_input_ratings: DataFrame,
    test_ratings: DataFrame,
    indexed_items: DataFrame,
    item_based: ItemBasedParams,
) -> dict[str, Any]:
    """How much the books' side information (``item_based.side_information``,
    normalized as the models see it) could tell: the share of test
    interactions whose book shares a value (an author) with another book the
    reader has outside test, in all and per column. On two real Book-Crossing
    subsets: 20% and 29% by author."""
    side_columns = item_based.side_information
    side = side_information(indexed_items, side_columns)
    if side is None:
        return {"columns": [], "test_share_sharing_a_value": None, "per_column": {}}
    seen = "_seen_item"
    outside_test = model_input_ratings.join(
        test_ratings.select(ROW_ID), on=ROW_ID, how="left_anti"
    ).select(USER_IDX, F.col(ITEM_IDX).alias(seen))
    shared = (
        test_ratings.select(ROW_ID, USER_IDX, ITEM_IDX)
        .join(side, on=ITEM_IDX)
        .join(
            outside_test.join(side.withColumnRenamed(ITEM_IDX, seen), on=seen),
            on=[USER_IDX, SIDE],
        )
        .filter(F.col(ITEM_IDX) != F.col(seen))
        .select(ROW_ID, F.substring_index(SIDE, "=", 1).alias("column"))
        .distinct()
        .cache()
    )
    n_test = test_ratings.count()

    def share(count: int) -> float | None:
        return round(count / n_test, 4) if n_test else None

    per_column = dict.fromkeys(side_columns, 0) | {
        row["column"]: int(row["count"])
        for row in shared.groupBy("column").count().collect()
    }
    report = {
        "columns": list(side_columns),
        "test_share_sharing_a_value": share(shared.select(ROW_ID).distinct().count()),
        "per_column": {column: share(count) for column, count in per_column.items()},
    }
    shared.unpersist()
    logger.info(
        "Side information %s: %.1f%% of test interactions share a value with "
        "another book of their reader",
        side_columns,
        100 * (report["test_share_sharing_a_value"] or 0.0),
    )
    return report


def _model_input_stats(
    model_input_ratings: DataFrame, rating: str, implicit_key: str | None
) -> dict[str, Any]:
    """Sizes, sparsity, id ranges and ratings per value of the model input."""
    row = model_input_ratings.agg(
        F.count(F.lit(1)).alias("interactions"),
        F.countDistinct(USER_IDX).alias("users"),
        F.countDistinct(ITEM_IDX).alias("items"),
        F.max(USER_IDX).alias("max_user_id"),
        F.max(ITEM_IDX).alias("max_item_id"),
    ).first()
    per_value = {
        _rating_key(r[rating]): int(r["count"])
        for r in model_input_ratings.groupBy(rating).count().orderBy(rating).collect()
    }
    implicit = per_value.get(implicit_key, 0)
    interactions = int(row["interactions"])
    users, items = int(row["users"]), int(row["items"])
    return {
        "interactions": interactions,
        "explicit_interactions": interactions - implicit,
        "implicit_interactions": implicit,
        "users": users,
        "items": items,
        "sparsity": 1.0 - interactions / (users * items) if users and items else None,
        "max_user_id": row["max_user_id"],
        "max_item_id": row["max_item_id"],
        "rating_values": sorted(per_value, key=float),
        "ratings_per_value": per_value,
    }


def _split_stats(
    train_ratings: DataFrame,
    test_ratings: DataFrame,
    rating: str,
    explicit_per_value: dict[str, int],
    train_fraction: float,
) -> dict[str, Any]:
    """Rows on each side of the split, and the train share of each rating."""
    train_per_value = {
        _rating_key(r[rating]): int(r["count"])
        for r in train_ratings.groupBy(rating).count().collect()
    }
    return {
        "train_rows": train_ratings.count(),
        "test_rows": test_ratings.count(),
        "train_fraction_asked": train_fraction,
        "train_share_per_value": {
            key: round(train_per_value.get(key, 0) / count, 4)
            for key, count in explicit_per_value.items()
        },
    }


def compute_statistics(
    ratings_report: dict[str, Any],
    users_report: dict[str, Any],
    items_report: dict[str, Any],
    joins_report: dict[str, int],
    side_report: dict[str, Any],
    model_input_ratings: DataFrame,
    train_ratings: DataFrame,
    test_ratings: DataFrame,
    columns: dict[str, str],
    params: DataProcessingParams,
) -> dict[str, Any]:
    """Sizes, sparsity, id ranges, ratings per value, rows dropped per reason and
    what the side information could tell (``measure_side_information``)."""
    rating = _column(columns, "rating")
    implicit_value = params.ratings.implicit_value
    implicit_key = None if implicit_value is None else _rating_key(implicit_value)
    model_input = _model_input_stats(model_input_ratings, rating, implicit_key)
    explicit_per_value = {
        k: v for k, v in model_input["ratings_per_value"].items() if k != implicit_key
    }
    split = _split_stats(
        train_ratings,
        test_ratings,
        rating,
        explicit_per_value,
        params.preparation.train_fraction,
    )
    logger.info(
        "Model input: %s users, %s items, %s interactions (sparsity %.5f); "
        "train %s rows, test %s rows",
        model_input["users"],
        model_input["items"],
        model_input["interactions"],
        model_input["sparsity"] or 0.0,
        split["train_rows"],
        split["test_rows"],
    )
    return {
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
        "side_information": side_report,
        "sample": {
            "is_sample": params.preparation.is_sample,
            "sample_rows": params.preparation.sample_rows,
        },
        "model_input": model_input,
        "split": split,
    }
