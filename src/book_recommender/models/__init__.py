"""The candidate families, each a Spark ML ``Estimator`` whose fitted ``Model``
serves top-k lists (``base``): ``popularity`` and ``bias`` (the baselines),
``als`` (implicit, explicit and biased ALS), ``knn`` (item-kNN), ``rp3``
(RP3beta, the whole catalog) and ``ease``."""

from book_recommender.models.als import BiasedAls, ExplicitAls, ImplicitAls
from book_recommender.models.base import (
    Interactions,
    ModelSpec,
    Recommender,
    RecommenderModel,
    TrainingData,
    popularity_scores,
)
from book_recommender.models.bias import BiasBaseline
from book_recommender.models.ease import Ease
from book_recommender.models.knn import ItemKnn
from book_recommender.models.popularity import Popularity
from book_recommender.models.rp3 import Rp3Beta

__all__ = [
    "BiasBaseline",
    "BiasedAls",
    "Ease",
    "ExplicitAls",
    "ImplicitAls",
    "Interactions",
    "ItemKnn",
    "ModelSpec",
    "Popularity",
    "Recommender",
    "RecommenderModel",
    "Rp3Beta",
    "TrainingData",
    "popularity_scores",
]
