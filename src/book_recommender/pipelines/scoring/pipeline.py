"""scoring: top-k books for every user from the registered recommender, as a
Delta table."""

from kedro.pipeline import Pipeline

from book_recommender.pipelines.wiring import namespaced, node

from .nodes import recommend_for_users, summarize_recommendations


def create_pipeline(**kwargs) -> Pipeline:
    return namespaced(
        "scoring",
        [
            node(
                recommend_for_users,
                "user_recommendations",
                champion="champion_recommender",
            ),
            node(
                summarize_recommendations,
                "scoring_metrics",
                champion="champion_recommender",
            ),
        ],
    )
