"""reporting: figures and tables, saved under data/08_reporting and logged to MLflow."""

from kedro.pipeline import Pipeline

from book_recommender.pipelines.wiring import namespaced, node

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
)
from .raw_summary import summarize_raw_tables


def create_pipeline(**kwargs) -> Pipeline:
    return namespaced(
        "reporting",
        [
            node(plot_top_authors, "top_authors_plot"),
            node(plot_most_rated_books, "most_rated_books_plot"),
            node(plot_most_popular_items, "most_popular_items_plot"),
            node(plot_rating_distribution, "rating_distribution_plot"),
            node(plot_long_tail, "long_tail_plot"),
            node(plot_user_ages, "user_ages_plot"),
            # raw_files: after fetch_raw_data has put the files in place.
            node(summarize_raw_tables, "raw_tables_summary"),
            node(plot_model_comparison, "model_comparison_plot"),
            node(plot_accuracy_against_coverage, "accuracy_against_coverage_plot"),
            node(measure_served_lists, "served_list_measures"),
            node(plot_recommended_popularity, "recommended_popularity_plot"),
            node(plot_predicted_vs_actual, "predicted_vs_actual_plot"),
            node(sample_recommendations, "recommendation_sample"),
        ],
    )
