"""The damped bias model, and biased ALS: residual ALS plus the biases, served
with the biases folded into its factors."""

from __future__ import annotations

import pytest

from book_recommender.columns import ITEM_IDX, PREDICTION, USER_IDX
from book_recommender.models import Interactions
from book_recommender.models.als import BiasedAls
from book_recommender.models.bias import ITEM_BIAS, USER_BIAS, fit_biases

SCHEMA = f"{USER_IDX} int, {ITEM_IDX} int, r float"


@pytest.fixture(scope="module")
def ratings(spark):
    rows = [
        (0, 0, 8.0),
        (0, 1, 6.0),
        (1, 0, 10.0),
        (1, 2, 4.0),
        (2, 1, 7.0),
        (2, 2, 5.0),
    ]
    return spark.createDataFrame(rows, SCHEMA)


def test_damped_biases_by_hand(ratings):
    model = fit_biases(ratings, "r", damping=2.0)
    mu = 40.0 / 6
    assert model.mean == pytest.approx(mu)
    item = {r[ITEM_IDX]: r[ITEM_BIAS] for r in model.item_bias.collect()}
    assert item[0] == pytest.approx((8 - mu + 10 - mu) / (2 + 2))
    user = {r[USER_IDX]: r[USER_BIAS] for r in model.user_bias.collect()}
    assert user[0] == pytest.approx((8 - mu - item[0] + 6 - mu - item[1]) / (2 + 2))
    unknown = ratings.sparkSession.createDataFrame([(9, 0, 0.0)], SCHEMA)
    assert model.predict(unknown).first()[PREDICTION] == pytest.approx(mu + item[0])


def test_biased_als_predicts_residual_plus_biases_and_serves_them_folded(
    spark, ratings
):
    """Biased ALS predicts the residual ALS's prediction plus ``mu + b_u +
    b_i``; its served factors carry the biases, so their dot product is that
    sum; it is logged as no Spark model (the residual alone is not it)."""
    estimator = BiasedAls(rank=2, maxIter=3, seed=1, damping=1.0, numBlocks=1)
    interactions = Interactions(
        spark.createDataFrame([], f"{USER_IDX} int, {ITEM_IDX} int"), "r"
    )
    model = estimator.with_interactions(interactions).fit(ratings)
    biases = fit_biases(ratings, "r", 1.0)
    residual = model.als.transform(ratings).withColumnRenamed(PREDICTION, "res")
    expected = {
        (r[USER_IDX], r[ITEM_IDX]): r["res"] + r[PREDICTION]
        for r in biases.predict(residual).collect()
    }
    got = {
        (r[USER_IDX], r[ITEM_IDX]): r[PREDICTION]
        for r in model.predict(ratings).collect()
    }
    assert got.keys() == expected.keys() and len(got) == 6  # noqa: PLR2004
    for pair, value in expected.items():
        assert got[pair] == pytest.approx(min(max(value, 4.0), 10.0), abs=1e-4)
    users = {r["id"]: r["features"] for r in model.user_factors().collect()}
    items = {r["id"]: r["features"] for r in model.item_factors().collect()}
    assert model.rank == 4 and {len(v) for v in users.values()} == {4}  # noqa: PLR2004
    for (u, i), value in expected.items():
        dot = sum(a * b for a, b in zip(users[u], items[i], strict=True))
        assert dot == pytest.approx(value, abs=1e-4)
    assert model.spark_model is None
    # An unknown user: no residual factors, no prediction.
    unknown = spark.createDataFrame([(9, 0, 5.0)], SCHEMA)
    assert model.predict(unknown).first()[PREDICTION] is None
