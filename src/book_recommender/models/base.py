"""What every candidate family shares as a Spark ML stage.

A family is a ``Recommender`` (an ``Estimator``: its knobs are Spark ``Param``s,
so ``ParamGridBuilder`` builds its grid and ``TrainValidationSplit`` /
``CrossValidator`` tune it) whose ``fit`` returns a ``RecommenderModel``:

- ``transform(frame)`` adds to each row its user's served top-k (``SERVED``, the
  books in rank order; seen books left out, users the model cannot rank given
  the popular fallback, flagged ``COLD_START``) and, for a rating model, the
  predicted rating (``PREDICTION``; null for a pair it has no factors for);
- ``user_factors`` / ``item_factors`` (factor models) or ``item_weights``
  (item-based models) are what ranking, scoring and the served model read.

The frame a family is fitted on is the explicit ratings; what else it learns
from (the implicit interactions, the books' side information) is the
estimator's ``Interactions``, shared by every copy ``ParamGridBuilder`` makes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import COLD_START, ITEM_IDX, PREDICTION, SERVED, USER_IDX
from book_recommender.memory_plan import Footprint
from book_recommender.metrics import RANK, SCORE
from book_recommender.models.records import Candidate
from book_recommender.ranking import fallback_arrays, seen_lists, top_k_served
from book_recommender.topk import TILE_CELLS


@dataclass(frozen=True)
class TrainingData:
    """What one fit learns from, and what its model must not recommend again."""

    ratings: DataFrame  # explicit ratings (USER_IDX, ITEM_IDX, rating_col)
    implicit: DataFrame  # implicit interactions (USER_IDX, ITEM_IDX)
    rating_col: str
    side: DataFrame | None = None  # the books' side information (ITEM_IDX, SIDE)

    @cached_property
    def seen(self) -> DataFrame:
        """Every (USER_IDX, ITEM_IDX) interaction, cached: each fit and each
        served list reads it."""
        return (
            self.ratings.select(USER_IDX, ITEM_IDX)
            .unionByName(self.implicit.select(USER_IDX, ITEM_IDX))
            .cache()
        )

    @cached_property
    def popular(self) -> DataFrame:
        """The fallback ranking (ITEM_IDX, SCORE) of users a model cannot rank."""
        return popularity_scores(self.seen).cache()

    @cached_property
    def seen_lists(self) -> DataFrame:
        """``seen`` grouped by user (``ranking.seen_lists``), cached: every
        evaluation of a model fitted on this data ranks against it."""
        return seen_lists(self.seen).cache()

    @cached_property
    def popular_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``popular`` on the driver (``ranking.fallback_arrays``), once."""
        return fallback_arrays(self.popular)


def popularity_scores(interactions: DataFrame) -> DataFrame:
    """(ITEM_IDX, SCORE): how many interactions each item has."""
    return interactions.groupBy(ITEM_IDX).agg(
        F.count(F.lit(1)).cast("float").alias(SCORE)
    )


