"""The served top-k: same lists as the recommendForUserSubset path, seen items
out, ties by item id, cold users on the popular fallback, bounded blocks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.metrics import RANK, SCORE
from book_recommender.models import popularity_scores
from book_recommender.models.als import AlsRecommenderModel
from book_recommender.ranking import COLD_START, top_k_served
from book_recommender.registry import collect_run_tables, export_bundle
from book_recommender.topk import ItemTable, Workspace, rank_block
from tests.reference import als_candidates, als_model_from_factors, top_k_unseen

N_USERS, N_ITEMS, RANK_ = 40, 60, 5


@pytest.fixture(scope="module")
def random_model(spark, tmp_path_factory):
    """Random factors (seeded) for users 0..39 and items 0..59 but item 7."""
    rng = np.random.default_rng(7)
    users = [
        (u, rng.normal(size=RANK_).astype(np.float32).tolist()) for u in range(N_USERS)
    ]
    items = [
        (i, rng.normal(size=RANK_).astype(np.float32).tolist())
        for i in range(N_ITEMS)
        if i != 7  # an item without factors is never recommended by the model
    ]
    schema = "id int, features array<float>"
    return AlsRecommenderModel.of(
        als_model_from_factors(
            spark.createDataFrame(users, schema),
            spark.createDataFrame(items, schema),
            RANK_,
            str(tmp_path_factory.mktemp("random_model") / "model"),
        )
    )


@pytest.fixture(scope="module")
def seen(spark):
    rng = np.random.default_rng(11)
    pairs = {
        (int(u), int(i))
        for u, i in zip(
            rng.integers(0, N_USERS + 5, 600),
            rng.integers(0, N_ITEMS, 600),
            strict=True,
        )
    }
    return spark.createDataFrame(sorted(pairs), f"{USER_IDX} int, {ITEM_IDX} int")


def _lists(frame):
    rows = frame.orderBy(USER_IDX, RANK).collect()
    lists: dict[int, list[int]] = {}
    for row in rows:
        lists.setdefault(row[USER_IDX], []).append(row[ITEM_IDX])
    return lists


def test_same_lists_as_recommend_for_user_subset(spark, random_model, seen):
    users = spark.range(N_USERS).select(F.col("id").cast("int").alias(USER_IDX))
    k = 10
    new = top_k_served(random_model, users, seen, popularity_scores(seen), k)
    old = top_k_unseen(als_candidates(random_model.als), users, seen, k)
    new_lists, old_lists = _lists(new), _lists(old)
    assert new_lists == old_lists
    assert len(new_lists) == N_USERS
    assert all(len(items) == k for items in new_lists.values())
    # Seen items are out, and the item without factors is never recommended.
    pairs = {(r[USER_IDX], r[ITEM_IDX]) for r in seen.collect()}
    assert not any((u, i) in pairs for u, items in new_lists.items() for i in items)
    assert not any(7 in items for items in new_lists.values())
    # Scores are the model's dot products, in descending order.
    joined = new.join(
        old.withColumnRenamed(SCORE, "old_score"), on=[USER_IDX, ITEM_IDX]
    ).collect()
    assert len(joined) == N_USERS * k
    assert all(r[SCORE] == pytest.approx(r["old_score"], abs=1e-5) for r in joined)
    assert new.filter(F.col(COLD_START)).count() == 0


def test_small_blocks_give_the_same_lists(spark, random_model, seen):
    users = spark.range(N_USERS).select(F.col("id").cast("int").alias(USER_IDX))
    default = top_k_served(random_model, users, seen, popularity_scores(seen), 5)
    # Tiles of 7 scores: many tiles per block, the first one too narrow for a
    # bound on its own.
    tiny = top_k_served(
        random_model, users, seen, popularity_scores(seen), 5, tile_cells=7
    )
    assert _lists(tiny) == _lists(default)


def test_users_without_factors_get_the_unseen_popular_items(spark, random_model):
    seen = spark.createDataFrame(
        [(100, 1), (101, 1), (102, 1), (100, 2), (101, 2), (103, 3), (100, 4)],
        f"{USER_IDX} int, {ITEM_IDX} int",
    )
    users = spark.createDataFrame([(100,), (104,)], f"{USER_IDX} int")
    served = top_k_served(random_model, users, seen, popularity_scores(seen), 3)
    lists = _lists(served)
    # Counts: item 1 x3, item 2 x2, items 3 and 4 x1 (tie: lower id first).
    assert lists == {100: [3], 104: [1, 2, 3]}  # user 100 has seen 1, 2 and 4
    assert served.filter(~F.col(COLD_START)).count() == 0


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's ``k`` largest finite scores of a dense matrix, by score
    descending then column: (row, column, rank from 0), rows ascending. The
    plain reference of the tiled ranking (and of its tie rule), row by row."""
    rows, cols, ranks = [], [], []
    for row, values in enumerate(scores):
        finite = np.flatnonzero(np.isfinite(values))
        best = finite[np.lexsort((finite, -values[finite]))][:k]
        rows += [row] * len(best)
        cols += best.tolist()
        ranks += range(len(best))
    return np.array(rows, np.int64), np.array(cols, np.int64), np.array(ranks, np.int64)


