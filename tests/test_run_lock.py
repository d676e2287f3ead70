"""One run at a time per data root: two `kedro run`s at once never mix tables."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from book_recommender.run_lock import (
    LOCK_NAME,
    RunLockedError,
    acquire,
    create_experiment,
    release,
    schema_lock,
)


def _holder(pid: int, host: str | None = None) -> dict:
    return {
        "pid": pid,
        "host": host or socket.gethostname(),
        "started": "2026-12-03 10:00:00 +0000",
        "run": "kedro run --pipeline __default__ --env local",
    }


@pytest.fixture
def sleeper():
    """A live process that is not this one."""
    process = subprocess.Popen(["sleep", "60"])  # noqa: S607
    yield process.pid
    process.kill()
    process.wait()


def test_a_live_holder_is_named_and_a_gone_one_is_replaced(tmp_path, sleeper):
    lock = tmp_path / LOCK_NAME
    lock.write_text(json.dumps(_holder(sleeper)))
    with pytest.raises(RunLockedError) as refused:
        acquire(tmp_path, "kedro run")
    message = str(refused.value)
    assert f"pid {sleeper} on {socket.gethostname()}" in message
    assert "started 2026-12-03 10:00:00" in message and str(lock) in message
    assert json.loads(lock.read_text())["pid"] == sleeper  # untouched

    lock.write_text(json.dumps(_holder(2**22 + 12345)))  # no such process
    assert acquire(tmp_path, "kedro run") == lock
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert acquire(tmp_path, "again") == lock  # the holder may take it again
    release(lock)
    assert not lock.exists()


def _race(target, argument: str, lead: float = 0.3) -> list:
    """Four processes running ``target(argument, start, results)``, each
    waiting for the same instant ``start``; what each put in ``results``."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start = time.time() + lead
    workers = [
        context.Process(target=target, args=(argument, start, results))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    return outcomes


def _contend(folder: str, start: float, results) -> None:
    while time.time() < start:  # every process tries at the same moment
        pass
    try:
        acquire(Path(folder), "kedro run")
        results.put(("won", os.getpid()))
        time.sleep(1)  # alive while the others look: not a stale lock
    except RunLockedError as error:
        results.put(("refused", str(error)))


def test_of_processes_taking_the_lock_at_once_exactly_one_wins(tmp_path):
    """The timing-dependent part, repeated: four processes at the same instant,
    five rounds; each round one holds the lock and the others name it."""
    for round_ in range(5):
        outcomes = _race(_contend, str(tmp_path / str(round_)))
        winners = [pid for kind, pid in outcomes if kind == "won"]
        assert len(winners) == 1, outcomes
        assert all(
            f"pid {winners[0]} on" in text for kind, text in outcomes if kind != "won"
        )


def test_another_hosts_lock_is_never_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps(_holder(1, host="elsewhere")))
    with pytest.raises(RunLockedError, match="on elsewhere"):
        acquire(tmp_path, "kedro run")


def _create(uri: str, start: float, results) -> None:
    while time.time() < start:
        pass
    try:
        with schema_lock(uri):
            create_experiment(uri, "races")
        results.put("ok")
    except Exception as error:  # noqa: BLE001
        results.put(f"{type(error).__name__}: {error}")


def test_processes_starting_together_on_a_fresh_database_make_one_experiment(
    tmp_path,
):
    """kedro-mlflow looks the experiment up and creates it when missing; four
    processes doing that at the same instant on a fresh mlflow.db (schema
    made, no experiment yet) all go on, and it holds one experiment of that
    name."""
    for round_ in range(3):
        uri = f"sqlite:///{tmp_path / str(round_) / 'mlflow.db'}"
        (tmp_path / str(round_)).mkdir()
        MlflowClient(tracking_uri=uri).search_experiments()  # the schema
        outcomes = _race(_create, uri, lead=0.5)
        assert outcomes == ["ok"] * 4, outcomes
        names = [e.name for e in MlflowClient(tracking_uri=uri).search_experiments()]
        assert names.count("races") == 1, names
