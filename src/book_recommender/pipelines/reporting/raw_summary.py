"""The raw tables at a glance: per column its count, missing values, distinct
values and, for numbers, range and mean, counted in Spark."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from book_recommender.spark_session import cached

SUMMARY_COLUMNS = [
    "table",
    "column",
    "count",
    "missing",
    "distinct",
    "min",
    "max",
    "mean",
]
_NUMBER = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"


def _text_and_presence(value: Column) -> tuple[Column, Column]:
    """The value as trimmed text, and whether it is there (not null, not blank)."""
    text = F.trim(value.cast("string"))
    return text, value.isNotNull() & (text != "")


def _distinct_counts(df: DataFrame) -> dict[str, int]:
    """Distinct present values per column, exact, in one aggregation over
    (column, value) pairs, which Spark spills to disk when it must.

    Not a set per column (``collect_set``): its partial result is one row
    holding every distinct value, and with the URL columns of a 5M-row
    Books.csv that row outgrew a 4 GiB driver. Not several ``countDistinct``
    in one aggregation either: that expands every row once per column along
    with all the other aggregates (minutes on a 1M-row Books.csv).
    """
    pairs = []
    for i, name in enumerate(df.columns):
        value = F.col(f"`{name}`")
        _, present = _text_and_presence(value)
        pairs.append(
            F.struct(
                F.lit(i).alias("column"),
                F.when(present, value.cast("string")).alias("value"),
            )
        )
    counts = (
        df.select(F.explode(F.array(*pairs)).alias("pair"))
        .select("pair.*")
        .filter(F.col("value").isNotNull())
        .groupBy("column")
        .agg(F.countDistinct("value").alias("distinct"))
        .collect()
    )
    found = {row["column"]: int(row["distinct"]) for row in counts}
    return {name: found.get(i, 0) for i, name in enumerate(df.columns)}


def summarize_table(df: DataFrame, table: str) -> pd.DataFrame:
    """The tutorial's ``display(df, summary=True)``: per column count, missing
    (null or empty), distinct, min, max and mean (of the values that parse as numbers)."""
    aggregates = []
    for name in df.columns:
        value = F.col(f"`{name}`")
        text, present = _text_and_presence(value)
        # Only text shaped like a number is cast: a cast that fails costs a
        # Java exception, and titles and URLs made the summary 3x slower.
        number = F.when(present & text.rlike(_NUMBER), text.try_cast("double"))
        aggregates += [
            F.sum(present.cast("long")).alias(f"{name}|count"),
            F.sum((~present).cast("long")).alias(f"{name}|missing"),
            F.min(F.when(present, value.cast("string"))).alias(f"{name}|min_text"),
            F.max(F.when(present, value.cast("string"))).alias(f"{name}|max_text"),
            F.min(number).alias(f"{name}|min_number"),
            F.max(number).alias(f"{name}|max_number"),
            F.avg(number).alias(f"{name}|mean"),
            F.count(number).alias(f"{name}|numbers"),
        ]
    row = df.agg(*aggregates).first().asDict()
    distinct = _distinct_counts(df)
    records = []
    for name in df.columns:
        get = lambda stat, name=name: row[f"{name}|{stat}"]  # noqa: E731
        numeric = get("numbers") == get("count") and get("count") > 0
        records.append(
            {
                "table": table,
                "column": name,
                "count": get("count"),
                "missing": get("missing"),
                "distinct": distinct[name],
                "min": get("min_number") if numeric else get("min_text"),
                "max": get("max_number") if numeric else get("max_text"),
                "mean": get("mean") if numeric else None,
            }
        )
    return pd.DataFrame(records, columns=SUMMARY_COLUMNS)


def summarize_raw_tables(
    raw_books: DataFrame,
    raw_ratings: DataFrame,
    raw_users: DataFrame,
    raw_files: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Summary statistics of every column of the three raw tables.

    ``raw_files`` (``fetch_raw_data``'s description of the files) is not read:
    it orders the node after a download.
    """
    tables = {"books": raw_books, "ratings": raw_ratings, "users": raw_users}
    # A CSV read with multiLine is one partition, so each table's summary is one
    # task: the three run at once, on the cores a single one leaves idle. Cached
    # as validation caches them: whichever node runs first parses the file.
    with ThreadPoolExecutor(max_workers=len(tables)) as pool:
        summaries = pool.map(
            lambda item: summarize_table(cached(item[1]), item[0]), tables.items()
        )
        return pd.concat(list(summaries), ignore_index=True)
