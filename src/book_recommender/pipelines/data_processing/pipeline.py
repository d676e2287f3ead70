"""data_processing: raw CSVs to indexed model inputs, a train/test split and statistics."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
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

_PARAMS = "params:data_processing"
_COLUMNS = "params:columns"


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                fetch_raw_data,
                inputs=[_COLUMNS, _PARAMS],
                outputs="raw_files",
                name="fetch_raw_data",
            ),
            Node(
                validate_ratings,
                inputs=["raw_ratings", _COLUMNS, _PARAMS, "raw_files"],
                outputs=["validated_ratings", "ratings_validation_report"],
                name="validate_ratings",
            ),
            Node(
                validate_users,
                inputs=["raw_users", _COLUMNS, _PARAMS, "raw_files"],
                outputs=["validated_users", "users_validation_report"],
                name="validate_users",
            ),
            Node(
                validate_items,
                inputs=["raw_books", _COLUMNS, _PARAMS, "raw_files"],
                outputs=["validated_items", "items_validation_report"],
                name="validate_items",
            ),
            Node(
                index_users,
                inputs=["validated_users", _COLUMNS],
                outputs="user_index",
                name="index_users",
            ),
            Node(
                index_items,
                inputs=["validated_items", _COLUMNS],
                outputs="item_index",
                name="index_items",
            ),
            Node(
                merge_ratings,
                inputs={
                    "ratings": "validated_ratings",
                    "indexed_users": "user_index",
                    "indexed_items": "item_index",
                    "columns": _COLUMNS,
                },
                outputs="merged_ratings",
                name="merge_ratings",
            ),
            Node(
                count_join_losses,
                inputs={
                    "validated_ratings": "validated_ratings",
                    "indexed_users": "user_index",
                    "indexed_items": "item_index",
                    "columns": _COLUMNS,
                },
                outputs="join_report",
                name="count_join_losses",
            ),
            Node(
                prepare_model_input,
                inputs=["merged_ratings", _COLUMNS, _PARAMS],
                outputs="prepared_ratings",
                name="prepare_model_input",
            ),
            Node(
                split_ratings,
                inputs=["prepared_ratings", _COLUMNS, _PARAMS],
                outputs=["train_split", "test_split"],
                name="split_ratings",
            ),
            # Nothing of data_processing is written before this check passes: a
            # degenerate input never replaces the previous model inputs.
            Node(
                check_model_input,
                inputs={
                    "user_index": "user_index",
                    "item_index": "item_index",
                    "prepared_ratings": "prepared_ratings",
                    "train_split": "train_split",
                    "test_split": "test_split",
                    "params": _PARAMS,
                    "evaluation": "params:evaluation",
                },
                outputs=[
                    "indexed_users",
                    "indexed_items",
                    "model_input_ratings",
                    "train_ratings",
                    "test_ratings",
                ],
                name="check_model_input",
            ),
            Node(
                measure_side_information,
                inputs={
                    "model_input_ratings": "model_input_ratings",
                    "test_ratings": "test_ratings",
                    "indexed_items": "indexed_items",
                    "item_based": "params:item_based",
                },
                outputs="side_information_report",
                name="measure_side_information",
            ),
            Node(
                compute_statistics,
                inputs={
                    "ratings_report": "ratings_validation_report",
                    "users_report": "users_validation_report",
                    "items_report": "items_validation_report",
                    "joins_report": "join_report",
                    "side_report": "side_information_report",
                    "model_input_ratings": "model_input_ratings",
                    "train_ratings": "train_ratings",
                    "test_ratings": "test_ratings",
                    "columns": _COLUMNS,
                    "params": _PARAMS,
                },
                outputs="data_statistics",
                name="compute_statistics",
            ),
        ],
        tags="data_processing",
    )
