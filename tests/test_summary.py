"""The lines a run ends with name where to look, never a tracking server's
credentials."""

from __future__ import annotations

import pytest

from book_recommender.hooks.summary import run_summary


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("sqlite:///mlflow.db", "mlflow ui --backend-store-uri sqlite:///mlflow.db"),
        ("http://mlflow.internal:5000", "http://mlflow.internal:5000"),
        ("https://ana:s3cret@mlflow.internal/", "https://***@mlflow.internal/"),
        ("https://token@mlflow.internal:443", "https://***@mlflow.internal:443"),
    ],
)
def test_the_summary_points_at_the_tracking_store_without_credentials(uri, shown):
    said = run_summary(None, None, None, uri, None, "data/08_reporting/")
    assert f"look further: kedro viz run | {shown} | data/08_reporting/" in said
    assert "s3cret" not in said and "ana" not in said and "token" not in said
