"""The table of families, Spark's tuning of them (``models.tuning``) and the
picks among them (``models.selection``)."""

from __future__ import annotations

import random

import pytest
from pyspark.ml.tuning import CrossValidator, TrainValidationSplit
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, SERVED, USER_IDX
from book_recommender.models import Interactions, TuningResult
from book_recommender.models.bias import fit_biases
from book_recommender.models.families import families, named
from book_recommender.models.selection import to_test
from book_recommender.models.tuning import (
    evaluator,
    fit,
    judge,
    tune_family,
    validate,
)
from book_recommender.params import parse
from tests.reference import tuned_alone
from tests.test_params import BASE

ALS = parse(
    "als",
    {
        **BASE["als"],
        "ranking": {
            **BASE["als"]["ranking"],
            "rank": [2, 4],
            "reg_param": [0.1],
            "alpha": [1, 10],
            "num_epochs": 3,
        },
        "rating": {
            **BASE["als"]["rating"],
            "rank": [2],
            "reg_param": [0.1, 0.5],
            "num_epochs": 3,
        },
    },
)
ITEM_BASED = parse(
    "item_based",
    {
        **BASE["item_based"],
        "knn": {
            **BASE["item_based"]["knn"],
            "enabled": True,  # off in conf/base
            "similarity": ["cosine"],
            "neighbours": [25],
            "side_weight": [0.0, 2.0],
        },
        "rp3": {
            **BASE["item_based"]["rp3"],
            "alpha": [0.5],
            "beta": [0.0],
            "neighbours": [25],
            "side_weight": [0.0, 2.0],
        },
        "ease": {**BASE["item_based"]["ease"], "l2": [10, 100], "beta": [0.0, 5.0]},
    },
)
EVALUATION = parse("evaluation", {**BASE["evaluation"], "k": 5})


def candidates(als, item_based):
    return [c for f in families(als, item_based) for c in f.candidates()]


def point(label: str, als=ALS, **values):
    """The estimator of the family ``label`` (its YAML's fixed knobs set) at
    ``values`` of its Params, on the grid or off it."""
    return named(label, als, ITEM_BASED).at(**values)


def test_candidates_are_both_grids_each_after_its_baseline():
    names = [s.name for s in candidates(ALS, ITEM_BASED)]
    assert names == [
        "popularity",
        "implicit_rank2_reg0.1_alpha1",
        "implicit_rank2_reg0.1_alpha10",
        "implicit_rank4_reg0.1_alpha1",
        "implicit_rank4_reg0.1_alpha10",
        "knn_cosine_k25",
        "knn_cosine_k25_w2",
        "rp3_a0.5_b0_k25",
        "rp3_a0.5_b0_k25_w2",
        "ease_l2_10",
        "ease_l2_100",
        "ease_l2_10_beta5",
        "ease_l2_100_beta5",
        "bias_baseline",
        "biased_rank2_reg0.1",
        "biased_rank2_reg0.5",
    ]
    # The side information makes its own family, so its gain is measured.
    assert [f.label for f in families(ALS, ITEM_BASED)] == [
        "popularity",
        "implicit",
        "knn",
        "knn_side",
        "rp3",
        "rp3_side",
        "ease",
        "ease_side",
        "bias",
        "biased",
    ]
    roles = {c.name: c.role for c in candidates(ALS, ITEM_BASED)}
    assert roles["popularity"] == "ranking" and roles["bias_baseline"] == "rating"
    no_rating = ALS.model_copy(
        update={"rating": ALS.rating.model_copy(update={"enabled": False})}
    )
    assert {c.role for c in candidates(no_rating, ITEM_BASED)} == {"ranking"}
    no_items = ITEM_BASED.model_copy(
        update={
            "knn": ITEM_BASED.knn.model_copy(update={"enabled": False}),
            "rp3": ITEM_BASED.rp3.model_copy(update={"enabled": False}),
            "ease": ITEM_BASED.ease.model_copy(update={"enabled": False}),
        }
    )
    assert not {s.kind for s in candidates(ALS, no_items)} & {"knn", "rp3", "ease"}


