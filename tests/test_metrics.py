"""Ranking and regression metrics: by hand on a tiny example, and against an
independent pandas implementation on a random one."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from book_recommender.columns import COLD_START, ITEM_IDX, PREDICTION, SERVED, USER_IDX
from book_recommender.evaluation import ServedEvaluator
from book_recommender.metrics import (
    RANK,
    SCORE,
    mean_average_precision,
    regression_metrics,
    served_ranking,
)
from tests.reference import ranking_metrics, top_k_unseen

SCORES = f"{USER_IDX} int, {ITEM_IDX} int, {SCORE} float"
PAIRS = f"{USER_IDX} int, {ITEM_IDX} int"


def _table_candidates(scores):
    """A candidate function that serves a fixed score table."""

    def candidates(users, n):
        order = Window.partitionBy(USER_IDX).orderBy(F.desc(SCORE), F.asc(ITEM_IDX))
        return (
            scores.join(users, on=USER_IDX, how="left_semi")
            .withColumn("_n", F.row_number().over(order))
            .filter(F.col("_n") <= n)
            .drop("_n")
        )

    return candidates


@pytest.fixture
def tiny(spark):
    scores = spark.createDataFrame(
        [
            (0, 0, 0.9), (0, 2, 0.8), (0, 1, 0.7), (0, 4, 0.6), (0, 3, 0.5),
            (1, 5, 0.9), (1, 0, 0.8), (1, 1, 0.7), (1, 2, 0.1),
        ],
        SCORES,
    )  # fmt: skip
    seen = spark.createDataFrame([(0, 0)], PAIRS)  # user 0 rated item 0 in train
    relevant = spark.createDataFrame([(0, 1), (0, 3), (1, 5), (2, 4)], PAIRS)
    return scores, seen, relevant


def test_top_k_unseen_drops_train_items_and_ranks_from_one(tiny):
    scores, seen, relevant = tiny
    users = relevant.select(USER_IDX).distinct()
    recs = top_k_unseen(_table_candidates(scores), users, seen, k=3).collect()
    by_user = {}
    for row in sorted(recs, key=lambda r: (r[USER_IDX], r[RANK])):
        by_user.setdefault(row[USER_IDX], []).append(row[ITEM_IDX])
    assert by_user == {0: [2, 1, 4], 1: [5, 0, 1]}  # item 0 not recommended to user 0
    assert sorted(r[RANK] for r in recs if r[USER_IDX] == 0) == [1, 2, 3]


def test_ranking_metrics_by_hand(tiny):
    scores, seen, relevant = tiny
    users = relevant.select(USER_IDX).distinct()
    recs = top_k_unseen(_table_candidates(scores), users, seen, k=3)
    metrics = ranking_metrics(recs, relevant, k=3)
    # user 0: hit at rank 2 of 2 relevant; user 1: hit at rank 1 of 1; user 2: no recs.
    ndcg_0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert metrics["precision_at_3"] == pytest.approx((1 / 3 + 1 / 3 + 0) / 3)
    assert metrics["recall_at_3"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert metrics["ndcg_at_3"] == pytest.approx((ndcg_0 + 1 + 0) / 3)
    assert metrics["map_at_3"] == pytest.approx(((1 / 2) / 2 + 1 + 0) / 3)


def _pandas_ranking(scores, seen, relevant, k):
    """Straightforward per-user loops: the reference implementation."""
    seen_sets = seen.groupby(USER_IDX)[ITEM_IDX].apply(set).to_dict()
    rows = []
    for user, items in relevant.groupby(USER_IDX)[ITEM_IDX]:
        rel = set(items)
        cand = scores[scores[USER_IDX] == user].sort_values(
            [SCORE, ITEM_IDX], ascending=[False, True]
        )
        top = [i for i in cand[ITEM_IDX] if i not in seen_sets.get(user, set())][:k]
        hits = [i in rel for i in top]
        dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), k)))
        precisions = [sum(hits[: r + 1]) / (r + 1) for r, h in enumerate(hits) if h]
        rows.append(
            {
                "p": sum(hits) / k,
                "r": sum(hits) / len(rel),
                "ndcg": dcg / idcg,
                "map": sum(precisions) / min(len(rel), k),
            }
        )
    return pd.DataFrame(rows).mean().to_dict()


def test_ranking_metrics_match_pandas_on_a_random_frame(spark):
    rng = np.random.default_rng(3)
    n_users, n_items, k = 30, 40, 5
    scores = pd.DataFrame(
        [(u, i, float(rng.random())) for u in range(n_users) for i in range(n_items)],
        columns=[USER_IDX, ITEM_IDX, SCORE],
    )
    scores = scores[rng.random(len(scores)) < 0.9]  # some items unscored for some users
    seen = pd.DataFrame(
        [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.3],
        columns=[USER_IDX, ITEM_IDX],
    )
    relevant = pd.DataFrame(
        [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.1],
        columns=[USER_IDX, ITEM_IDX],
    ).merge(seen, how="left", indicator=True)
    relevant = relevant[relevant["_merge"] == "left_only"].drop(columns="_merge")

    expected = _pandas_ranking(scores, seen, relevant, k)
    s_scores = spark.createDataFrame(scores, SCORES)
    s_seen = spark.createDataFrame(seen, PAIRS)
    s_relevant = spark.createDataFrame(relevant, PAIRS)
    recs = top_k_unseen(
        _table_candidates(s_scores), s_relevant.select(USER_IDX).distinct(), s_seen, k
    )
    got = ranking_metrics(recs, s_relevant, k)
    assert got[f"precision_at_{k}"] == pytest.approx(expected["p"])
    assert got[f"recall_at_{k}"] == pytest.approx(expected["r"])
    assert got[f"ndcg_at_{k}"] == pytest.approx(expected["ndcg"])
    assert got[f"map_at_{k}"] == pytest.approx(expected["map"])


def _served_rows(spark, relevant: pd.DataFrame, lists: dict[int, list[int]], cold):
    """Held-out rows as a model's ``transform`` leaves them: each relevant
    (user, item) with the user's served list (null without one) and flag."""
    rows = [
        (int(u), int(i), lists.get(int(u)), int(u) in cold)
        for u, i in zip(relevant[USER_IDX], relevant[ITEM_IDX], strict=True)
    ]
    schema = (
        f"{USER_IDX} int, {ITEM_IDX} int, {SERVED} array<int>, {COLD_START} boolean"
    )
    return spark.createDataFrame(rows, schema)


