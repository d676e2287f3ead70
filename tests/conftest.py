"""Shared fixtures: one SparkSession for the whole test session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.framework.project import configure_project, settings
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog

from book_recommender.columns import ROW_ID
from book_recommender.run_lock import LOCK_NAME
from book_recommender.settings import CONFIG_LOADER_ARGS
from book_recommender.spark_session import build_spark_session

PROJECT_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# Sessions that name no environment run in conf/test (on top of conf/base).
os.environ.setdefault("KEDRO_ENV", "test")


def spark_settings(env: str = "test") -> dict:
    """spark.yml of conf/base merged with conf/<env>, as `kedro run --env` sees it."""
    configure_project("book_recommender")
    loader = OmegaConfigLoader(
        str(PROJECT_ROOT / "conf"), env=env, **settings.CONFIG_LOADER_ARGS
    )
    return dict(loader["spark"])


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """The test environment's session settings, with private scratch folders."""
    scratch = tmp_path_factory.mktemp("spark")
    settings = spark_settings() | {
        "spark.local.dir": str(scratch / "local"),
        "spark.sql.warehouse.dir": str(scratch / "warehouse"),
        "spark.checkpoint.dir": str(scratch / "checkpoints"),
    }
    session = build_spark_session(settings)
    yield session
    session.stop()


def data_processing_params(**sections: dict) -> dict:
    """conf/base's data_processing settings, with ``sections`` merged over them
    key by key (the data folder is the demo's)."""
    base = yaml.safe_load(
        (PROJECT_ROOT / "conf/base/parameters_data_processing.yml").read_text()
    )["data_processing"]
    base["data"] = {
        "folder": "data/01_raw",
        "items_file": "Books.csv",
        "users_file": "Users.csv",
        "ratings_file": "Ratings.csv",
    }
    return {key: {**value, **sections.get(key, {})} for key, value in base.items()}


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


MODEL_INPUTS = (
    "indexed_items",
    "indexed_users",
    "ratings",
    "test_ratings",
    "train_ratings",
)


def start_kedro_run(project: Path, *args: str) -> subprocess.Popen:
    """`kedro run [args]` in its own process, output and errors together."""
    return subprocess.Popen(  # noqa: S603
        [str(Path(sys.executable).with_name("kedro")), "run", *args],
        cwd=project,
        env=os.environ | {"KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def assert_refused_before_any_node(output: str, returncode: int) -> None:
    """The run refused at start-up with the lock's message alone."""
    assert returncode != 0
    assert "Another run is writing" in output, output[-3000:]
    assert "Running node" not in output
    assert "Traceback" not in output, output[-3000:]
    for raw in ("OperationalError", "FAILED_READ_FILE", "UNABLE_TO_INFER_SCHEMA"):
        assert raw not in output


def assert_tables_of_one_run(project: Path) -> None:
    """Every model-input table holds exactly the rows one run wrote (as its
    data_statistics.json counts them), ids unique; the run lock is gone."""
    folder = project / "data" / "05_model_input"
    statistics = json.loads(
        (project / "data" / "05_model_input" / "data_statistics.json").read_text()
    )
    tables = {
        name: pd.read_parquet(folder / f"{name}.parquet") for name in MODEL_INPUTS
    }
    assert len(tables["test_ratings"]) == statistics["split"]["test_rows"]
    assert len(tables["train_ratings"]) == statistics["split"]["train_rows"]
    assert len(tables["ratings"]) == statistics["model_input"]["interactions"]
    for name in ("ratings", "test_ratings", "train_ratings"):
        assert tables[name][ROW_ID].is_unique, name
    assert len(tables["indexed_users"]) > 0 and len(tables["indexed_items"]) > 0
    assert not (project / "data" / LOCK_NAME).exists()


RAW_DATASETS = ("raw_books", "raw_ratings", "raw_users")


def env_config(env: str) -> OmegaConfigLoader:
    """The project's configuration as ``kedro run --env ENV`` reads it."""
    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    return OmegaConfigLoader(str(PROJECT_ROOT / "conf"), default_run_env=env, **args)


def raw_catalog(env: str, folder: Path) -> DataCatalog:
    """The raw datasets as environment ``env`` configures them (reading
    options and all), only their files moved to ``folder`` (named after the
    datasets)."""
    catalog = env_config(env)["catalog"]
    return DataCatalog.from_config(
        {
            name: catalog[name] | {"filepath": str(folder / name)}
            for name in RAW_DATASETS
        }
    )
