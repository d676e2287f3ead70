"""Shared fixtures: one SparkSession for the whole test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from kedro.framework.startup import bootstrap_project

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


def copy_project(tmp_path: Path) -> Path:
    """The project's config and demo data in a scratch folder.

    Runs write their outputs (data/, mlflow.db) there, never into the checkout.
    """
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(
        PROJECT_ROOT / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("local")
    )
    (tmp_path / "conf" / "local").mkdir()
    (tmp_path / "src").mkdir()  # the package itself is imported from the install
    raw = tmp_path / "data" / "01_raw"
    raw.mkdir(parents=True)
    for name in ("Books.csv", "Ratings.csv", "Users.csv"):
        shutil.copy(PROJECT_ROOT / "data" / "01_raw" / name, raw)
    shutil.copytree(PROJECT_ROOT / "notebooks", tmp_path / "notebooks")
    return tmp_path


@pytest.fixture
def project_copy(tmp_path, monkeypatch):
    """A scratch copy of the project, bootstrapped, as the working directory."""
    copy_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    bootstrap_project(tmp_path)
    return tmp_path