def test_top_k_rows_breaks_ties_by_column_and_skips_minus_infinity():
    scores = np.array(
        [
            [1.0, 3.0, 3.0, 2.0, -np.inf],
            [-np.inf, -np.inf, 0.5, -np.inf, -np.inf],
        ],
        dtype=np.float32,
    )
    rows, cols, rank = top_k_rows(scores, 3)
    assert rows.tolist() == [0, 0, 0, 1]
    assert cols.tolist() == [1, 2, 3, 2]
    assert rank.tolist() == [0, 1, 2, 0]


def test_top_k_rows_is_exact_on_wide_random_rows():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(20, 20_000)).astype(np.float32)
    rows, cols, _ = top_k_rows(scores, 10)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    assert cols.reshape(20, 10).tolist() == expected.tolist()


def _dense_reference(table, warm, n_rows, seen_rows, seen_cols, k):
    """Every score in one matrix, then each row sorted: the ranking rank_block
    must reproduce with its tiles and bounds."""
    scores = np.empty((n_rows, len(table.ids)), np.float32)
    scores[: len(warm)] = warm @ table.factors.T + table.unknown
    scores[len(warm) :] = table.popular
    scores[seen_rows, seen_cols] = -np.inf
    rows, cols, rank = top_k_rows(scores, k)
    return rows, cols, rank, scores[rows, cols]


@pytest.mark.parametrize("values", ["normal", "small integers (ties)"])
def test_tiled_top_k_equals_the_dense_ranking_on_random_models(values):
    rng = np.random.default_rng(5)
    for _ in range(150):
        n_items, rank, k = (int(x) for x in rng.integers((1, 1, 1), (300, 6, 15)))
        ids = np.sort(rng.choice(1000, n_items, replace=False))
        with_factors = rng.random(n_items) < 0.8  # the others are never ranked
        with_fallback = rng.random(n_items) < 0.7
        n_rows = int(rng.integers(1, 30))
        n_warm = int(rng.integers(0, n_rows + 1))

        def draw(*shape):
            if values == "normal":
                return rng.normal(size=shape).astype(np.float32)
            return rng.integers(-2, 3, size=shape).astype(np.float32)

        table = ItemTable.build(
            ids[with_factors],
            draw(int(with_factors.sum()), rank),
            ids[with_fallback],
            rng.integers(0, 5, int(with_fallback.sum())).astype(np.float32),
        )
        warm = draw(n_warm, rank)
        n_seen = int(rng.integers(0, n_rows * len(table.ids) + 1))
        seen_rows = rng.integers(0, n_rows, n_seen)
        seen_cols = rng.integers(0, len(table.ids), n_seen)
        workspace = Workspace.create(int(rng.integers(1, 2000)))
        got = rank_block(table, warm, n_rows, seen_rows, seen_cols, k, workspace)
        expected = _dense_reference(table, warm, n_rows, seen_rows, seen_cols, k)
        for mine, theirs in zip(got[:3], expected[:3], strict=True):
            np.testing.assert_array_equal(mine, theirs)
        np.testing.assert_allclose(got[3], expected[3], atol=1e-5)


def test_the_registered_bundle_serves_the_lists_evaluation_measured(
    spark, random_model, seen
):
    """Scoring and the served model rank from the exported bundle; evaluation
    ranks from the Spark model. Same lists, for warm and cold users alike."""
    users = seen.select(USER_IDX).distinct()  # users 40..44 have no factors
    served = _lists(top_k_served(random_model, users, seen, popularity_scores(seen), 6))
    raw = users.select(USER_IDX, F.concat(F.lit("u"), USER_IDX).alias("User-ID"))
    items = (
        seen.select(ITEM_IDX)
        .distinct()
        .union(random_model.item_factors().select("id"))
        .distinct()
        .select(ITEM_IDX, F.concat(F.lit("i"), ITEM_IDX).alias("ISBN"))
    )
    columns = {"user_id": "User-ID", "item_id": "ISBN", "item_info": "ISBN"}
    bundle = export_bundle(random_model, seen, raw, items, columns, 6)
    ranked = pd.concat(list(bundle.top_k(np.arange(len(bundle.users)), 6, 3 * N_ITEMS)))
    by_user: dict[int, list[int]] = {}
    for row in ranked.sort_values(["request", RANK]).itertuples():
        user = int(bundle.users["user_idx"].iloc[row.request])
        by_user.setdefault(user, []).append(int(bundle.table.ids[row.position]))
    assert by_user == served
    assert any(u >= N_USERS for u in by_user)  # cold users were compared too
    # Champions share the run's tables (collected once): each bundle is the
    # one exported alone, and the shared tables are left as they were.
    tables = collect_run_tables(seen, raw, items, columns)
    for _ in range(2):
        shared = export_bundle(random_model, seen, raw, items, columns, 6, tables)
        assert list(tables.users.columns) == ["user_idx", "user"]
        pd.testing.assert_frame_equal(shared.users, bundle.users)
        pd.testing.assert_frame_equal(shared.items, bundle.items)
        for name in ("seen_indptr", "seen_items", "user_factors"):
            np.testing.assert_array_equal(getattr(shared, name), getattr(bundle, name))
        np.testing.assert_array_equal(shared.table.ids, bundle.table.ids)
