"""Interrupted and degenerate runs leave honest state and the previous good
outputs untouched: real `kedro run` processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient

from tests.conftest import copy_project

EXPERIMENT = "aisample-recommendation"
KEDRO = Path(sys.executable).with_name("kedro")
MODEL_INPUT = "data/05_model_input"


def _run(project: Path, pipeline: str) -> None:
    with KedroSession.create(project_path=project) as session:
        session.run(pipeline_names=[pipeline])


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def processed(spark, tmp_path_factory):
    """A project copy after one good data_processing run."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        bootstrap_project(project)
        _run(project, "data_processing")
        yield project


def _client(project: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def _parent_runs(project: Path, pipeline: str):
    client = _client(project)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return []
    return [
        r
        for r in client.search_runs(
            [experiment.experiment_id], order_by=["attributes.start_time ASC"]
        )
        if "mlflow.parentRunId" not in r.data.tags
        and r.info.run_name.startswith(pipeline)
    ]


def _start_training(project: Path) -> tuple[subprocess.Popen, str]:
    """`kedro run --pipeline data_science` in its own process, once its MLflow
    run is RUNNING and a few seconds into training."""
    before = {r.info.run_id for r in _parent_runs(project, "data_science")}
    process = subprocess.Popen(  # noqa: S603
        [str(KEDRO), "run", "--pipeline", "data_science"],
        cwd=project,
        env=os.environ | {"KEDRO_DISABLE_TELEMETRY": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    while True:
        new = [
            r
            for r in _parent_runs(project, "data_science")
            if r.info.run_id not in before
        ]
        if new:
            break
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no MLflow run started"
        time.sleep(1)
    time.sleep(8)  # into tune_candidates
    assert process.poll() is None, process.stdout.read()[-3000:]
    return process, new[0].info.run_id


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_training_run_is_marked_killed(processed, signum):
    inputs = _snapshot(processed / MODEL_INPUT)
    process, run_id = _start_training(processed)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "marking the MLflow run KILLED" in output, output[-3000:]
    run = _client(processed).get_run(run_id)
    assert run.info.status == "KILLED"
    assert _snapshot(processed / MODEL_INPUT) == inputs
    # Nothing was registered by the interrupted run.
    assert not _client(processed).search_model_versions(f"run_id='{run_id}'")


@pytest.mark.e2e
def test_a_run_killed_outright_is_marked_killed_by_the_next_start(processed, caplog):
    process, run_id = _start_training(processed)
    process.kill()
    process.communicate(timeout=60)
    assert _client(processed).get_run(run_id).info.status == "RUNNING"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(processed)
        with caplog.at_level("WARNING"):
            _run(processed, "data_processing")  # any run of the project
    assert _client(processed).get_run(run_id).info.status == "KILLED"
    assert f"({run_id}) was still RUNNING but its process" in caplog.text


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("ratings", "says"),
    [
        ("User-ID,ISBN,Book-Rating\n", "interactions: 0, at least 1 needed"),
        ("zeros", "train rows: 0, at least 1 needed"),
    ],
)
def test_degenerate_ratings_fail_before_the_model_inputs_are_replaced(
    processed, ratings, says
):
    inputs = _snapshot(processed / MODEL_INPUT)
    raw = processed / "data/01_raw/Ratings.csv"
    good = raw.read_text()
    if ratings == "zeros":  # every rating implicit (0)
        lines = good.splitlines()
        ratings = "\n".join(
            [lines[0], *(line.rsplit(",", 1)[0] + ",0" for line in lines[1:])]
        )
    raw.write_text(ratings)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(processed)
            with pytest.raises(Exception) as error:
                _run(processed, "data_processing")
    finally:
        raw.write_text(good)
    message = str(error.value)
    assert "Not enough data to train and evaluate on" in message
    assert says in message
    assert "the previous model inputs are untouched" in message
    assert _snapshot(processed / MODEL_INPUT) == inputs
