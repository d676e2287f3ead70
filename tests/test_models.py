"""The damped bias model and biased ALS with its biases folded into the factors."""

from __future__ import annotations

import pytest
from pyspark.ml.recommendation import ALS

from book_recommender.columns import ITEM_IDX, PREDICTION, USER_IDX
from book_recommender.models.als import fold_biases
from book_recommender.models.bias import ITEM_BIAS, USER_BIAS, fit_biases
from tests.reference import als_candidates

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


def test_folded_model_predicts_residual_plus_biases(ratings, tmp_path):
    biases = fit_biases(ratings, "r", damping=1.0)
    residuals = biases.residuals(ratings, "r", "res")
    residual = ALS(
        userCol=USER_IDX, itemCol=ITEM_IDX, ratingCol="res", rank=2, maxIter=3,
        nonnegative=False, seed=1,
    ).fit(residuals)  # fmt: skip
    folded = fold_biases(residual, biases, str(tmp_path / "biased"))
    assert folded.rank == residual.rank + 2
    expected = biases.predict(
        residual.transform(ratings).withColumnRenamed(PREDICTION, "res_pred")
    )
    got = folded.transform(ratings).withColumnRenamed(PREDICTION, "folded")
    joined = expected.join(got, on=[USER_IDX, ITEM_IDX]).collect()
    assert len(joined) == 6
    for row in joined:
        assert row["folded"] == pytest.approx(
            row["res_pred"] + row[PREDICTION], abs=1e-4
        )
    # recommendForUserSubset works on the folded model like on any ALSModel.
    recs = als_candidates(folded)(ratings.select(USER_IDX).distinct(), 2).collect()
    assert len(recs) == 6
