"""data_science: tune ALS, evaluate against baselines, track in MLflow, register."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    collect_run_metrics,
    evaluate_baselines,
    log_submodels,
    predict_test_ratings,
    register_champion,
    select_champion,
    select_implicit_interactions,
    train_submodels,
    tune_als,
)

_COLUMNS = "params:columns"


def create_pipeline(**kwargs) -> Pipeline:
    training = {
        "train_ratings": "train_ratings",
        "implicit_interactions": "implicit_interactions",
        "columns": _COLUMNS,
        "als": "params:als",
    }
    return Pipeline(
        [
            Node(
                select_implicit_interactions,
                inputs=[
                    "model_input_ratings",
                    _COLUMNS,
                    "params:data_processing.ratings",
                ],
                outputs="implicit_interactions",
            ),
            Node(
                evaluate_baselines,
                inputs={
                    **training,
                    "test_ratings": "test_ratings",
                    "evaluation": "params:evaluation",
                },
                outputs="baseline_metrics",
            ),
            Node(
                tune_als,
                inputs={
                    **training,
                    "tuning": "params:tuning",
                    "evaluation": "params:evaluation",
                },
                outputs="tuning_results",
            ),
            Node(
                train_submodels,
                inputs={
                    **training,
                    "test_ratings": "test_ratings",
                    "evaluation": "params:evaluation",
                },
                outputs=["als_submodels", "submodel_metrics"],
            ),
            Node(
                select_champion,
                inputs={
                    "tuning_results": "tuning_results",
                    "submodel_metrics": "submodel_metrics",
                    "baseline_metrics": "baseline_metrics",
                    "als": "params:als",
                    "evaluation": "params:evaluation",
                },
                outputs="champion",
            ),
            Node(
                log_submodels,
                inputs={
                    "submodels": "als_submodels",
                    "submodel_metrics": "submodel_metrics",
                    "tuning_results": "tuning_results",
                    "train_ratings": "train_ratings",
                    "als": "params:als",
                },
                outputs="submodel_runs",
            ),
            Node(
                predict_test_ratings,
                inputs={
                    "submodels": "als_submodels",
                    "champion": "champion",
                    "test_ratings": "test_ratings",
                    "columns": _COLUMNS,
                },
                outputs="champion_test_predictions",
            ),
            Node(
                collect_run_metrics,
                inputs=["data_statistics", "baseline_metrics", "champion"],
                outputs="run_metrics",
            ),
            Node(
                register_champion,
                inputs={
                    "submodels": "als_submodels",
                    "champion": "champion",
                    "submodel_runs": "submodel_runs",
                    "train_ratings": "train_ratings",
                    "registry": "params:registry",
                },
                outputs="registered_model",
            ),
        ],
        tags="data_science",
    )
