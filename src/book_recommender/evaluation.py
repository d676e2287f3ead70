"""Judging a candidate as it would be served, as a Spark ML ``Evaluator``.

``ServedEvaluator`` reads what a ``models.RecommenderModel`` ``transform``s a
frame of held-out ratings into (each row with its user's served books and, for
a rating model, its predicted rating) and returns one metric, so Spark's
``TrainValidationSplit`` / ``CrossValidator`` tune the families with it:

- ranking metrics at k of the served lists (seen books out, cold users given
  the popular fallback) over the users with relevant held-out items, every such
  user counting (``metrics.served_ranking``), and the same over the users the
  model could rank (``warm.*``) with their share (``cold_user_share``);
- how many distinct books those users' top-k lists hold (``served_books``,
  the numerator of catalog coverage) and, given the training ``Catalog``
  (``judge_beyond_accuracy``), the measures of ``beyond_accuracy`` over the
  same lists (cold users' fallback lists included);
- for a rating model, RMSE, MAE, R2 and explained variance on the pairs it has
  factors for (``metrics.regression_metrics``; RMSE and MAE as Spark's
  ``RegressionEvaluator`` computes them).

Every metric of an evaluation is computed in the same pass (``metrics``);
Spark's tuning classes take one number (``evaluate``), the project's tuning
(``models.tuning``) keeps them all.
"""

from __future__ import annotations

import math
from typing import Any

from pyspark import keyword_only
from pyspark.ml.evaluation import Evaluator
from pyspark.ml.param import TypeConverters
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.beyond_accuracy import Catalog
from book_recommender.columns import COLD_START, ITEM_IDX, PREDICTION, SERVED, USER_IDX
from book_recommender.metrics import (
    RANKING_PARTS,
    RELEVANT,
    regression_metrics,
    served_ranking,
)
from book_recommender.models.base import param

WARM = "warm"  # prefix of the metrics over users the model could rank
SERVED_BOOKS = "served_books"  # distinct books in the judged users' top-k lists
_TOP = "_top"
LOWER_IS_BETTER = {"rmse", "mae"}


class ServedEvaluator(Evaluator):
    """One metric (``metricName``: ``ndcg_at_10``, ``rmse``, ...) of served
    lists and predictions; see the module docstring."""

    metricName = param("metricName", "the metric returned", TypeConverters.toString)
    k = param("k", "list length judged", TypeConverters.toInt)
    ratingCol = param("ratingCol", "held-out ratings", TypeConverters.toString)
    relevanceThreshold = param(
        "relevanceThreshold",
        "a held-out rating at least this is relevant (unset: every one)",
        TypeConverters.toFloat,
    )

    @keyword_only
    def __init__(
        self, *, metricName=None, k=None, ratingCol=None, relevanceThreshold=None
    ) -> None:
        super().__init__()
        self._setDefault(metricName="ndcg_at_10", k=10, ratingCol="rating")
        self.setParams(**self._input_kwargs)
        self.catalog: Catalog | None = None
        self.pairs = False
        self.min_coverage: float | None = None

    @keyword_only
    def setParams(
        self, *, metricName=None, k=None, ratingCol=None, relevanceThreshold=None
    ):
        """Sets the given Params, by keyword."""
        return self._set(**self._input_kwargs)

    def judge_beyond_accuracy(
        self, catalog: Catalog, pairs: bool, min_coverage: float | None = None
    ) -> ServedEvaluator:
        """Add the ``beyond_accuracy`` measures of the lists, from ``catalog``
        (the training interactions); with ``pairs``, the within-list ones too.
        With ``min_coverage``, lists covering less of the catalog score the
        worst value for tuning (``score``; their metrics stay as they
        are): a family's best is one that meets it, if any does."""
        self.catalog, self.pairs, self.min_coverage = catalog, pairs, min_coverage
        return self

    def isLargerBetter(self) -> bool:
        return self.getOrDefault(self.metricName) not in LOWER_IS_BETTER

    def _evaluate(self, dataset: DataFrame) -> float:
        return self.score(self.metrics(dataset))

    def score(self, metrics: dict[str, float]) -> float:
        """The number tuning compares of ``metrics`` (what ``metrics``
        returned): the chosen metric, or the worst value when the lists cover
        less of the catalog than ``min_coverage``."""
        if (
            self.min_coverage is not None
            and metrics["catalog_coverage"] < self.min_coverage
        ):
            return -math.inf if self.isLargerBetter() else math.inf
        return metrics[self.getOrDefault(self.metricName)]

    def _relevant(self, dataset: DataFrame) -> DataFrame:
        if not self.isDefined(self.relevanceThreshold):
            return dataset
        threshold = self.getOrDefault(self.relevanceThreshold)
        return dataset.filter(F.col(self.getOrDefault(self.ratingCol)) >= threshold)

    def metrics(self, dataset: DataFrame) -> dict[str, float]:
        """Every metric of ``dataset`` (a model's ``transform`` of held-out
        ratings); see the module docstring."""
        k = self.getOrDefault(self.k)
        rating = PREDICTION in dataset.columns
        if rating:  # read twice: its served lists, its predictions
            # A checkpoint of its own, not cache(): Spark shares a cache between
            # equal plans, and tuning evaluates candidates in parallel threads,
            # so one evaluation's unpersist took the blocks from under another
            # (BlockNotFoundException in the log, partitions recomputed). The
            # blocks go when the frame is garbage-collected.
            dataset = dataset.localCheckpoint(eager=False)
        top = F.slice(F.coalesce(SERVED, F.array().cast("array<int>")), 1, k)
        per_user = served_ranking(
            self._relevant(dataset).select(
                USER_IDX, ITEM_IDX, SERVED, COLD_START, top.alias(_TOP)
            ),
            SERVED,
            k,
        )
        # Averaged on the driver with math.fsum (one row per judged user): the
        # exactly rounded sum does not depend on the rows' order, so two
        # candidates serving the same lists get the same metric to the last
        # bit and a tie goes to the earlier one (baselines first). Spark's avg
        # sums in partition order, which moved such ties by one ulp.
        rows = per_user.select(*RANKING_PARTS, COLD_START, _TOP, RELEVANT).collect()
        warm = [r for r in rows if r[COLD_START] is False]

        def mean(values: list[float]) -> float:
            return math.fsum(values) / len(values) if values else 0.0

        row = {part: mean([r[part] for r in rows]) for part in RANKING_PARTS}
        row |= {f"w_{part}": mean([r[part] for r in warm]) for part in RANKING_PARTS}
        row["cold"] = mean([1.0 if r[COLD_START] else 0.0 for r in rows])

        def value(column: str) -> float:
            return float(row[column])

        out: dict[str, Any] = {f"{p}_at_{k}": value(p) for p in RANKING_PARTS}
        out |= {f"{WARM}.{p}_at_{k}": value(f"w_{p}") for p in RANKING_PARTS}
        out["cold_user_share"] = value("cold")
        out[SERVED_BOOKS] = float(len({i for r in rows for i in r[_TOP] or ()}))
        if self.catalog is not None:
            out |= self.catalog.measures(
                [r[_TOP] or [] for r in rows],
                [i for r in rows for i in r[RELEVANT]],
                pairs=self.pairs,
            )
        if rating:
            out |= regression_metrics(dataset, self.getOrDefault(self.ratingCol))
        return out