def test_every_grid_point_is_named_and_logged_from_its_own_params():
    for family in families(ALS, ITEM_BASED):
        for estimator, candidate in zip(
            family.points(), family.candidates(), strict=True
        ):
            values = {p.name: v for p, v in estimator.extractParamMap().items()}
            assert candidate.hyperparameters == {
                axis: values[axis] for axis in estimator.axes
            }
            assert candidate.family == family.label
            assert estimator.settings().keys() >= candidate.hyperparameters.keys()
    rp3 = candidates(ALS, ITEM_BASED)[8]
    assert rp3.name == "rp3_a0.5_b0_k25_w2" and rp3.side_information
    assert rp3.hyperparameters == {
        "alpha": 0.5,
        "beta": 0.0,
        "neighbours": 25,
        "sideWeight": 2.0,
    }
    # Off the grid too (benchmarks), with the YAML's fixed knobs.
    knn = point("knn", similarity="cosine", neighbours=7)
    assert knn.getOrDefault("neighbours") == 7  # noqa: PLR2004
    assert knn.getOrDefault("maxUserItems") == ITEM_BASED.knn.max_user_items
    assert knn.settings()["maxUserItems"] == ITEM_BASED.knn.max_user_items


@pytest.fixture(scope="module")
def ratings(spark):
    rows = [
        (u, i, float(1 + (u * 7 + i * 3) % 10))
        for u in range(40)
        for i in range(30)
        if (u + i) % 3
    ]
    return spark.createDataFrame(rows, f"{USER_IDX} int, {ITEM_IDX} int, r float")


def _tuning(**overrides):
    return parse("tuning", {**BASE["tuning"], **overrides})


def _results(scores: dict[str, float]) -> list[TuningResult]:
    """Tuning results with each family's best flagged, as tune_family does."""
    results = []
    for family in families(ALS, ITEM_BASED):
        found = family.candidates()
        top = max(found, key=lambda c: scores.get(c.name, 0.1))
        for candidate in found:
            validation = {"ndcg_at_5": scores.get(candidate.name, 0.1)}
            if candidate.rating:
                validation["rmse"] = 1.0
            results.append(
                TuningResult(candidate, validation, candidate == top, 0.0, 0.0)
            )
    return results


def test_a_side_information_champion_is_tested_beside_the_best_without_it():
    """The best family without side information sees test too, so the gain
    is measured; without a side-information champion nothing extra is."""
    scores = {
        "ease_l2_100_beta5": 0.30,  # the champion, with the author term
        "knn_cosine_k25_w2": 0.29,  # second, but uses it too
        "ease_l2_10": 0.25,  # the best without it
    }
    tested = set(to_test(_results(scores), EVALUATION))
    assert tested == {"popularity", "bias_baseline", "ease_l2_100_beta5", "ease_l2_10"}
    scores["ease_l2_10"] = 0.31  # now the champion does without
    tested = set(to_test(_results(scores), EVALUATION))
    assert tested == {"popularity", "bias_baseline", "ease_l2_10"}


@pytest.fixture(scope="module")
def interactions(spark):
    implicit = spark.createDataFrame(
        [(0, 0), (1, 3), (40, 5)], f"{USER_IDX} int, {ITEM_IDX} int"
    )
    return Interactions(implicit=implicit, rating_col="r")


RANKING_METRICS = {"precision_at_5", "recall_at_5", "ndcg_at_5", "map_at_5"}
REGRESSION_METRICS = {"rmse", "mae", "r2", "explained_variance"}


