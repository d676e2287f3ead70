"""Shared fixtures: one SparkSession for the whole test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from book_recommender.spark_session import build_spark_session

PROJECT_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """The project's own session settings (spark.yml), made small and private."""
    settings = yaml.safe_load((PROJECT_ROOT / "conf/base/spark.yml").read_text())
    scratch = tmp_path_factory.mktemp("spark")
    settings.update(
        {
            "spark.master": "local[2]",
            "spark.driver.memory": "2g",
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.local.dir": str(scratch / "local"),
            "spark.sql.warehouse.dir": str(scratch / "warehouse"),
            "spark.checkpoint.dir": str(scratch / "checkpoints"),
            "spark.ui.enabled": "false",
        }
    )
    session = build_spark_session(settings)
    yield session
    session.stop()