@dataclass
class Interactions:
    """What every family learns from beside the ratings it is fitted on: the
    implicit interactions and the books' side information. One
    ``TrainingData`` per fitted frame, so the candidates of one split share its
    cached seen items and fallback."""

    implicit: DataFrame
    rating_col: str
    side: DataFrame | None = None
    _data: dict[int, tuple[DataFrame, TrainingData]] = field(
        default_factory=dict, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def of(self, ratings: DataFrame) -> TrainingData:
        with self._lock:
            known = self._data.get(id(ratings))
            if known is None or known[0] is not ratings:
                known = (
                    ratings,
                    TrainingData(ratings, self.implicit, self.rating_col, self.side),
                )
                self._data[id(ratings)] = known
            return known[1]


def param(name: str, doc: str, converter: Callable[[Any], Any]) -> Param:
    """A family's knob, as ``pyspark.ml`` declares its own."""
    return Param(Params._dummy(), name, doc, typeConverter=converter)


class _ServingParams(Params):
    k = Param(
        Params._dummy(),
        "k",
        "books served per user by transform",
        typeConverter=TypeConverters.toInt,
    )
    tileCells = Param(
        Params._dummy(),
        "tileCells",
        "user x item scores one top-k task holds at once",
        typeConverter=TypeConverters.toInt,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(k=10, tileCells=TILE_CELLS)

    def serving(self, k: int, tile_cells: int):
        """Serve ``k`` books per user, scored ``tile_cells`` at once (an
        estimator passes both to its models)."""
        return self._set(k=k, tileCells=tile_cells)


class Recommender(Estimator, _ServingParams):
    """A candidate family. Subclasses define their ``Param``s, ``kind``,
    ``axes`` (the ``Param``s tuning varies, which name a candidate),
    ``candidate_name`` and ``_fit_data`` (the fit on ``TrainingData``); ``fit``
    measures its seconds."""

    kind: ClassVar[str]
    role: ClassVar[str] = "ranking"  # or "rating": it predicts ratings
    baseline: ClassVar[bool] = False
    axes: ClassVar[tuple[str, ...]] = ()
    interactions: Interactions | None = None

    def with_interactions(self, interactions: Interactions) -> Recommender:
        self.interactions = interactions
        return self

    def hyperparameters(self) -> dict[str, Any]:
        """The values of its ``axes`` (from ``extractParamMap``)."""
        values = {p.name: v for p, v in self.extractParamMap().items()}
        return {name: values[name] for name in self.axes}

    def settings(self) -> dict[str, Any]:
        """Every knob it fits with (``extractParamMap``: what tuning varies and
        what the YAML fixes), the serving ones aside: what a run logs."""
        serving = {self.k.name, self.tileCells.name}
        return {
            p.name: v
            for p, v in self.extractParamMap().items()
            if p.name not in serving
        }

    def uses_side_information(self) -> bool:
        """Whether it weighs the books' side information (its side axis > 0)."""
        return False

    def candidate_name(self) -> str:
        """The candidate's name in logs, reports and MLflow."""
        return self.kind

    def candidate(self) -> Candidate:
        """This grid point as the project names and logs it."""
        return Candidate(
            name=self.candidate_name(),
            kind=self.kind,
            role=self.role,
            baseline=self.baseline,
            side_information=self.uses_side_information(),
            hyperparameters=self.hyperparameters(),
        )

    def footprint(self, books: int, parallel: int) -> Footprint | None:
        """What a fit over ``books`` books holds in the driver, ``parallel``
        fits at once (``memory_plan``); None for a family whose memory the
        driver does not hold (Spark's ALS, the baselines)."""
        return None

    def _fit_data(self, data: TrainingData) -> RecommenderModel:
        raise NotImplementedError

    def _data(self, dataset: DataFrame) -> TrainingData:
        if self.interactions is None:
            raise ValueError(
                f"{type(self).__name__} needs its Interactions (implicit "
                "interactions, side information): call with_interactions first."
            )
        return self.interactions.of(dataset)

    def _fit(self, dataset: DataFrame) -> RecommenderModel:
        return self._finish(self._fit_data, dataset)

    def _finish(
        self, fit: Callable[[TrainingData], RecommenderModel], dataset: DataFrame
    ) -> RecommenderModel:
        started = time.perf_counter()
        data = self._data(dataset)
        model = fit(data)
        model.candidate, model.data = self.candidate(), data
        model.fit_seconds = time.perf_counter() - started
        return self._copyValues(model)


class SharedFitRecommender(Recommender):
    """A family whose grid points share work (item-kNN, EASE): the points with
    one ``_share_key`` share one ``_shared`` fit, computed once when the first
    of them is asked for (``fitMultiple``, as Spark's tuning calls it); each
    model is made from it by ``_from_shared``. A fit alone is a group of one."""

    def _share_key(self) -> Any:
        raise NotImplementedError

    def _shared(self, group: list[SharedFitRecommender], data: TrainingData) -> Any:
        raise NotImplementedError

    def _from_shared(self, shared: Any, data: TrainingData) -> RecommenderModel:
        raise NotImplementedError

    def _fit_data(self, data: TrainingData) -> RecommenderModel:
        return self._from_shared(self._shared([self], data), data)

    def fitMultiple(
        self, dataset: DataFrame, paramMaps: Sequence[dict]
    ) -> Iterator[tuple[int, RecommenderModel]]:
        copies = [self.copy(param_map) for param_map in paramMaps]
        groups: dict[Any, list[SharedFitRecommender]] = {}
        for estimator in copies:
            groups.setdefault(estimator._share_key(), []).append(estimator)
        done: dict[Any, Any] = {}
        lock = threading.Lock()

        def fit_one(index: int) -> RecommenderModel:
            estimator = copies[index]
            group = estimator._share_key()

            def fit(data: TrainingData) -> RecommenderModel:
                with lock:
                    if group not in done:
                        done[group] = estimator._shared(groups[group], data)
                return estimator._from_shared(done[group], data)

            return estimator._finish(fit, dataset)

        return _Fits(fit_one, len(paramMaps))


class _Fits:
    """What ``Estimator.fitMultiple`` returns: a thread-safe iterator of
    (index, model), each model fitted when its index is drawn, so the
    tuning's ``parallelism`` threads fit different points at once."""

    def __init__(self, fit_one: Callable[[int], RecommenderModel], n: int) -> None:
        self._fit_one, self._n, self._next = fit_one, n, 0
        self._lock = threading.Lock()

    def __iter__(self) -> _Fits:
        return self

    def __next__(self) -> tuple[int, RecommenderModel]:
        with self._lock:
            index = self._next
            if index >= self._n:
                raise StopIteration
            self._next += 1
        return index, self._fit_one(index)


class RecommenderModel(Model, _ServingParams):
    """A fitted candidate: see the module docstring."""

    candidate: Candidate
    data: TrainingData
    fit_seconds: float = 0.0
    clip: tuple[float, float] | None = None  # rating range predictions stay in
    rank: int = 0  # factor length (0: item-based)

    @property
    def name(self) -> str:
        return self.candidate.name

    @property
    def predicts_ratings(self) -> bool:
        return False

    def user_factors(self) -> DataFrame | None:
        """(``id``, ``features``) per user, as ``ALSModel.userFactors``; None
        for an item-based model (a user is the books they have seen)."""
        return None

    def item_factors(self) -> DataFrame | None:
        """(``id``, ``features``) per item; None for an item-based model."""
        return None

    @property
    def fold_in(self) -> dict[str, Any] | None:
        """How a factor model's served copy solves a reader's factors from a
        history the request sends (``HistoryScorer.fold_in``); None: it
        cannot."""
        return None

    def item_weights(self) -> Any:
        """An item-based model's item-item weights (``ItemWeightsModel``);
        None else."""
        return None

    @property
    def nbytes(self) -> int | None:
        """The size of an item-based model's weights."""
        weights = self.item_weights()
        return None if weights is None else weights.nbytes

    @property
    def spark_model(self) -> Any:
        """A Spark ML model MLflow's Spark flavour can log (ALS), else None."""
        return None

    def served(self, users: DataFrame) -> DataFrame:
        """The top ``k`` of each of ``users`` (USER_IDX) as served: USER_IDX,
        ITEM_IDX, SCORE, RANK, COLD_START rows (``ranking.top_k_served``)."""
        return top_k_served(
            self,
            users,
            self.data.seen_lists,
            self.data.popular_arrays,
            self.getOrDefault(self.k),
            self.getOrDefault(self.tileCells),
        )

    def predict(self, pairs: DataFrame) -> DataFrame:
        """``pairs`` with PREDICTION (clipped; null where the model has no
        factors); only for rating models."""
        raise ValueError(
            f"{self.name} is a ranking model: it ranks books, it predicts no ratings."
        )

    def _clipped(self, predicted: DataFrame) -> DataFrame:
        prediction = F.col(PREDICTION)
        if self.clip is not None:
            low, high = self.clip
            prediction = F.least(F.greatest(prediction, F.lit(low)), F.lit(high))
        # No factors: NaN from ALS, null from the biases; null either way (and
        # not clipped: least/greatest would skip the null).
        known = F.col(PREDICTION).isNotNull() & ~F.isnan(PREDICTION)
        prediction = F.when(known, prediction)
        return predicted.withColumn(PREDICTION, prediction.cast("float"))

    def _transform(self, dataset: DataFrame) -> DataFrame:
        served = self.served(dataset.select(USER_IDX).distinct())
        lists = served.groupBy(USER_IDX).agg(
            F.sort_array(F.collect_list(F.struct(RANK, ITEM_IDX)))[ITEM_IDX].alias(
                SERVED
            ),
            F.max(COLD_START).alias(COLD_START),
        )
        out = dataset.join(lists, on=USER_IDX, how="left")
        return self.predict(out) if self.predicts_ratings else out


class ItemWeightsModel(RecommenderModel):
    """A fitted item-based family: its item-item weights (``NeighbourWeights``
    or ``EaseWeights``), a user scored from the books they have seen."""

    weights: Any

    @classmethod
    def of(cls, weights: Any) -> ItemWeightsModel:
        """A model holding ``weights``."""
        model = cls()
        model.weights = weights
        return model

    def item_weights(self) -> Any:
        return self.weights
