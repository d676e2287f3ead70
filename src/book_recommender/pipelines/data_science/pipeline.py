"""data_science: tune both model families and the baselines, evaluate them on test,
pick a recommender and a rating champion, track in MLflow, register both."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    collect_run_metrics,
    evaluate_on_test,
    log_candidates,
    predict_test_ratings,
    register_champions,
    select_champions,
    select_implicit_interactions,
    tune_candidates,
)

_COLUMNS = "params:columns"


def create_pipeline(**kwargs) -> Pipeline:
    training = {
        "train_ratings": "train_ratings",
        "implicit_interactions": "implicit_interactions",
        "indexed_items": "indexed_items",
        "columns": _COLUMNS,
        "als": "params:als",
        "item_based": "params:item_based",
    }
    return Pipeline(
        [
            Node(
                select_implicit_interactions,
                inputs=[
                    "model_input_ratings",
                    _COLUMNS,
                    "params:data_processing",
                ],
                outputs="implicit_interactions",
                name="select_implicit_interactions",
            ),
            Node(
                tune_candidates,
                inputs={
                    **training,
                    "tuning": "params:tuning",
                    "evaluation": "params:evaluation",
                },
                outputs=["tuning_results", "tuned_models"],
                name="tune_candidates",
            ),
            Node(
                evaluate_on_test,
                inputs={
                    "tuned_models": "tuned_models",
                    "tuning_results": "tuning_results",
                    "test_ratings": "test_ratings",
                    "indexed_items": "indexed_items",
                    "item_based": "params:item_based",
                    "tuning": "params:tuning",
                    "evaluation": "params:evaluation",
                },
                outputs=["candidate_models", "candidate_metrics"],
                name="evaluate_on_test",
            ),
            Node(
                select_champions,
                inputs={
                    "tuning_results": "tuning_results",
                    "candidate_metrics": "candidate_metrics",
                    "evaluation": "params:evaluation",
                },
                outputs="champions",
                name="select_champions",
            ),
            Node(
                log_candidates,
                inputs={
                    "candidate_models": "candidate_models",
                    "candidate_metrics": "candidate_metrics",
                    "tuning_results": "tuning_results",
                    "train_ratings": "train_ratings",
                    "als": "params:als",
                    "item_based": "params:item_based",
                },
                outputs="candidate_runs",
                name="log_candidates",
            ),
            Node(
                predict_test_ratings,
                inputs={
                    "candidate_models": "candidate_models",
                    "champions": "champions",
                    "test_ratings": "test_ratings",
                    "columns": _COLUMNS,
                },
                outputs="champion_test_predictions",
                name="predict_test_ratings",
            ),
            Node(
                collect_run_metrics,
                inputs=["data_statistics", "candidate_metrics", "champions"],
                outputs="run_metrics",
                name="collect_run_metrics",
            ),
            Node(
                register_champions,
                inputs={
                    "candidate_models": "candidate_models",
                    "champions": "champions",
                    "candidate_runs": "candidate_runs",
                    "candidate_metrics": "candidate_metrics",
                    "data_statistics": "data_statistics",
                    "model_input_ratings": "model_input_ratings",
                    "indexed_users": "indexed_users",
                    "indexed_items": "indexed_items",
                    "columns": _COLUMNS,
                    "evaluation": "params:evaluation",
                    "registry": "params:registry",
                },
                outputs="champion_recommender",
                name="register_champions",
            ),
        ],
        tags="data_science",
    )
