"""Configuration checks, validation splits and model kinds of training.py."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.training import (
    ConfigurationError,
    ModelSpec,
    TrainingData,
    evaluate,
    fit,
    model_grid,
    model_kind,
    selection_metric,
    validation_splits,
)

ALS_BASE = {"rank": [2, 4], "reg_param": [0.1, 0.5], "num_epochs": 3, "seed": 1}


def test_grid_is_rank_by_reg_param_and_alpha_for_implicit():
    assert [(s.rank, s.reg_param) for s in model_grid(ALS_BASE)] == [
        (2, 0.1), (2, 0.5), (4, 0.1), (4, 0.5),
    ]  # fmt: skip
    implicit = model_grid({**ALS_BASE, "implicit_prefs": True, "alpha": [1, 10]})
    assert len(implicit) == 8 and {s.alpha for s in implicit} == {1.0, 10.0}
    assert (
        model_grid({**ALS_BASE, "rank": 8})[0].rank == 8
    )  # a scalar is a 1-point axis


@pytest.mark.parametrize(
    ("als", "message"),
    [
        ({**ALS_BASE, "rank": []}, "als.rank"),
        ({**ALS_BASE, "rank": ["ten"]}, "als.rank"),
        ({**ALS_BASE, "rank": [0]}, "als.rank"),
        ({**ALS_BASE, "reg_param": [-1]}, "als.reg_param"),
        ({**ALS_BASE, "implicit_prefs": True, "biased": True}, "at most one"),
    ],
)
def test_bad_als_settings_name_the_key(als, message):
    with pytest.raises(ConfigurationError, match=message):
        model_grid(als)


def test_selection_metric_defaults_and_checks():
    assert selection_metric({"k": 10}, "biased") == "rmse"
    assert selection_metric({"k": 5}, "implicit") == "ndcg_at_5"
    assert (
        selection_metric({"k": 10, "select_by": "map_at_10"}, "explicit") == "map_at_10"
    )
    with pytest.raises(ConfigurationError, match="select_by"):
        selection_metric({"k": 10, "select_by": "rmse"}, "implicit")
    assert model_kind({"implicit_prefs": True}) == "implicit"


@pytest.fixture(scope="module")
def ratings(spark):
    rows = [
        (u, i, float(1 + (u * 7 + i * 3) % 10))
        for u in range(40)
        for i in range(30)
        if (u + i) % 3
    ]
    return spark.createDataFrame(rows, f"{USER_IDX} int, {ITEM_IDX} int, r float")


def test_train_validation_split_is_disjoint_and_complete(ratings):
    [(fit_part, validation)] = validation_splits(
        ratings, {"method": "TrainValidationSplit", "train_ratio": 0.75}
    )
    assert fit_part.count() + validation.count() == ratings.count()
    assert fit_part.join(validation, on=[USER_IDX, ITEM_IDX]).count() == 0
    assert fit_part.count() / ratings.count() == pytest.approx(0.75, abs=0.05)


def test_cross_validator_folds_cover_each_row_once(ratings):
    splits = validation_splits(ratings, {"method": "CrossValidator", "num_folds": 3})
    assert len(splits) == 3
    validations = splits[0][1].unionByName(splits[1][1]).unionByName(splits[2][1])
    assert (
        validations.exceptAll(ratings).count() == 0
        and ratings.exceptAll(validations).count() == 0
    )
    for fit_part, validation in splits:
        assert fit_part.count() + validation.count() == ratings.count()


def test_unknown_tuning_method_is_a_clear_error(ratings):
    with pytest.raises(
        ConfigurationError, match=r"tuning.method is 'GridSearch'.*TrainValidationSplit"
    ):
        validation_splits(ratings, {"method": "GridSearch"})


@pytest.mark.parametrize("kind", ["explicit", "biased", "implicit"])
def test_each_model_kind_fits_and_evaluates(spark, ratings, kind):
    implicit = spark.createDataFrame(
        [(0, 0), (1, 3)], f"{USER_IDX} int, {ITEM_IDX} int"
    )
    data = TrainingData(ratings=ratings, implicit=implicit, rating_col="r")
    spec = ModelSpec(
        kind, rank=2, reg_param=0.1, alpha=1.0 if kind == "implicit" else None
    )
    fitted = fit(spec, data, {"num_epochs": 3, "seed": 1})
    target = ratings.limit(50)
    metrics = evaluate(fitted, data, target, {"k": 5})
    assert 0.0 <= metrics["ndcg_at_5"] <= 1.0
    assert ("rmse" in metrics) == (kind != "implicit")
    if kind == "biased":
        predictions = (
            fitted.predict(ratings)
            .agg(F.min("prediction"), F.max("prediction"))
            .first()
        )
        assert predictions[0] >= 1.0 and predictions[1] <= 10.0  # clipped to the range
        assert fitted.model.rank == 4  # biases folded in


def test_evaluate_computes_only_the_family_of_the_metric_asked_for(spark, ratings):
    empty = ratings.limit(0).select(USER_IDX, ITEM_IDX)
    data = TrainingData(ratings=ratings, implicit=empty, rating_col="r")
    fitted = fit(ModelSpec("explicit", 2, 0.1), data, {"num_epochs": 3, "seed": 1})
    target = ratings.limit(50)
    everything = evaluate(fitted, data, target, {"k": 5})
    rmse_only = evaluate(fitted, data, target, {"k": 5}, only="rmse")
    ndcg_only = evaluate(fitted, data, target, {"k": 5}, only="ndcg_at_5")
    assert set(rmse_only) == {"rmse", "mae", "r2", "explained_variance"}
    assert set(ndcg_only) == {"precision_at_5", "recall_at_5", "ndcg_at_5", "map_at_5"}
    assert set(everything) == set(rmse_only) | set(ndcg_only)
    assert rmse_only["rmse"] == pytest.approx(everything["rmse"])
    assert ndcg_only["ndcg_at_5"] == pytest.approx(everything["ndcg_at_5"])


def test_num_blocks_defaults_to_the_cores_spark_has(spark, ratings):
    empty = ratings.limit(0).select(USER_IDX, ITEM_IDX)
    data = TrainingData(ratings=ratings, implicit=empty, rating_col="r")
    spec = ModelSpec("explicit", 2, 0.1)
    default = fit(spec, data, {"num_epochs": 2, "seed": 1}).model
    assert default.userFactors.rdd.getNumPartitions() == (
        spark.sparkContext.defaultParallelism
    )
    three = fit(spec, data, {"num_epochs": 2, "seed": 1, "num_blocks": 3}).model
    assert three.itemFactors.rdd.getNumPartitions() == 3  # noqa: PLR2004
