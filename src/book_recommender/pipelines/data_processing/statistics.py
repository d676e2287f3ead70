"""What the data is: rows read, kept and dropped, the model input's shape, the
split, and how often readers return to a side value (the author)."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, ROW_ID, USER_IDX
from book_recommender.models.items import SIDE, side_information
from book_recommender.params import (
    DataProcessingParams,
    ItemBasedParams,
)
from book_recommender.pipelines.data_processing.reading import column_name, source_path

logger = logging.getLogger(__name__)


def _rating_key(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def count_join_losses(
    validated_ratings: DataFrame,
    indexed_users: DataFrame,
    indexed_items: DataFrame,
    columns: dict[str, str],
) -> dict[str, int]:
    """Valid ratings the inner joins leave out: unknown user, unknown item;
    and of those, the ones an id's case (an ISBN's "x" for "X") or leading
    zeros ("002" for "2") keep out: ids are compared as text. One pass: the
    ids, and their normalised forms once made distinct, are unique, so the
    left joins add no rows."""
    user, item = column_name(columns, "user_id"), column_name(columns, "item_id")
    sides = {
        "user": (user, indexed_users, _without_leading_zeros),
        "item": (item, indexed_items, F.upper),
    }
    joined = validated_ratings.select(user, item)
    for side, (key, known, normalise) in sides.items():
        forms = known.select(normalise(F.col(key)).alias(f"_{side}_form")).distinct()
        joined = (
            joined.join(
                known.select(key, F.lit(1).alias(f"_known_{side}")), key, "left"
            )
            .withColumn(f"_{side}_form", normalise(F.col(key)))
            .join(forms.withColumn(f"_near_{side}", F.lit(1)), f"_{side}_form", "left")
        )
    unknown = {side: F.col(f"_known_{side}").isNull() for side in sides}
    row = joined.agg(
        F.count(F.lit(1)).alias("ratings_validated"),
        F.count_if(unknown["user"]).alias("ratings_with_unknown_user"),
        F.count_if(unknown["item"]).alias("ratings_with_unknown_item"),
        F.count_if(unknown["item"] & F.col("_near_item").isNotNull()).alias(
            "ratings_with_unknown_item_known_in_another_case"
        ),
        F.count_if(unknown["user"] & F.col("_near_user").isNotNull()).alias(
            "ratings_with_unknown_user_known_without_leading_zeros"
        ),
    ).first()
    return {key: int(row[key]) for key in row.asDict()}


def _without_leading_zeros(column: Column) -> Column:
    return F.regexp_replace(column, "^0+(?=.)", "")


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
    quality_report: dict[str, Any],
    model_input_ratings: DataFrame,
    train_ratings: DataFrame,
    test_ratings: DataFrame,
    columns: dict[str, str],
    params: DataProcessingParams,
) -> dict[str, Any]:
    """Sizes, sparsity, id ranges, ratings per value, rows dropped per reason and
    what the side information could tell (``measure_side_information``)."""
    rating = column_name(columns, "rating")
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
            "ratings": source_path(params, "ratings_file"),
            "users": source_path(params, "users_file"),
            "items": source_path(params, "items_file"),
        },
        "rows": {
            "ratings": ratings_report,
            "users": users_report,
            "items": items_report,
        },
        "joins": joins_report,
        "data_quality": quality_report,
        "side_information": side_report,
        "sample": {
            "is_sample": params.preparation.is_sample,
            "sample_rows": params.preparation.sample_rows,
        },
        "model_input": model_input,
        "split": split,
    }
