"""The data_processing pipeline on the demo data, checked against pandas."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from kedro.framework.session import KedroSession


def _pandas_statistics(raw) -> dict:
    """The statistics recomputed from the CSVs with pandas, independently of Spark."""
    read = {"dtype": str, "keep_default_na": False}
    ratings = pd.read_csv(raw / "Ratings.csv", **read)
    users = pd.read_csv(raw / "Users.csv", **read)
    books = pd.read_csv(raw / "Books.csv", **read)

    ratings["User-ID"] = ratings["User-ID"].str.strip()
    ratings["ISBN"] = ratings["ISBN"].str.strip()
    value = pd.to_numeric(ratings["Book-Rating"].str.strip(), errors="coerce")
    valid = (ratings["User-ID"] != "") & (ratings["ISBN"] != "") & value.between(0, 10)
    ratings = ratings[valid].assign(rating=value[valid])

    users = users[users["User-ID"].str.strip() != ""].drop_duplicates("User-ID")
    books = books[books["ISBN"].str.strip() != ""].drop_duplicates("ISBN")
    # StringIndexer on a table of unique ids: ties in frequency, so sorted by value.
    user_index = {u: i for i, u in enumerate(sorted(users["User-ID"]))}
    item_index = {b: i for i, b in enumerate(sorted(books["ISBN"]))}

    merged = ratings.merge(users[["User-ID"]], on="User-ID").merge(
        books[["ISBN"]], on="ISBN"
    )
    per_value = merged["rating"].value_counts()
    n_users, n_items = merged["User-ID"].nunique(), merged["ISBN"].nunique()
    return {
        "ratings_read": int(valid.size),
        "ratings_dropped": int((~valid).sum()),
        "unknown_item": int((~ratings["ISBN"].isin(books["ISBN"])).sum()),
        "unknown_user": int((~ratings["User-ID"].isin(users["User-ID"])).sum()),
        "interactions": len(merged),
        "users": n_users,
        "items": n_items,
        "sparsity": 1 - len(merged) / (n_users * n_items),
        "max_user_id": max(user_index[u] for u in merged["User-ID"]),
        "max_item_id": max(item_index[b] for b in merged["ISBN"]),
        "ratings_per_value": {str(int(k)): int(v) for k, v in per_value.items()},
        "explicit": int((merged["rating"] > 0).sum()),
    }


@pytest.mark.e2e
def test_data_processing_statistics_match_pandas(spark, project_copy):
    with KedroSession.create(project_path=project_copy) as session:
        session.run(pipeline_names=["data_processing"])

    stats = json.loads(
        (project_copy / "data/05_model_input/data_statistics.json").read_text()
    )
    expected = _pandas_statistics(project_copy / "data/01_raw")

    assert stats["rows"]["ratings"]["read"] == expected["ratings_read"]
    assert (
        sum(stats["rows"]["ratings"]["dropped"].values()) == expected["ratings_dropped"]
    )
    assert stats["joins"]["ratings_with_unknown_item"] == expected["unknown_item"]
    assert stats["joins"]["ratings_with_unknown_user"] == expected["unknown_user"]
    model_input = stats["model_input"]
    for key in ("interactions", "users", "items", "max_user_id", "max_item_id"):
        assert model_input[key] == expected[key], key
    assert model_input["sparsity"] == pytest.approx(expected["sparsity"])
    assert model_input["ratings_per_value"] == expected["ratings_per_value"]
    assert model_input["explicit_interactions"] == expected["explicit"]

    split = stats["split"]
    assert split["train_rows"] + split["test_rows"] == expected["explicit"]
    for value, share in split["train_share_per_value"].items():
        if expected["ratings_per_value"][value] >= 1000:
            assert share == pytest.approx(0.8, abs=0.04), value

    # The persisted model inputs are what the statistics describe.
    train = pd.read_parquet(project_copy / "data/05_model_input/train_ratings.parquet")
    test = pd.read_parquet(project_copy / "data/05_model_input/test_ratings.parquet")
    assert len(train) == split["train_rows"] and len(test) == split["test_rows"]
    assert set(train["id"]).isdisjoint(test["id"])
    assert (train["Book-Rating"] > 0).all() and (test["Book-Rating"] > 0).all()
