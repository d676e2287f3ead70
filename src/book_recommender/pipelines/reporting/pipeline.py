"""reporting: figures and tables, saved under data/08_reporting and logged to MLflow."""

from kedro.pipeline import Node, Pipeline

from .beyond_accuracy import (
    measure_served_lists,
    plot_accuracy_against_coverage,
    plot_recommended_popularity,
)
from .nodes import (
    plot_long_tail,
    plot_model_comparison,
    plot_most_popular_items,
    plot_most_rated_books,
    plot_predicted_vs_actual,
    plot_rating_distribution,
    plot_top_authors,
    plot_user_ages,
    sample_recommendations,
    summarize_raw_tables,
)

_COLUMNS = "params:columns"


def create_pipeline(**kwargs) -> Pipeline:
    ratings_and_items = {
        "model_input_ratings": "model_input_ratings",
        "indexed_items": "indexed_items",
        "columns": _COLUMNS,
    }
    return Pipeline(
        [
            Node(
                plot_top_authors,
                inputs=["indexed_items", _COLUMNS],
                outputs="top_authors_plot",
                name="plot_top_authors",
            ),
            Node(
                plot_most_rated_books,
                inputs=ratings_and_items,
                outputs="most_rated_books_plot",
                name="plot_most_rated_books",
            ),
            Node(
                plot_most_popular_items,
                inputs=ratings_and_items,
                outputs="most_popular_items_plot",
                name="plot_most_popular_items",
            ),
            Node(
                plot_rating_distribution,
                inputs=[
                    "model_input_ratings",
                    _COLUMNS,
                    "params:data_processing",
                ],
                outputs="rating_distribution_plot",
                name="plot_rating_distribution",
            ),
            Node(
                plot_long_tail,
                inputs="model_input_ratings",
                outputs="long_tail_plot",
                name="plot_long_tail",
            ),
            Node(
                plot_user_ages,
                inputs=["indexed_users", _COLUMNS],
                outputs="user_ages_plot",
                name="plot_user_ages",
            ),
            Node(
                summarize_raw_tables,
                # raw_files: after fetch_raw_data has put the files in place.
                inputs=["raw_books", "raw_ratings", "raw_users", "raw_files"],
                outputs="raw_tables_summary",
                name="summarize_raw_tables",
            ),
            Node(
                plot_model_comparison,
                inputs=["tuning_results", "champions", "params:evaluation"],
                outputs="model_comparison_plot",
                name="plot_model_comparison",
            ),
            Node(
                plot_accuracy_against_coverage,
                inputs=["tuning_results", "champions", "params:evaluation"],
                outputs="accuracy_against_coverage_plot",
                name="plot_accuracy_against_coverage",
            ),
            Node(
                measure_served_lists,
                inputs={
                    "user_recommendations": "user_recommendations",
                    "model_input_ratings": "model_input_ratings",
                    "test_ratings": "test_ratings",
                    "indexed_items": "indexed_items",
                    "item_based": "params:item_based",
                },
                outputs="served_list_measures",
                name="measure_served_lists",
            ),
            Node(
                plot_recommended_popularity,
                inputs=[
                    "user_recommendations",
                    "model_input_ratings",
                    "test_ratings",
                ],
                outputs="recommended_popularity_plot",
                name="plot_recommended_popularity",
            ),
            Node(
                plot_predicted_vs_actual,
                inputs=["champion_test_predictions", _COLUMNS, "champions"],
                outputs="predicted_vs_actual_plot",
                name="plot_predicted_vs_actual",
            ),
            Node(
                sample_recommendations,
                inputs={
                    "user_recommendations": "user_recommendations",
                    "model_input_ratings": "model_input_ratings",
                    "indexed_items": "indexed_items",
                    "columns": _COLUMNS,
                    "reporting": "params:reporting",
                },
                outputs="recommendation_sample",
                name="sample_recommendations",
            ),
        ],
        tags="reporting",
    )