def test_lists_judged_in_place_match_pandas_on_a_random_frame(spark):
    """``served_ranking`` (what the evaluator uses) against the per-user loops,
    with lists longer than k (cut), shorter than k, and missing."""
    rng = np.random.default_rng(5)
    n_users, n_items, k = 40, 30, 5
    scores = pd.DataFrame(
        [(u, i, float(rng.random())) for u in range(n_users) for i in range(n_items)],
        columns=[USER_IDX, ITEM_IDX, SCORE],
    )
    scores = scores[rng.random(len(scores)) < 0.3]  # some users have < k items
    seen = pd.DataFrame(columns=[USER_IDX, ITEM_IDX], dtype=int)
    relevant = pd.DataFrame(
        [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.15],
        columns=[USER_IDX, ITEM_IDX],
    )
    listless = int(relevant[USER_IDX].iloc[0])  # a user without a list
    scores = scores[scores[USER_IDX] != listless]
    expected = _pandas_ranking(scores, seen, relevant, k)
    lists = {
        int(u): group.sort_values([SCORE, ITEM_IDX], ascending=[False, True])[
            ITEM_IDX
        ].tolist()[: k + 2]  # longer than k: only the first k count
        for u, group in scores.groupby(USER_IDX)
    }
    frame = _served_rows(spark, relevant, lists, cold=set())
    row = (
        served_ranking(frame, SERVED, k)
        .agg(
            *[F.avg(p).alias(p) for p in ("precision", "recall", "ndcg", "map")],
            F.count(F.lit(1)).alias("users"),
        )
        .first()
    )
    assert row["users"] == relevant[USER_IDX].nunique()
    assert row["precision"] == pytest.approx(expected["p"])
    assert row["recall"] == pytest.approx(expected["r"])
    assert row["ndcg"] == pytest.approx(expected["ndcg"])
    assert row["map"] == pytest.approx(expected["map"])


