"""Tuning every family with Spark's own classes, picking among the families, and
judging the picks on test; used by the data_science nodes.

Two questions, two groups of families (``models``):

- the ranking families (which books will this reader pick up?): ``popularity``
  (the baseline), ``implicit`` ALS, item-kNN, RP3beta and EASE, each of the item-based
  ones also with the books' side information (the author) as its own family, so
  that what the side information adds is measured;
- the rating families (how would this reader rate this book?): the ``bias``
  baseline and ``biased`` (or the tutorial's ``explicit``) ALS.

Each family's grid (``ParamGridBuilder`` from the YAML) is tuned by
``TrainValidationSplit`` or ``CrossValidator`` on the training ratings with the
``ServedEvaluator`` (the ranking metric, or for the rating families the rating
metric), which refits the family's best on all of them. The project then only
picks among the families: the recommender champion is the family best with the
best validation ranking metric, the rating champion the rating family best with
the best rating metric (a tie goes to the earlier family: baselines first).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from pyspark.ml.param import Param
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder, TrainValidationSplit
from pyspark.sql import DataFrame

from book_recommender import memory_plan
from book_recommender.beyond_accuracy import Catalog
from book_recommender.evaluation import LOWER_IS_BETTER, ServedEvaluator
from book_recommender.models import (
    BiasBaseline,
    BiasedAls,
    Ease,
    ExplicitAls,
    ImplicitAls,
    Interactions,
    ItemKnn,
    ModelSpec,
    Popularity,
    Recommender,
    RecommenderModel,
    Rp3Beta,
)
from book_recommender.models.base import BASELINE_NAMES
from book_recommender.params import (
    AlsParams,
    EvaluationParams,
    ItemBasedParams,
    TuningParams,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Family:
    """A family's estimator (fixed knobs set) and the grid tuning varies."""

    label: str
    estimator: Recommender
    grid: list[dict[Param, Any]]
    rating: bool = False  # tuned on the rating metric

    def specs(self) -> list[ModelSpec]:
        return [self.estimator.copy(point).spec() for point in self.grid]


def _grid(estimator: Recommender, **axes: list[Any]) -> list[dict[Param, Any]]:
    builder = ParamGridBuilder()
    for name, values in axes.items():
        builder.addGrid(estimator.getParam(name), list(values))
    return builder.build() or [{}]


def _estimator(kind: str, als: AlsParams, item_based: ItemBasedParams) -> Recommender:
    """The family's estimator of ``kind`` with its fixed knobs from the YAML."""
    ranking, rating = als.ranking, als.rating
    knn = item_based.knn
    blocks = als.num_blocks or 0
    builders: dict[str, Callable[[], Recommender]] = {
        "popularity": Popularity,
        "implicit": lambda: ImplicitAls(
            maxIter=ranking.num_epochs,
            seed=als.seed,
            numBlocks=blocks,
            nonnegative=ranking.nonnegative,
            implicitStrength=ranking.implicit_strength,
            minItemInteractions=ranking.min_item_interactions,
        ),
        "knn": lambda: ItemKnn(
            maxUserItems=knn.max_user_items,
            bm25K1=knn.bm25_k1,
            bm25B=knn.bm25_b,
            seed=item_based.seed,
        ),
        "rp3": lambda: Rp3Beta(
            maxUserItems=item_based.rp3.max_user_items,
            minItemReaders=item_based.rp3.min_item_readers,
            seed=item_based.seed,
        ),
        "ease": lambda: Ease(maxItems=item_based.ease.max_items),
        "bias": lambda: BiasBaseline(damping=rating.bias_damping),
        "biased": lambda: BiasedAls(
            maxIter=rating.num_epochs,
            seed=als.seed,
            numBlocks=blocks,
            damping=rating.bias_damping,
        ),
        "explicit": lambda: ExplicitAls(
            maxIter=rating.num_epochs,
            seed=als.seed,
            numBlocks=blocks,
            nonnegative=rating.nonnegative,
        ),
    }
    return builders[kind]()


