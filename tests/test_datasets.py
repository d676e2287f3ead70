"""The project's catalog datasets: a Delta table that explains write conflicts,
and scoring refusing an empty model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DatasetError
from kedro_datasets.spark import SparkDatasetV2

from book_recommender.datasets import DeltaTableDataset, RegisteredRecommender
from book_recommender.params import parse
from book_recommender.pipelines.scoring.nodes import recommend_for_users
from book_recommender.serving import Bundle
from book_recommender.topk import ItemTable
from tests.test_params import SCORING


def _table(tmp_path) -> DeltaTableDataset:
    return DeltaTableDataset(
        filepath=str(tmp_path / "recs"),
        file_format="delta",
        save_args={"mode": "overwrite"},
    )


def test_a_concurrent_commit_is_explained_and_other_errors_pass(
    spark, tmp_path, monkeypatch
):
    table = _table(tmp_path)
    frame = spark.createDataFrame([(1, "a")], "user int, item string")
    table.save(frame)  # a plain write works
    assert table.load().count() == 1

    def conflict(self, data):
        raise RuntimeError(
            "[DELTA_CONCURRENT_APPEND.WITHOUT_HINT] ConcurrentAppendException: "
            "Files were added to the root of the table by a concurrent update."
        )

    monkeypatch.setattr(SparkDatasetV2, "_save", conflict)
    with pytest.raises(DatasetError) as error:
        table.save(frame)
    message = str(error.value)
    # One line, with the version the other run committed (here the plain
    # write's, version 0), and no chained Spark stack.
    assert message.startswith("Another run committed version 0 (at 20")
    assert "Delta table at" in message and "rerunning is safe" in message
    assert "DELTA_CONCURRENT_APPEND.WITHOUT_HINT" in message
    assert "\n" not in message and error.value.__cause__ is None

    def other(self, data):
        raise RuntimeError("disk full")

    monkeypatch.setattr(SparkDatasetV2, "_save", other)
    with pytest.raises(DatasetError, match="disk full") as error:
        table.save(frame)
    assert "Another run" not in str(error.value)


def test_scoring_refuses_a_model_without_users(spark):
    empty = Bundle(
        users=pd.DataFrame({"user_idx": [], "user": [], "factor_row": []}),
        user_factors=np.zeros((0, 2), np.float32),
        items=pd.DataFrame({"item_idx": [], "ISBN": []}),
        table=ItemTable.build(
            np.zeros(0), np.zeros((0, 2), np.float32), np.zeros(0), np.zeros(0)
        ),
        seen_indptr=np.zeros(1, np.int64),
        seen_items=np.zeros(0, np.int64),
        meta={
            "columns": {"user_id": "User-ID", "item_id": "ISBN"},
            "item_columns": ["ISBN"],
            "k": 10,
            "clip": None,
        },
    )
    champion = RegisteredRecommender("m", 3, empty, {"role": "recommender"})
    with pytest.raises(ValueError, match="refusing to write an empty"):
        recommend_for_users(champion, parse("scoring", {**SCORING, "k": 10}))
