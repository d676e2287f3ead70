"""scoring: top-k books for every user from the registered recommender, as a
Delta table."""

from kedro.pipeline import Node, Pipeline

from .nodes import recommend_for_users, summarize_recommendations


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                recommend_for_users,
                inputs={
                    "champion": "champion_recommender",
                    "scoring": "params:scoring",
                },
                outputs="user_recommendations",
                name="recommend_for_users",
            ),
            Node(
                summarize_recommendations,
                inputs=["user_recommendations", "champion_recommender"],
                outputs="scoring_metrics",
                name="summarize_recommendations",
            ),
        ],
        tags="scoring",
    )
