"""Indexing, merging and splitting: dense user and item indices, the ratings
joined to them, the model input and its train/test split, checked before any
model is fitted."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, ROW_ID, USER_IDX
from book_recommender.params import (
    DataProcessingParams,
    EvaluationParams,
)
from book_recommender.pipelines.data_processing.reading import (
    DataValidationError,
    column_name,
    source_path,
)

logger = logging.getLogger(__name__)


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
    return _index(users, column_name(columns, "user_id"), USER_IDX)


def index_items(items: DataFrame, columns: dict[str, str]) -> DataFrame:
    """The items table with ``_item_id``, the mapping back to the item id column."""
    return _index(items, column_name(columns, "item_id"), ITEM_IDX)


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
    user, item, rating = (
        column_name(columns, k) for k in ("user_id", "item_id", "rating")
    )
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
    rating = column_name(columns, "rating")
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
    rating = column_name(columns, "rating")
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
    data_quality: dict[str, Any],
    params: DataProcessingParams,
    evaluation: EvaluationParams,
) -> tuple[DataFrame, DataFrame, DataFrame, DataFrame, DataFrame]:
    """The model inputs, passed on only if the raw data's damage is within
    bounds (``data_quality``: ``assess_data_quality`` has passed) and there is
    enough to train and test on.

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
            f"{source_path(params, 'ratings_file')}; explicit ratings are those other "
            f"than ratings.implicit_value ({params.ratings.implicit_value}), "
            "and only they are split into train and test. See "
            "data/05_model_input/data_statistics.json of the last good run for what "
            "a usable input looks like. Nothing was written: the previous model "
            "inputs are untouched."
        )
    return user_index, item_index, prepared_ratings, train_split, test_split
