"""The one SparkSession, created from spark.yml before any dataset needs it."""

from __future__ import annotations

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from pyspark.sql import SparkSession

from book_recommender.spark_session import build_spark_session


class SparkHooks:
    """The project's SparkSession, and no cached data across runs.

    Nodes cache what they read again (the raw files among them), and Spark
    matches a cached plan for any later read of the same path: in one process
    (a notebook, a test session) a second run would read a rewritten file
    from the first run's cache. So every run starts and ends with Spark's
    cache empty (a notebook's own cached frames are dropped too: recomputed,
    never wrong).
    """

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        """Starts the project's SparkSession from ``conf/<env>/spark.yml``."""
        build_spark_session(context.config_loader["spark"])

    @staticmethod
    def _forget_cached_data() -> None:
        spark = SparkSession.getActiveSession()
        if spark is not None:
            spark.catalog.clearCache()

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._forget_cached_data()

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._forget_cached_data()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._forget_cached_data()
