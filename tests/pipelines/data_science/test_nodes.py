"""Champion selection on frames where the answer is known."""

from __future__ import annotations

import logging

import pytest
from pyspark.sql import functions as F

from book_recommender import memory_plan
from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.datasets import RegisteredRecommender
from book_recommender.memory_plan import MemoryPlanError
from book_recommender.models import Recommender
from book_recommender.params import parse
from book_recommender.pipelines.data_science import nodes as data_science_nodes
from book_recommender.pipelines.data_science.nodes import (
    evaluate_on_test,
    select_champions,
    tune_candidates,
)
from book_recommender.pipelines.scoring.nodes import recommend_for_users
from book_recommender.registry import export_bundle
from tests.test_params import BASE, SCORING

COLUMNS = {
    "user_id": "User-ID",
    "item_id": "ISBN",
    "item_info": "Book-Title",
    "rating": "Book-Rating",
    "item_author": None,
}
BESTSELLERS = 10
USERS = 30
K = 5
SMALL_GRID = {
    **BASE["als"],
    "ranking": {
        **BASE["als"]["ranking"],
        "rank": [2],
        "reg_param": [0.1],
        "alpha": [1.0],
        "num_epochs": 5,
    },
    "rating": {
        **BASE["als"]["rating"],
        "rank": [2],
        "reg_param": [1.0],
        "num_epochs": 5,
    },
}
# Every item-based family on, one grid point each.
SMALL_ITEM_GRID = {
    **BASE["item_based"],
    "knn": {
        **BASE["item_based"]["knn"],
        "enabled": True,  # off in conf/base
        "similarity": ["bm25"],
        "neighbours": [5],
        "side_weight": [0.0],
    },
    "rp3": {**BASE["item_based"]["rp3"], "neighbours": [5], "side_weight": [0.0]},
    "ease": {**BASE["item_based"]["ease"], "l2": [10.0], "beta": [0.0]},
    "side_information": [],
}
EVALUATION = parse("evaluation", {**BASE["evaluation"], "k": K})


def _tune(train, implicit, items, tuning):
    """``tune_candidates`` of the small grids."""
    return tune_candidates(
        train,
        implicit,
        items,
        COLUMNS,
        parse("als", SMALL_GRID),
        parse("item_based", SMALL_ITEM_GRID),
        tuning,
        EVALUATION,
    )


@pytest.fixture(scope="module")
def everyone_reads_the_bestsellers(spark):
    """Every user has read all ten bestsellers (rated 6-10) and one book nobody
    else has (train); their test book is another book nobody else has read.

    Whatever part of train is held out for validation, the best a recommender
    can do is to put the held-out bestsellers first, which is exactly what
    the popularity ranking does: no model can beat it."""
    schema = f"{USER_IDX} int, {ITEM_IDX} int, `Book-Rating` float"
    train = [
        (u, i, float(6 + (u + i) % 5)) for u in range(USERS) for i in range(BESTSELLERS)
    ] + [(u, 100 + u, 7.0) for u in range(USERS)]
    test = [(u, 200 + u, 8.0) for u in range(USERS)]
    implicit = spark.createDataFrame([], f"{USER_IDX} int, {ITEM_IDX} int")
    return (
        spark.createDataFrame(train, schema),
        spark.createDataFrame(test, schema),
        implicit,
    )


@pytest.fixture(scope="module")
def tuned_on_bestsellers(everyone_reads_the_bestsellers):
    """The small grids tuned on the bestsellers: (items, tuning results, each
    family's best)."""
    train, test, implicit = everyone_reads_the_bestsellers
    items = train.select(ITEM_IDX).unionByName(test.select(ITEM_IDX)).distinct()
    tuning, bests = _tune(train, implicit, items, parse("tuning", BASE["tuning"]))
    return items, tuning, bests


def _on_test(tuned, test, evaluation=EVALUATION):
    items, tuning, bests = tuned
    return evaluate_on_test(
        bests,
        tuning,
        test,
        items,
        parse("item_based", SMALL_ITEM_GRID),
        parse("tuning", BASE["tuning"]),
        evaluation,
    )


