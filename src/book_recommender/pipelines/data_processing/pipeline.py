"""data_processing: raw CSVs to indexed model inputs, a train/test split and statistics."""

from kedro.pipeline import Pipeline

from book_recommender.pipelines.wiring import namespaced, node

from .nodes import (
    assess_data_quality,
    check_model_input,
    compute_statistics,
    count_join_losses,
    fetch_raw_data,
    index_items,
    index_users,
    measure_side_information,
    merge_ratings,
    prepare_model_input,
    split_ratings,
    validate_items,
    validate_ratings,
    validate_users,
)

_INDICES = {"indexed_users": "user_index", "indexed_items": "item_index"}
_SETTINGS = {"params": "params:data_processing"}
# What validation and the joins counted: read by the quality check and the statistics.
_REPORTS = {
    "ratings_report": "ratings_validation_report",
    "users_report": "users_validation_report",
    "items_report": "items_validation_report",
    "joins_report": "join_report",
}


def create_pipeline(**kwargs) -> Pipeline:
    return namespaced(
        "data_processing",
        [
            node(fetch_raw_data, "raw_files", **_SETTINGS),
            node(
                validate_ratings,
                ["validated_ratings", "ratings_validation_report"],
                **_SETTINGS,
            ),
            node(
                validate_users,
                ["validated_users", "users_validation_report"],
                **_SETTINGS,
            ),
            node(
                validate_items,
                ["validated_items", "items_validation_report"],
                raw_items="raw_books",
                **_SETTINGS,
            ),
            node(index_users, "user_index", users="validated_users"),
            node(index_items, "item_index", items="validated_items"),
            node(
                merge_ratings, "merged_ratings", ratings="validated_ratings", **_INDICES
            ),
            node(count_join_losses, "join_report", **_INDICES),
            node(assess_data_quality, "data_quality_report", **_REPORTS, **_SETTINGS),
            node(prepare_model_input, "prepared_ratings", **_SETTINGS),
            node(
                split_ratings,
                ["train_split", "test_split"],
                model_input_ratings="prepared_ratings",
                **_SETTINGS,
            ),
            # Nothing of data_processing is written before this check passes: a
            # degenerate input never replaces the previous model inputs.
            node(
                check_model_input,
                [
                    "indexed_users",
                    "indexed_items",
                    "model_input_ratings",
                    "train_ratings",
                    "test_ratings",
                ],
                data_quality="data_quality_report",
                **_SETTINGS,
            ),
            node(measure_side_information, "side_information_report"),
            node(
                compute_statistics,
                "data_statistics",
                **_REPORTS,
                side_report="side_information_report",
                quality_report="data_quality_report",
                **_SETTINGS,
            ),
        ],
    )
