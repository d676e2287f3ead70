"""The candidate families, each a Spark ML ``Estimator`` whose fitted ``Model``
serves top-k lists (``base``), each module declaring its row of the table of
families (``families``): ``popularity`` and ``bias`` (the baselines), ``als``
(implicit, explicit and biased ALS), ``knn`` (item-kNN), ``rp3`` (RP3beta, the
whole catalog) and ``ease``. ``records`` are what tuning and selection hand on.
"""

from book_recommender.models.base import (
    Interactions,
    Recommender,
    RecommenderModel,
    TrainingData,
    popularity_scores,
)
from book_recommender.models.families import Family
from book_recommender.models.records import (
    Candidate,
    Champion,
    TestResult,
    TuningResult,
)

__all__ = [
    "Candidate",
    "Champion",
    "Family",
    "Interactions",
    "Recommender",
    "RecommenderModel",
    "TestResult",
    "TrainingData",
    "TuningResult",
    "popularity_scores",
]