# ModelSpec field -> the families' Param it sets.
_SPEC_PARAMS = {
    "rank": "rank",
    "reg_param": "regParam",
    "alpha": "alpha",
    "similarity": "similarity",
    "neighbours": "neighbours",
    "side_weight": "sideWeight",
    "penalty": "beta",
    "l2": "l2",
    "beta": "beta",
}


def _split_side(values: list[float]) -> list[tuple[str, list[float]]]:
    """A side-information axis as the plain family's values (0) and the side
    family's (above 0), each only if it has any."""
    parts = [("", [v for v in values if not v]), ("_side", [v for v in values if v])]
    return [(suffix, part) for suffix, part in parts if part]


def families(als: AlsParams, item_based: ItemBasedParams) -> list[Family]:
    """The enabled families in the order they are tuned and picked among:
    popularity, then the ranking families; the bias baseline, then the rating
    family. Each baseline comes before its families, so a family that only ties
    with it is not chosen over it. Item-kNN and EASE with side information are
    families of their own, so what it adds is measured."""

    def make(kind: str) -> Recommender:
        return _estimator(kind, als, item_based)

    out = [Family("popularity", make("popularity"), [{}])]
    ranking, knn, ease = als.ranking, item_based.knn, item_based.ease
    if ranking.enabled:
        implicit = make("implicit")
        grid = _grid(
            implicit, rank=ranking.rank, regParam=ranking.reg_param, alpha=ranking.alpha
        )
        out.append(Family("implicit", implicit, grid))
    if knn.enabled:
        estimator = make("knn")
        for suffix, weights in _split_side(knn.side_weight):
            grid = _grid(
                estimator,
                similarity=knn.similarity,
                sideWeight=weights,
                neighbours=knn.neighbours,
            )
            out.append(Family(f"knn{suffix}", estimator, grid))
    rp3 = item_based.rp3
    if rp3.enabled:
        estimator = make("rp3")
        for suffix, weights in _split_side(rp3.side_weight):
            grid = _grid(
                estimator,
                alpha=rp3.alpha,
                beta=rp3.beta,
                sideWeight=weights,
                neighbours=rp3.neighbours,
            )
            out.append(Family(f"rp3{suffix}", estimator, grid))
    if ease.enabled:
        estimator = make("ease")
        for suffix, betas in _split_side(ease.beta):
            grid = _grid(estimator, l2=ease.l2, beta=betas)
            out.append(Family(f"ease{suffix}", estimator, grid))
    rating = als.rating
    if rating.enabled:
        out.append(Family("bias", make("bias"), [{}], rating=True))
        estimator = make(rating.kind)
        grid = _grid(estimator, rank=rating.rank, regParam=rating.reg_param)
        out.append(Family(rating.kind, estimator, grid, rating=True))
    return out


def check_memory(
    chosen: list[Family], books: int, parallelism: int, spark: Any
) -> None:
    """Refuses, before any fit, a family whose grid would not fit in the
    driver over ``books`` books (``memory_plan``)."""
    footprints = [
        need
        for family in chosen
        for point in family.grid
        if (need := family.estimator.copy(point).footprint(books, parallelism))
    ]
    memory_plan.check(
        footprints,
        books,
        memory_plan.driver_bytes(spark),
        memory_plan.physical_bytes(),
    )


def candidates(als: AlsParams, item_based: ItemBasedParams) -> list[ModelSpec]:
    """Every grid point of every enabled family, in tuning order."""
    return [spec for family in families(als, item_based) for spec in family.specs()]


def estimator_for(
    spec: ModelSpec, als: AlsParams, item_based: ItemBasedParams
) -> Recommender:
    """The estimator fitting ``spec``: its family's, with the YAML's fixed
    knobs, at the spec's hyperparameters."""
    estimator = _estimator(spec.kind, als, item_based)
    values = {
        _SPEC_PARAMS[key]: getattr(spec, key)
        for key in _SPEC_PARAMS
        if getattr(spec, key) is not None
    }
    return estimator._set(**values)


