"""data_science: tune both model families and the baselines, evaluate them on test,
pick a recommender and a rating champion, track in MLflow, register both."""

from kedro.pipeline import Pipeline

from book_recommender.pipelines.wiring import namespaced, node

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


def create_pipeline(**kwargs) -> Pipeline:
    return namespaced(
        "data_science",
        [
            node(select_implicit_interactions, "implicit_interactions"),
            node(tune_candidates, ["tuning_results", "tuned_models"]),
            node(evaluate_on_test, ["candidate_models", "candidate_metrics"]),
            node(select_champions, "champions"),
            node(log_candidates, "candidate_runs"),
            node(predict_test_ratings, "champion_test_predictions"),
            node(collect_run_metrics, "run_metrics"),
            node(register_champions, "champion_recommender"),
        ],
    )
