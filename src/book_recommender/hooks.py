"""Project hooks."""

from __future__ import annotations

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl

from book_recommender.spark_session import build_spark_session


class SparkHooks:
    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        """Starts the project's SparkSession from ``conf/<env>/spark.yml``."""
        build_spark_session(context.config_loader["spark"])
