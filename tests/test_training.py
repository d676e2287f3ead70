"""Candidates, validation splits and the model kinds of training.py."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.models import fit_bias_model
from book_recommender.params import parse
from book_recommender.training import (
    ModelSpec,
    TrainingData,
    candidates,
    evaluate,
    fit,
    shared_fits,
    to_refit,
    tune,
    validation_splits,
)
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
            "similarity": ["cosine"],
            "neighbours": [25],
            "side_weight": [0.0, 2.0],
        },
        "ease": {**BASE["item_based"]["ease"], "l2": [10, 100], "beta": [0.0, 5.0]},
    },
)
EVALUATION = parse("evaluation", {**BASE["evaluation"], "k": 5})


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
        "ease_l2_10",
        "ease_l2_10_beta5",
        "ease_l2_100",
        "ease_l2_100_beta5",
        "bias_baseline",
        "biased_rank2_reg0.1",
        "biased_rank2_reg0.5",
    ]
    families = {s.name: s.family for s in candidates(ALS, ITEM_BASED)}
    assert families["popularity"] == "ranking" and families["bias_baseline"] == "rating"
    no_rating = ALS.model_copy(
        update={"rating": ALS.rating.model_copy(update={"enabled": False})}
    )
    assert {s.family for s in candidates(no_rating, ITEM_BASED)} == {"ranking"}
    no_items = ITEM_BASED.model_copy(
        update={
            "knn": ITEM_BASED.knn.model_copy(update={"enabled": False}),
            "ease": ITEM_BASED.ease.model_copy(update={"enabled": False}),
        }
    )
    assert not {s.kind for s in candidates(ALS, no_items)} & {"knn", "ease"}


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


def _result(spec: ModelSpec, ndcg: float, rmse: float | None = None):
    validation = {"ndcg_at_5": ndcg} | ({} if rmse is None else {"rmse": rmse})
    return {"name": spec.name, "params": spec.as_params(), "validation": validation}


def test_a_side_information_champion_is_refitted_beside_the_best_without_it():
    """The best candidate without side information sees test too, so the gain
    is measured; without a side-information champion nothing extra is refitted."""
    specs = candidates(ALS, ITEM_BASED)
    by_name = {spec.name: spec for spec in specs}
    scores = dict.fromkeys(by_name, 0.1) | {
        "ease_l2_100_beta5": 0.30,  # the champion, with the author term
        "knn_cosine_k25_w2": 0.29,  # second, but uses it too
        "ease_l2_10": 0.25,  # the best without it
    }
    results = [
        _result(spec, scores[spec.name], 1.0 if spec.family == "rating" else None)
        for spec in specs
    ]
    refit = {spec.name for spec in to_refit(specs, results, EVALUATION)}
    assert refit == {"popularity", "bias_baseline", "ease_l2_100_beta5", "ease_l2_10"}

    scores["ease_l2_10"] = 0.31  # now the champion does without
    results = [
        _result(spec, scores[spec.name], 1.0 if spec.family == "rating" else None)
        for spec in specs
    ]
    refit = {spec.name for spec in to_refit(specs, results, EVALUATION)}
    assert refit == {"popularity", "bias_baseline", "ease_l2_10"}


def test_train_validation_split_is_disjoint_and_complete(ratings):
    [(fit_part, validation)] = validation_splits(
        ratings, _tuning(method="TrainValidationSplit", train_ratio=0.75)
    )
    assert fit_part.count() + validation.count() == ratings.count()
    assert fit_part.join(validation, on=[USER_IDX, ITEM_IDX]).count() == 0
    assert fit_part.count() / ratings.count() == pytest.approx(0.75, abs=0.05)


def test_cross_validator_folds_cover_each_row_once(ratings):
    splits = validation_splits(ratings, _tuning(method="CrossValidator", num_folds=3))
    assert len(splits) == 3
    validations = splits[0][1].unionByName(splits[1][1]).unionByName(splits[2][1])
    assert (
        validations.exceptAll(ratings).count() == 0
        and ratings.exceptAll(validations).count() == 0
    )
    for fit_part, validation in splits:
        assert fit_part.count() + validation.count() == ratings.count()


@pytest.fixture(scope="module")
def data(spark, ratings):
    implicit = spark.createDataFrame(
        [(0, 0), (1, 3), (40, 5)], f"{USER_IDX} int, {ITEM_IDX} int"
    )
    return TrainingData(ratings=ratings, implicit=implicit, rating_col="r")


RANKING_METRICS = {"precision_at_5", "recall_at_5", "ndcg_at_5", "map_at_5"}
REGRESSION_METRICS = {"rmse", "mae", "r2", "explained_variance"}


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("implicit", 2, 0.1, 1.0),
        ModelSpec("explicit", 2, 0.1),
        ModelSpec("biased", 2, 0.1),
        ModelSpec("popularity"),
        ModelSpec("bias"),
        ModelSpec("knn", similarity="cosine", neighbours=25),
        ModelSpec("ease", l2=10.0),
    ],
    ids=lambda s: s.kind,
)
def test_each_model_kind_fits_and_evaluates_as_served(spark, ratings, data, spec):
    fitted = fit(spec, data, ALS, ITEM_BASED)
    # Two target users: one the rating models know, one (41) nobody knows.
    target = ratings.filter(F.col(USER_IDX) == 3).unionByName(
        spark.createDataFrame([(41, 2, 5.0)], ratings.schema)
    )
    metrics = evaluate(fitted, data, target, EVALUATION)
    expected = RANKING_METRICS | {f"warm.{m}" for m in RANKING_METRICS}
    expected |= {"cold_user_share"}
    if spec.family == "rating":
        expected |= REGRESSION_METRICS
    assert set(metrics) == expected
    assert 0.0 <= metrics["ndcg_at_5"] <= 1.0
    assert metrics["cold_user_share"] == pytest.approx(0.5)  # user 41
    if spec.kind in ("biased", "bias", "explicit"):
        predictions = fitted.predict(ratings).agg(
            F.min("prediction"), F.max("prediction")
        )
        low, high = predictions.first()
        assert low >= 1.0 and high <= 10.0  # clipped to the training range
    if spec.kind == "biased":
        assert fitted.model.rank == 4  # biases folded in


def test_the_popularity_model_scores_each_item_by_its_interactions(data):
    fitted = fit(ModelSpec("popularity"), data, ALS, ITEM_BASED)
    counts = {
        r[ITEM_IDX]: r["count"] for r in data.seen.groupBy(ITEM_IDX).count().collect()
    }
    pairs = data.ratings.select(USER_IDX, ITEM_IDX).limit(30)
    for row in fitted.model.transform(pairs).collect():
        assert row["prediction"] == pytest.approx(counts[row[ITEM_IDX]])
    # Every user who interacted has a factor, also one known from implicit rows only.
    users = {r["id"] for r in fitted.model.userFactors.collect()}
    assert 40 in users


def test_the_bias_model_predicts_the_damped_biases(data):
    fitted = fit(ModelSpec("bias"), data, ALS, ITEM_BASED)
    biases = fit_bias_model(data.ratings, "r", ALS.rating.bias_damping)
    expected = {
        (r[USER_IDX], r[ITEM_IDX]): r["prediction"]
        for r in biases.predict(data.ratings).collect()
    }
    got = fitted.predict(data.ratings).collect()
    assert len(got) == len(expected)
    for row in got:
        want = min(max(expected[(row[USER_IDX], row[ITEM_IDX])], 1.0), 10.0)
        assert row["prediction"] == pytest.approx(want, abs=1e-4)


def test_num_blocks_defaults_to_the_cores_spark_has(spark, data):
    spec = ModelSpec("explicit", 2, 0.1)
    default = fit(spec, data, ALS, ITEM_BASED).model
    assert default.userFactors.rdd.getNumPartitions() == (
        spark.sparkContext.defaultParallelism
    )
    three = fit(spec, data, ALS.model_copy(update={"num_blocks": 3}), ITEM_BASED).model
    assert three.itemFactors.rdd.getNumPartitions() == 3  # noqa: PLR2004


def test_specs_that_share_a_fit_are_tuned_as_if_fitted_alone(ratings, data):
    """Item-kNN of one similarity share one fit cut to each K, EASE one Gram
    matrix: the validation metrics equal those of separate fits."""
    specs = [
        ModelSpec("popularity"),
        ModelSpec("knn", similarity="cosine", neighbours=2),
        ModelSpec("ease", l2=10.0),
        ModelSpec("knn", similarity="cosine", neighbours=25),
        ModelSpec("ease", l2=100.0),
    ]
    assert [[s.name for s in g] for g in shared_fits(specs)] == [
        ["popularity"],
        ["knn_cosine_k2", "knn_cosine_k25"],
        ["ease_l2_10", "ease_l2_100"],
    ]
    fit_part, validation = ratings.randomSplit([0.7, 0.3], seed=4)
    part = TrainingData(fit_part, data.implicit, data.rating_col)
    together = tune(specs, [(part, validation)], ALS, ITEM_BASED, EVALUATION)
    assert [r["name"] for r in together] == [s.name for s in specs]
    for spec, result in zip(specs, together, strict=True):
        alone = evaluate(fit(spec, part, ALS, ITEM_BASED), part, validation, EVALUATION)
        assert result["validation"] == pytest.approx(alone, abs=1e-9)
    assert together[1]["validation"] != together[3]["validation"]  # K matters here