def test_the_evaluator_judges_served_lists_by_hand(spark):
    """The tiny example's lists as served (user 2 cold, given [3, 4]), with a
    threshold that leaves out user 1's only relevant row."""
    relevant = pd.DataFrame(
        {USER_IDX: [0, 0, 1, 2], ITEM_IDX: [1, 3, 5, 4], "r": [9.0, 8.0, 2.0, 7.0]}
    )
    lists = {0: [2, 1, 4], 1: [5, 0, 1], 2: [3, 4]}
    frame = _served_rows(spark, relevant, lists, cold={2}).join(
        spark.createDataFrame(relevant), on=[USER_IDX, ITEM_IDX]
    )
    got = ServedEvaluator(k=3, ratingCol="r", relevanceThreshold=5.0).metrics(frame)
    ndcg_0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    ndcg_2 = 1 / math.log2(3)  # one relevant book, at rank 2
    assert got["precision_at_3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert got["recall_at_3"] == pytest.approx((1 / 2 + 1) / 2)
    assert got["ndcg_at_3"] == pytest.approx((ndcg_0 + ndcg_2) / 2)
    assert got["map_at_3"] == pytest.approx(((1 / 2) / 2 + 1 / 2) / 2)
    assert got["warm.ndcg_at_3"] == pytest.approx(ndcg_0)
    assert got["cold_user_share"] == pytest.approx(1 / 2)


def test_regression_metrics_by_hand(spark):
    df = spark.createDataFrame(
        [(8.0, 7.0), (6.0, 6.5), (10.0, 9.0), (4.0, 5.5)],
        f"label double, {PREDICTION} double",
    )
    metrics = regression_metrics(df, "label")
    errors = np.array([1.0, -0.5, 1.0, -1.5])
    labels = np.array([8.0, 6.0, 10.0, 4.0])
    assert metrics["rmse"] == pytest.approx(math.sqrt((errors**2).mean()))
    assert metrics["mae"] == pytest.approx(np.abs(errors).mean())
    ss_res, ss_tot = (errors**2).sum(), ((labels - labels.mean()) ** 2).sum()
    assert metrics["r2"] == pytest.approx(1 - ss_res / ss_tot)
    # The ratio (scikit-learn's explained_variance_score), not Spark's "var".
    assert metrics["explained_variance"] == pytest.approx(
        1 - errors.var() / labels.var()
    )
    # A constant offset costs R2 but not explained variance.
    shifted = regression_metrics(
        df.withColumn(PREDICTION, F.col(PREDICTION) + 2.0), "label"
    )
    assert shifted["explained_variance"] == pytest.approx(metrics["explained_variance"])
    assert shifted["r2"] < metrics["r2"]


def test_regression_metrics_of_constant_labels_and_no_rows(spark):
    same = spark.createDataFrame(
        [(5.0, 4.0), (5.0, 6.0)], f"label double, {PREDICTION} double"
    )
    metrics = regression_metrics(same, "label")
    assert metrics["rmse"] == pytest.approx(1.0)
    assert math.isnan(metrics["r2"]) and math.isnan(metrics["explained_variance"])
    empty = regression_metrics(same.limit(0), "label")
    assert all(math.isnan(v) for v in empty.values())
    # A row without a prediction counts neither as an error nor in Var(label).
    unscored = same.unionByName(
        spark.createDataFrame([(9.0, None)], f"label double, {PREDICTION} double")
    )
    assert regression_metrics(unscored, "label") == pytest.approx(metrics, nan_ok=True)


def test_mean_average_precision_divides_by_the_relevant_items(spark):
    """Spark's MAP, by hand: user 1 hits ranks 1 and 3 of 2 relevant items,
    (1/1 + 2/3) / 2; user 2 has no list, 0."""
    recs = spark.createDataFrame(
        [(1, 1, 1), (1, 3, 2), (1, 2, 3)], f"{USER_IDX} int, {ITEM_IDX} int, rank int"
    )
    relevant = spark.createDataFrame(
        [(1, 1), (1, 2), (2, 5)], f"{USER_IDX} int, {ITEM_IDX} int"
    )
    expected = ((1 / 1 + 2 / 3) / 2 + 0.0) / 2
    assert mean_average_precision(recs, relevant) == pytest.approx(expected)