# --------------------------------------------------------------------------------------
# Tuning


def evaluator(evaluation: EvaluationParams, rating_col: str, rating: bool = False):
    """The ``ServedEvaluator`` of the configured k, threshold and metric."""
    threshold = evaluation.relevance_threshold
    return ServedEvaluator(
        metricName=evaluation.rating_metric if rating else evaluation.ranking_key,
        k=evaluation.k,
        ratingCol=rating_col,
        **({} if threshold is None else {"relevanceThreshold": threshold}),
    )


def _tuner(family: Family, scorer: ServedEvaluator, tuning: TuningParams):
    common = {
        "estimator": family.estimator,
        "estimatorParamMaps": family.grid,
        "evaluator": scorer,
        "parallelism": tuning.parallelism,
        "seed": tuning.seed,
    }
    if tuning.method == "TrainValidationSplit":
        return TrainValidationSplit(trainRatio=tuning.train_ratio, **common)
    return CrossValidator(numFolds=tuning.num_folds, **common)


def tune_family(
    family: Family,
    ratings: DataFrame,
    interactions: Interactions,
    evaluation: EvaluationParams,
    tuning: TuningParams,
    catalog: Catalog | None = None,
) -> tuple[list[dict[str, Any]], RecommenderModel]:
    """The family tuned by Spark's class on ``ratings``: each grid point's
    validation metrics (averaged over the folds; with the training
    ``catalog``, the measures of ``beyond_accuracy`` too) and the best
    point refitted on all of ``ratings``."""
    started = time.time()
    scorer = evaluator(evaluation, interactions.rating_col, family.rating)
    if catalog is not None:
        scorer.judge_beyond_accuracy(
            catalog, pairs=True, min_coverage=evaluation.min_catalog_coverage
        )
    family.estimator.with_interactions(interactions).serving(
        evaluation.k, evaluation.tile_cells
    )
    tuned = _tuner(family, scorer, tuning).fit(ratings)
    best = tuned.bestModel
    span = {"started": started, "ended": time.time(), "tuned_as": family.label}
    results = []
    for spec in family.specs():
        metrics = scorer.mean_recorded(spec.name)
        _log_validation(spec, metrics, evaluation, tuning.method)
        results.append(
            {
                "name": spec.name,
                "params": spec.as_params(),
                "validation": metrics,
                "best_of_family": spec.name == best.name,
            }
            | span
        )
    return results, best


def _log_validation(
    spec: ModelSpec, metrics: dict[str, float], evaluation: EvaluationParams, label: str
) -> None:
    rating = (
        f", {evaluation.rating_metric} = {metrics[evaluation.rating_metric]:.4f}"
        if spec.family == "rating"
        else ""
    )
    logger.info(
        "%s: validation %s = %.4f%s (%s)",
        spec.name,
        evaluation.ranking_key,
        metrics[evaluation.ranking_key],
        rating,
        label,
    )


def in_parallel(work: Callable[[Any], T], items: list[Any], n: int) -> list[T]:
    """``work`` for every item, ``n`` at a time: on small data a fit or an
    evaluation is many short Spark jobs that leave the cores idle between them.
    Results keep the order of ``items``."""
    if n == 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(work, items))


# --------------------------------------------------------------------------------------
# Picking among the families


def better(metric: str, candidate: float, best: float) -> bool:
    return candidate < best if metric in LOWER_IS_BETTER else candidate > best