def test_popularity_wins_and_scoring_still_writes_a_complete_table(
    spark, everyone_reads_the_bestsellers, tuned_on_bestsellers, caplog
):
    train, test, _ = everyone_reads_the_bestsellers
    _, tuning, bests = tuned_on_bestsellers
    # Spark's tuning refits each family's best: one model per family.
    assert [m.name for m in bests] == [
        next(r.name for r in tuning if r.candidate.family == label and r.best_of_family)
        for label in dict.fromkeys(r.candidate.family for r in tuning)
    ]
    models, metrics = _on_test(tuned_on_bestsellers, test)
    validation = {r.name: r.validation["ndcg_at_5"] for r in tuning}
    assert validation["popularity"] == max(validation.values())
    # Only the champions and the baselines are refitted and see test: here
    # popularity (the recommender champion), the bias baseline and the rating
    # family's best on validation RMSE.
    assert len(tuning) == 7  # noqa: PLR2004
    assert {"knn_bm25_k5", "rp3_a0.5_b0_k5", "ease_l2_10"} <= set(validation)
    rating = [r for r in tuning if r.candidate.rating]
    best_rating = min(rating, key=lambda r: r.validation["rmse"]).name
    names = [m.name for m in metrics]
    assert names == ["popularity", "bias_baseline"] + (
        [best_rating] if best_rating != "bias_baseline" else []
    )
    assert [m.name for m in models] == names

    with caplog.at_level(logging.WARNING):
        champions = select_champions(tuning, metrics, EVALUATION)
    recommender = champions["recommender"]
    assert recommender.name == "popularity"
    assert recommender.beats_baseline == {"ndcg_at_5": False}
    assert "The recommender champion is the popularity baseline" in caplog.text
    assert champions["rating"].candidate.rating

    # Scoring serves the popularity champion like any ALS model: k unseen books
    # for every user, the bestsellers they have not read first.
    model = next(m for m in models if m.name == "popularity")
    ratings = train.unionByName(test)
    users = (
        ratings.select(USER_IDX)
        .distinct()
        .withColumn("User-ID", F.col(USER_IDX).cast("string"))
    )
    items = (
        ratings.select(ITEM_IDX)
        .distinct()
        .select(
            ITEM_IDX,
            F.col(ITEM_IDX).cast("string").alias("ISBN"),
            F.concat(F.lit("Book "), F.col(ITEM_IDX)).alias("Book-Title"),
        )
    )
    bundle = export_bundle(model, ratings, users, items, COLUMNS, K)
    champion = RegisteredRecommender("m", 1, bundle, {"role": "recommender"})
    table = recommend_for_users(
        champion, parse("scoring", {**SCORING, "k": K})
    ).toPandas()
    assert (table["model_version"] == 1).all()
    assert set(table["User-ID"]) == {str(u) for u in range(USERS)}
    assert (table.groupby("User-ID").size() == K).all()
    assert not table["cold_start"].any()
    seen = {(u, i) for u, i, _ in train.unionByName(test).collect()}
    assert not any(
        (u, i) in seen for u, i in zip(table[USER_IDX], table[ITEM_IDX], strict=True)
    )


def _coverage(tuning, name):
    return next(r for r in tuning if r.name == name).validation["catalog_coverage"]


def test_a_coverage_floor_between_the_candidates_changes_the_champion(
    everyone_reads_the_bestsellers, tuned_on_bestsellers, caplog
):
    """Popularity wins on accuracy but serves the ten bestsellers only: a
    floor above its coverage makes the best family that meets it champion."""
    _, test, _ = everyone_reads_the_bestsellers
    _, tuning, _ = tuned_on_bestsellers
    bests = [r for r in tuning if r.best_of_family]
    floor = _coverage(tuning, "popularity") * 1.01
    meeting = [r for r in bests if r.validation["catalog_coverage"] >= floor]
    assert meeting, "no family covers more than popularity: nothing to test"
    expected = max(meeting, key=lambda r: r.validation[EVALUATION.ranking_key])
    evaluation = EVALUATION.model_copy(update={"min_catalog_coverage": floor})
    _, metrics = _on_test(tuned_on_bestsellers, test, evaluation)
    with caplog.at_level(logging.WARNING):
        champions = select_champions(tuning, metrics, evaluation)
    recommender = champions["recommender"]
    assert recommender.name == expected.name != "popularity"
    assert "popularity" in recommender.left_out_by_min_catalog_coverage
    assert "evaluation.min_catalog_coverage" in caplog.text
    assert "popularity (covers" in caplog.text
    # It is judged on test against popularity, as any champion.
    assert recommender.baseline == "popularity"


def test_a_coverage_floor_no_candidate_meets_fails_before_any_test(
    everyone_reads_the_bestsellers, tuned_on_bestsellers, monkeypatch
):
    _, test, _ = everyone_reads_the_bestsellers
    _, tuning, _ = tuned_on_bestsellers
    top = max(tuning, key=lambda r: r.validation["catalog_coverage"])
    best = top.validation["catalog_coverage"]
    evaluation = EVALUATION.model_copy(
        update={"min_catalog_coverage": min(1.0, best * 1.5)}
    )
    judged = []
    monkeypatch.setattr(
        data_science_nodes, "judge", lambda *a, **k: judged.append(a) or {}
    )
    with pytest.raises(ValueError, match="evaluation.min_catalog_coverage") as error:
        _on_test(tuned_on_bestsellers, test, evaluation)
    assert f"the best is {top.name} with {best:.4g}" in str(error.value)
    assert not judged


def test_an_item_family_too_large_for_the_driver_is_refused_before_any_fit(
    spark, everyone_reads_the_bestsellers, monkeypatch
):
    """On a driver of 32 KiB (1/6 of it, 5.3 KiB, for a broadcast) EASE's 4-byte
    weights over the 40 books read in train (6.25 KiB) do not fit; the
    neighbour families' (about 2 KiB each at 5 neighbours) do. Nothing is
    fitted."""
    train, _, implicit = everyone_reads_the_bestsellers
    items = train.select(ITEM_IDX).distinct()
    monkeypatch.setattr(memory_plan, "driver_bytes", lambda spark: 32 * 1024)
    fitted = []
    monkeypatch.setattr(Recommender, "_finish", lambda self, *a: fitted.append(self))
    with pytest.raises(MemoryPlanError) as error:
        _tune(train, implicit, items, parse("tuning", BASE["tuning"]))
    message = str(error.value)
    assert "item_based.ease.max_items = 5000: its weights over 40 books" in message
    assert "would be 6.2 KiB" in message
    assert "spark.driver.memory 32.0 KiB takes at most 5.3 KiB" in message
    assert "neighbours" not in message.split("\n")[1]
    assert not fitted
