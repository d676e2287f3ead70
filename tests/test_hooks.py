"""NodeTimingHooks: the profile a benchmark reads, written only when asked for.
MlflowRunHooks: an interrupted run ends KILLED, whatever it was doing."""

from __future__ import annotations

import functools
import json
import os
import signal
import sqlite3
import threading
import time

import mlflow
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner
from mlflow.tracking import MlflowClient

from book_recommender.hooks import mlflow_run as project_hooks
from book_recommender.hooks.mlflow_run import MlflowRunHooks
from book_recommender.hooks.timings import TIMINGS_ENV, NodeTimingHooks


def _double(x):
    return 2 * x


def _run_with(hooks, monkeypatch, target):
    from kedro.framework.hooks import _create_hook_manager  # noqa: PLC0415

    if target is None:
        monkeypatch.delenv(TIMINGS_ENV, raising=False)
    else:
        monkeypatch.setenv(TIMINGS_ENV, str(target))
    manager = _create_hook_manager()
    manager.register(hooks)
    pipeline = Pipeline(
        [
            Node(_double, "a", "b", name="first", tags="data_processing"),
            Node(_double, "b", "c", name="second", tags="data_science"),
        ]
    )
    catalog = DataCatalog({"a": MemoryDataset(1), "b": MemoryDataset()})
    manager.hook.before_pipeline_run(run_params={}, pipeline=pipeline, catalog=catalog)
    SequentialRunner().run(pipeline, catalog, hook_manager=manager)


def test_node_events_are_written_in_order_with_tags(tmp_path, monkeypatch):
    target = tmp_path / "timings.jsonl"
    _run_with(NodeTimingHooks(), monkeypatch, target)
    events = [json.loads(line) for line in target.read_text().splitlines()]
    assert events[0]["event"] == "run_started"
    seen = [(e["node"], e["event"], e.get("dataset")) for e in events[1:]]
    assert seen == [
        ("first", "ran", None),
        ("first", "saved", "b"),
        ("second", "ran", None),
        ("second", "saved", "c"),
    ]
    assert events[1]["tags"] == ["data_processing"]
    times = [e["at"] for e in events]
    assert times == sorted(times)


def test_nothing_is_written_unless_asked(tmp_path, monkeypatch):
    _run_with(NodeTimingHooks(), monkeypatch, None)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def interruptible_run(tmp_path, monkeypatch):
    """A parent and a nested MLflow run in a SQLite store, with MlflowRunHooks'
    signal handlers installed; the functions it leaves for exit are collected
    instead of registered."""
    database = tmp_path / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{database}")
    at_exit, register = [], project_hooks.atexit.register

    def collect(function, *args, **kwargs):
        if getattr(function, "__module__", None) != project_hooks.__name__:
            return register(function, *args, **kwargs)  # MLflow's, SQLAlchemy's
        at_exit.append(functools.partial(function, *args, **kwargs))
        return function

    monkeypatch.setattr(project_hooks.atexit, "register", collect)
    # Its own experiment: earlier tests leave another one active in this process.
    experiment = MlflowClient().create_experiment("interrupted")
    parent = mlflow.start_run(experiment_id=experiment, run_name="data_science")
    hooks = MlflowRunHooks()  # kedro-mlflow's hook has started the parent run
    hooks.before_pipeline_run(run_params={"pipeline_names": [], "env": "test"})
    nested = mlflow.start_run(experiment_id=experiment, nested=True)
    try:
        yield database, at_exit, parent.info.run_id, nested.info.run_id
    finally:
        hooks.after_pipeline_run()
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)


def _statuses(*run_ids):
    return [MlflowClient().get_run(run_id).info.status for run_id in run_ids]


def test_an_interrupt_ends_the_runs_killed_at_once(interruptible_run):
    _, at_exit, parent, nested = interruptible_run
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler runs before this ends
    assert mlflow.active_run() is None
    assert _statuses(parent, nested) == ["KILLED", "KILLED"]
    assert len(at_exit) == 1  # checks again at exit


def _interrupt_inside_a_tracking_store_write(database, nested):
    """SIGINT while the main thread waits for SQLite's write lock (held by
    another connection) in set_tag: the interrupted code holds the lock."""
    locked, writing = threading.Event(), threading.Event()

    def hold_the_lock_then_interrupt():
        other = sqlite3.connect(database, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        locked.set()
        writing.wait()
        time.sleep(1)  # the main thread waits for the lock in set_tag
        os.kill(os.getpid(), signal.SIGINT)
        other.execute("ROLLBACK")  # its write goes on and is interrupted
        other.close()

    thread = threading.Thread(target=hold_the_lock_then_interrupt)
    thread.start()
    locked.wait()
    writing.set()
    with pytest.raises(KeyboardInterrupt):
        MlflowClient().set_tag(nested, "written", "while interrupted")
    thread.join()


def test_an_interrupt_inside_a_tracking_store_write_ends_the_runs_killed_at_exit(
    interruptible_run,
):
    """Ending the runs in the handler would wait for the lock and fail (CI saw
    a run left RUNNING)."""
    database, at_exit, parent, nested = interruptible_run
    _interrupt_inside_a_tracking_store_write(database, nested)
    assert _statuses(parent, nested) == ["RUNNING", "RUNNING"]
    assert len(at_exit) == 1
    at_exit[0]()
    assert mlflow.active_run() is None
    assert _statuses(parent, nested) == ["KILLED", "KILLED"]


def test_runs_ended_failed_after_an_interrupt_are_marked_killed_at_exit(
    interruptible_run,
):
    """When the interruption surfaces as an ordinary exception, kedro-mlflow's
    on_pipeline_error ends the active runs FAILED (CI saw it after SIGTERM)."""
    database, at_exit, parent, nested = interruptible_run
    _interrupt_inside_a_tracking_store_write(database, nested)
    while mlflow.active_run() is not None:  # as kedro-mlflow's hook does
        mlflow.end_run("FAILED")
    assert _statuses(parent, nested) == ["FAILED", "FAILED"]
    at_exit[0]()
    assert _statuses(parent, nested) == ["KILLED", "KILLED"]


def test_an_interrupt_leaves_earlier_nested_runs_as_they_ended(interruptible_run):
    _, at_exit, parent, nested = interruptible_run
    finished = MlflowClient().create_run(
        mlflow.get_run(parent).info.experiment_id,
        tags={"mlflow.parentRunId": parent},
    )
    MlflowClient().set_terminated(finished.info.run_id, "FINISHED")
    time.sleep(0.01)  # the signal comes later, by the millisecond clock
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    at_exit[0]()
    assert _statuses(parent, nested, finished.info.run_id) == [
        "KILLED",
        "KILLED",
        "FINISHED",
    ]