def best(results: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The result with the best ``results[i]["validation"][metric]``; a tie goes
    to the earlier one (baselines come first)."""
    chosen = results[0]
    for result in results[1:]:
        if better(metric, result["validation"][metric], chosen["validation"][metric]):
            chosen = result
    return chosen


def _family_bests(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if r.get("best_of_family", True)]


def covering(
    results: list[dict[str, Any]], evaluation: EvaluationParams
) -> list[dict[str, Any]]:
    """The results whose validation lists cover at least
    ``evaluation.min_catalog_coverage`` of the catalog (all without one).
    Raises ``ValueError`` naming the setting and the best coverage found when
    none does."""
    least = evaluation.min_catalog_coverage
    if least is None:
        return results
    meeting = [r for r in results if r["validation"]["catalog_coverage"] >= least]
    if not meeting:
        top = max(results, key=lambda r: r["validation"]["catalog_coverage"])
        raise ValueError(
            f"evaluation.min_catalog_coverage is {least:g}, but no candidate's "
            "validation lists cover that much of the catalog: the best is "
            f"{top['name']} with {top['validation']['catalog_coverage']:.4g}. "
            "Lower the setting (or null: no constraint), or add candidates that "
            "cover more (e.g. item_based.rp3)."
        )
    return meeting


def pick_champions(
    results: list[dict[str, Any]], evaluation: EvaluationParams
) -> dict[str, tuple[dict[str, Any], str]]:
    """Per role, the family best ``best`` picks on validation and the metric it
    is picked on: the recommender among every family on the ranking metric,
    the rating champion among the rating families (if any) on the rating
    metric."""
    bests = _family_bests(results)
    pools = {"recommender": (covering(bests, evaluation), evaluation.ranking_key)}
    rating = [r for r in bests if r["params"]["family"] == "rating"]
    if rating:
        pools["rating"] = (rating, evaluation.rating_metric)
    return {
        role: (best(pool, metric), metric) for role, (pool, metric) in pools.items()
    }


def uses_side_information(params: dict[str, Any]) -> bool:
    """Whether a candidate's params (``ModelSpec.as_params``) weigh the books'
    side information (an item-kNN side weight or an EASE beta above 0)."""
    return bool(params.get("side_weight") or params.get("beta"))


def best_without_side_information(
    results: list[dict[str, Any]], evaluation: EvaluationParams
) -> dict[str, Any] | None:
    """If the recommender champion uses side information, the family best
    ``best`` picks on validation among the families without it: judged on test
    beside it, it shows what the side information adds. Else None."""
    champion, metric = pick_champions(results, evaluation)["recommender"]
    if not uses_side_information(champion["params"]):
        return None
    plain = [
        r for r in _family_bests(results) if not uses_side_information(r["params"])
    ]
    return best(plain, metric)


def to_test(results: list[dict[str, Any]], evaluation: EvaluationParams) -> list[str]:
    """The candidates judged on test: the champions, the baselines they are
    judged against and, for a champion using side information, the best family
    without it. The others stop at their validation metrics and never see test."""
    chosen = {
        champion["name"] for champion, _ in pick_champions(results, evaluation).values()
    }
    reference = best_without_side_information(results, evaluation)
    if reference is not None:
        chosen.add(reference["name"])
    return [
        r["name"]
        for r in results
        if r["name"] in chosen or r["params"]["model_kind"] in BASELINE_NAMES
    ]


# --------------------------------------------------------------------------------------
# The champions' records

# The baseline each role's champion is judged against.
BASELINE_OF = {
    "recommender": BASELINE_NAMES["popularity"],
    "rating": BASELINE_NAMES["bias"],
}


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {m: round(v, 4) for m, v in metrics.items()}


def _champion(
    role: str, chosen: dict[str, Any], metric: str, test: dict[str, dict[str, float]]
) -> dict[str, Any]:
    baseline = BASELINE_OF[role]
    mine, theirs = test[chosen["name"]][metric], test[baseline][metric]
    beats = chosen["name"] != baseline and better(metric, mine, theirs)
    if chosen["name"] == baseline:
        logger.warning(
            "The %s champion is the %s baseline: no model beat it on validation %s "
            "(%.4f). It is registered and served as it is.",
            role,
            baseline.replace("_", " "),
            metric,
            chosen["validation"][metric],
        )
    elif not beats:
        logger.warning(
            "The %s champion %s does NOT beat the %s baseline on test: %s %.4f vs %.4f.",
            role,
            chosen["name"],
            baseline.replace("_", " "),
            metric,
            mine,
            theirs,
        )
    return {
        "role": role,
        "name": chosen["name"],
        "kind": chosen["params"]["model_kind"],
        "selected_by": f"validation_{metric}",
        "validation_value": chosen["validation"][metric],
        "params": chosen["params"],
        "test_metrics": test[chosen["name"]],
        "baseline": baseline,
        "baseline_test_metrics": test[baseline],
        "beats_baseline": {metric: beats},
    }


def champion_records(
    results: list[dict[str, Any]],
    tested: list[dict[str, Any]],
    evaluation: EvaluationParams,
) -> dict[str, Any]:
    """Per role, the champion ``pick_champions`` picks with its test metrics
    and its baseline's; a champion using side information also carries the
    best family without it (``without_side_information``). A champion that is
    its baseline, or loses to it on test, is said loudly."""
    test = {m["name"]: m["metrics"] for m in tested}
    champions = {
        role: _champion(role, chosen, metric, test)
        for role, (chosen, metric) in pick_champions(results, evaluation).items()
    }
    bests = _family_bests(results)
    left_out = [r for r in bests if r not in covering(bests, evaluation)]
    if left_out:
        champions["recommender"]["left_out_by_min_catalog_coverage"] = {
            r["name"]: r["validation"]["catalog_coverage"] for r in left_out
        }
        logger.warning(
            "evaluation.min_catalog_coverage %g left out of the recommender "
            "champion's choice: %s",
            evaluation.min_catalog_coverage,
            ", ".join(
                f"{r['name']} (covers {r['validation']['catalog_coverage']:.4g})"
                for r in left_out
            ),
        )
    reference = best_without_side_information(results, evaluation)
    if reference is not None:
        recommender = champions["recommender"]
        metric = recommender["selected_by"].removeprefix("validation_")
        recommender["without_side_information"] = {
            "name": reference["name"],
            "params": reference["params"],
            "validation_value": reference["validation"][metric],
            "test_metrics": test[reference["name"]],
        }
        logger.info(
            "Without side information the best candidate is %s: on test %s %.4f "
            "against the champion's %.4f",
            reference["name"],
            metric,
            test[reference["name"]][metric],
            recommender["test_metrics"][metric],
        )
    for role, champion in champions.items():
        logger.info(
            "%s champion: %s (%s %.4f); on test %s",
            role.capitalize(),
            champion["name"],
            champion["selected_by"],
            champion["validation_value"],
            _rounded(champion["test_metrics"]),
        )
    return champions


def fit(
    spec: ModelSpec,
    ratings: DataFrame,
    interactions: Interactions,
    als: AlsParams,
    item_based: ItemBasedParams,
    evaluation: EvaluationParams,
) -> RecommenderModel:
    """One candidate fitted alone on ``ratings``, serving ``evaluation.k``
    books (benchmarks, tests)."""
    estimator = estimator_for(spec, als, item_based).with_interactions(interactions)
    return estimator.serving(evaluation.k, evaluation.tile_cells).fit(ratings)


def judge(
    model: RecommenderModel,
    target: DataFrame,
    evaluation: EvaluationParams,
    catalog: Catalog | None = None,
) -> dict[str, float]:
    """Every metric of ``model`` on ``target`` as served (``ServedEvaluator``),
    with every measure of ``beyond_accuracy`` given the training ``catalog``."""
    scorer = evaluator(evaluation, model.data.rating_col, model.predicts_ratings)
    if catalog is not None:
        scorer.judge_beyond_accuracy(catalog, pairs=True)
    return scorer.metrics(model.transform(target))
