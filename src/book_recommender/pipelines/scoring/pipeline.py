"""scoring: top-k books for every user from the registered model, as a Delta table."""

from kedro.pipeline import Node, Pipeline

from .nodes import load_registered_model, recommend_for_users, summarize_recommendations


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                load_registered_model,
                inputs=["registered_model", "params:scoring"],
                outputs=["scoring_model", "scoring_model_info"],
                name="load_registered_model",
            ),
            Node(
                recommend_for_users,
                inputs={
                    "model": "scoring_model",
                    "model_info": "scoring_model_info",
                    "model_input_ratings": "model_input_ratings",
                    "indexed_users": "indexed_users",
                    "indexed_items": "indexed_items",
                    "columns": "params:columns",
                    "scoring": "params:scoring",
                },
                outputs="user_recommendations",
                name="recommend_for_users",
            ),
            Node(
                summarize_recommendations,
                inputs=["user_recommendations", "scoring_model_info"],
                outputs="scoring_metrics",
                name="summarize_recommendations",
            ),
        ],
        tags="scoring",
    )