@pytest.mark.parametrize(
    ("label", "values"),
    [
        ("implicit", {"rank": 2, "regParam": 0.1, "alpha": 1.0}),
        ("biased", {"rank": 2, "regParam": 0.1}),
        ("popularity", {}),
        ("bias", {}),
        ("knn", {"similarity": "cosine", "neighbours": 25}),
        ("rp3", {"alpha": 0.5, "beta": 0.0, "neighbours": 25, "sideWeight": 0.0}),
        ("ease", {"l2": 10.0}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_each_family_fits_and_is_judged_as_served(
    spark, ratings, interactions, label, values
):
    estimator = point(label, **values)
    spec = estimator.candidate()
    model = fit(estimator, ratings, interactions, EVALUATION)
    assert model.name == spec.name and model.fit_seconds > 0
    assert model.candidate == spec
    # Two target users: one the rating models know, one (41) nobody knows.
    target = ratings.filter(F.col(USER_IDX) == 3).unionByName(
        spark.createDataFrame([(41, 2, 5.0)], ratings.schema)
    )
    transformed = model.transform(target)
    assert transformed.count() == target.count()  # a frame in, the same rows out
    lists = {r[USER_IDX]: r[SERVED] for r in transformed.collect()}
    seen = {r[ITEM_IDX] for r in ratings.filter(F.col(USER_IDX) == 3).collect()}
    assert len(lists[3]) == 5 and not set(lists[3]) & seen  # seen books left out
    metrics = judge(model, target, EVALUATION)
    expected = RANKING_METRICS | {f"warm.{m}" for m in RANKING_METRICS}
    expected |= {"cold_user_share", "served_books"}
    if spec.rating:
        expected |= REGRESSION_METRICS
    assert set(metrics) == expected
    # Two judged users' top 5: at least 5 distinct books, at most 10.
    assert 5 <= metrics["served_books"] <= 10  # noqa: PLR2004
    assert 0.0 <= metrics["ndcg_at_5"] <= 1.0
    assert metrics["cold_user_share"] == pytest.approx(0.5)  # user 41
    if spec.rating:
        predicted = model.predict(target).collect()
        known = [r["prediction"] for r in predicted if r[USER_IDX] == 3]
        assert all(1.0 <= p <= 10.0 for p in known)  # clipped to the training range
        assert [r["prediction"] for r in predicted if r[USER_IDX] == 41] == [None]
    if spec.kind == "biased":
        assert model.rank == 4  # biases folded in


def test_the_popularity_model_scores_each_item_by_its_interactions(
    ratings, interactions
):
    model = fit(point("popularity"), ratings, interactions, EVALUATION)
    counts = {
        r[ITEM_IDX]: r["count"]
        for r in model.data.seen.groupBy(ITEM_IDX).count().collect()
    }
    scores = {r["id"]: r["features"][0] for r in model.item_factors().collect()}
    assert scores == pytest.approx(counts)
    # Every user who interacted has a factor, also one known from implicit rows only.
    assert 40 in {r["id"] for r in model.user_factors().collect()}


def test_the_bias_baseline_predicts_the_damped_biases(ratings, interactions):
    model = fit(point("bias"), ratings, interactions, EVALUATION)
    biases = fit_biases(ratings, "r", ALS.rating.bias_damping)
    expected = {
        (r[USER_IDX], r[ITEM_IDX]): r["prediction"]
        for r in biases.predict(ratings).collect()
    }
    got = model.predict(ratings).collect()
    assert len(got) == len(expected)
    for row in got:
        want = min(max(expected[(row[USER_IDX], row[ITEM_IDX])], 1.0), 10.0)
        assert row["prediction"] == pytest.approx(want, abs=1e-4)


def test_num_blocks_defaults_to_the_cores_spark_has(spark, ratings, interactions):
    explicit = ALS.model_copy(
        update={"rating": ALS.rating.model_copy(update={"kind": "explicit"})}
    )
    estimator = point("explicit", als=explicit, rank=2, regParam=0.1)
    default = fit(estimator, ratings, interactions, EVALUATION).als
    assert default.userFactors.rdd.getNumPartitions() == (
        spark.sparkContext.defaultParallelism
    )
    three = explicit.model_copy(update={"num_blocks": 3})
    estimator = point("explicit", als=three, rank=2, regParam=0.1)
    model = fit(estimator, ratings, interactions, EVALUATION).als
    assert model.itemFactors.rdd.getNumPartitions() == 3  # noqa: PLR2004


@pytest.fixture(scope="module")
def noisy(spark):
    """Readers with a taste (two groups of books) and noise, so grid points differ."""
    rng = random.Random(7)
    rows = [
        (u, i, float(rng.randint(1, 10)))
        for u in range(60)
        for i in range(40)
        if rng.random() < (0.35 if (i < 20) == (u % 2 == 0) else 0.08)
    ]
    return spark.createDataFrame(rows, f"{USER_IDX} int, {ITEM_IDX} int, r float")


@pytest.mark.parametrize("label", ["knn", "ease", "biased"])
def test_spark_tuning_makes_the_former_paths_choice(noisy, interactions, label):
    """TrainValidationSplit over a family (item-kNN and EASE sharing their
    fits through fitMultiple) gives every grid point the metrics of a fit of
    its own on the same split, and so the same choice; its best is refitted
    on all the ratings."""
    als = ALS.model_copy(
        update={"rating": ALS.rating.model_copy(update={"reg_param": [0.05, 3.0]})}
    )
    knn = ITEM_BASED.knn.model_copy(
        update={"similarity": ["cosine"], "neighbours": [2, 25]}
    )
    item_based = ITEM_BASED.model_copy(update={"knn": knn})
    family = next(f for f in families(als, item_based) if f.label == label)
    tuning = _tuning(method="TrainValidationSplit", train_ratio=0.75, parallelism=2)
    results, best = tune_family(family, noisy, interactions, EVALUATION, tuning)
    former = tuned_alone(family, noisy, interactions, tuning, EVALUATION)
    metric = EVALUATION.rating_metric if family.rating else EVALUATION.ranking_key
    assert [r.name for r in results] == list(former)
    for result in results:
        # ALS differs slightly between fits with one seed: compare with a tolerance.
        tolerance = 1e-3 if label == "biased" else 1e-9
        assert result.validation == pytest.approx(former[result.name], abs=tolerance)
    pick = (min if family.rating else max)(former, key=lambda n: former[n][metric])
    assert best.name == pick
    assert [r.name for r in results if r.best_of_family] == [pick]
    assert len({round(m[metric], 6) for m in former.values()}) > 1  # a real choice
    assert best.data.ratings is noisy  # refitted on all of them


@pytest.mark.parametrize(
    ("method", "spark_class", "metrics_of"),
    [
        ("TrainValidationSplit", TrainValidationSplit, "validationMetrics"),
        ("CrossValidator", CrossValidator, "avgMetrics"),
    ],
)
def test_tuning_judges_each_point_on_the_split_sparks_class_carves(
    noisy, interactions, method, spark_class, metrics_of
):
    """Spark's class as the oracle: its one number per grid point, on the
    split it draws with the same seed, is the tuning's metric of that point;
    the tuning keeps every other metric beside it."""
    family = next(f for f in families(ALS, ITEM_BASED) if f.label == "ease")
    judge_ = evaluator(EVALUATION, "r")
    family.estimator.with_interactions(interactions).serving(5, 1 << 20)
    tuning = _tuning(method=method, train_ratio=0.75, num_folds=2, seed=3)
    settings = (
        {"trainRatio": 0.75} if method == "TrainValidationSplit" else {"numFolds": 2}
    )
    tuned = spark_class(
        estimator=family.estimator,
        estimatorParamMaps=family.grid,
        evaluator=judge_,
        seed=3,
        **settings,
    ).fit(noisy)
    validated = validate(family, noisy, judge_, tuning)
    assert len(family.grid) > 1
    ndcg = [point.metrics["ndcg_at_5"] for point in validated]
    assert ndcg == pytest.approx(getattr(tuned, metrics_of), abs=1e-12)
    assert len(set(ndcg)) > 1  # the points differ
    assert {"recall_at_5", "served_books"} <= set(validated[0].metrics)
    # Each point's span is its own fit and evaluation, within the tuning.
    assert all(point.started < point.ended for point in validated)
    assert len({(point.started, point.ended) for point in validated}) == len(validated)
    assert judge_.isLargerBetter()
    assert not evaluator(EVALUATION, "r", rating=True).isLargerBetter()  # rmse
