"""The run's MLflow parent run: named after what ran, tagged with its process so
a killed run is marked KILLED by the next start, and ended KILLED on a signal;
registry aliases move only once the whole run has succeeded."""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import socket
import threading
import time
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from mlflow.tracking import MlflowClient
from pydantic import BaseModel

from book_recommender import aliases
from book_recommender.hooks.checks import env_name
from book_recommender.run_lock import alive

logger = logging.getLogger(__name__)

# The MLflow UI opens an experiment on the view this tag names.
EXPERIMENT_KIND = "mlflow.experimentKind"
# Where a run's process lives, to tell a killed run from one still going.
HOST_TAG, PID_TAG = "book_recommender.host", "book_recommender.pid"


def mark_stale_runs(experiment_id: str, current_run_id: str) -> list[str]:
    """Marks KILLED the RUNNING runs of this experiment whose process, on this
    host, is gone (killed with SIGKILL, or the machine stopped), and their
    nested runs. Returns their ids."""
    client = MlflowClient()
    running = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    host = socket.gethostname()
    stale = [
        run
        for run in running
        if run.info.run_id != current_run_id
        and run.data.tags.get(HOST_TAG) == host
        and run.data.tags.get(PID_TAG, "").isdigit()
        and not alive(int(run.data.tags[PID_TAG]))
    ]
    marked = []
    for run in stale:
        children = [
            r.info.run_id
            for r in running
            if r.data.tags.get("mlflow.parentRunId") == run.info.run_id
        ]
        for run_id in [*children, run.info.run_id]:
            client.set_terminated(run_id, "KILLED")
            marked.append(run_id)
        logger.warning(
            "MLflow run '%s' (%s) was still RUNNING but its process %s is gone "
            "(killed?): marked KILLED, with %s nested run(s).",
            run.info.run_name,
            run.info.run_id,
            run.data.tags[PID_TAG],
            len(children),
        )
    return marked


def _end_runs_killed() -> None:
    """Ends the active MLflow runs (nested ones first) as KILLED."""
    while mlflow.active_run() is not None:
        mlflow.end_run("KILLED")


def _mark_killed(run_id: str, since_ms: int) -> None:
    """At exit: the run a signal stopped, and its nested runs still going when
    it came, end KILLED whatever the unwinding made of them. kedro-mlflow ends
    the runs FAILED when the interruption surfaces as an ordinary exception (an
    interrupted Spark or tracking-store call can raise one), and MLflow's own
    exit handler would end the active ones FINISHED."""
    try:
        _end_runs_killed()
        client = MlflowClient()
        parent = client.get_run(run_id)
        nested = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
        )
        for run in [*nested, parent]:
            info = run.info
            stopped = info.status == "RUNNING" or (info.end_time or 0) >= since_ms
            if stopped and info.status != "KILLED":
                client.set_terminated(info.run_id, "KILLED")
    except Exception:  # at exit, with nobody left to catch it
        logger.exception(
            "Could not mark the MLflow run %s KILLED: the next run of the "
            "project marks it if it is still RUNNING.",
            run_id,
        )


def _in_tracking_store(frame: Any) -> bool:
    """Whether the interrupted code is inside MLflow's tracking store, where it
    may hold the SQLite database's write lock until its stack unwinds."""
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(
            ("mlflow.store", "sqlalchemy")
        ):
            return True
        frame = frame.f_back
    return False


def _tidy_run_param_tags(run: Any, run_params: dict) -> None:
    """kedro-mlflow tags the run with Kedro's run parameters as they are: the
    runner as an object repr (or "None": Kedro's default, SequentialRunner)
    and the session id as ``run_id``, which reads as MLflow's. The runner
    becomes its class name, the id ``kedro.session_id``."""
    tags = mlflow.get_run(run.info.run_id).data.tags
    if "runner" in tags:
        name = re.sub(r"^<?([\w.]+\.)?(\w+).*$", r"\2", tags["runner"])
        mlflow.set_tag("runner", "SequentialRunner" if name == "None" else name)
    if "run_id" in tags and tags["run_id"] == run_params.get("run_id"):
        mlflow.delete_tag("run_id")
        mlflow.set_tag("kedro.session_id", run_params["run_id"])


class MlflowRunHooks:
    """The MLflow run tells the truth about the process behind it.

    kedro-mlflow starts the run (its hook is called first); this names it after
    its pipelines and environment (instead of ``__default__``), tags the
    experiment as model development (MLflow 3.17's UI still opens its GenAI
    view: the README links the runs view), tidies the run-parameter tags,
    records the process (host, pid), marks KILLED the runs a killed process left
    RUNNING, and ends the run KILLED on Ctrl-C or SIGTERM (MLflow would
    otherwise end it FINISHED at exit).
    """

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._run_id: str | None = None
        self._signalled = False

    @hook_impl
    def before_pipeline_run(self, run_params: dict) -> None:
        run = mlflow.active_run()
        if run is None:
            return
        pipelines = run_params["pipeline_names"] or ["__default__"]
        if run.info.run_name == "+".join(pipelines):
            names = ["all pipelines" if p == "__default__" else p for p in pipelines]
            mlflow.set_tag(
                "mlflow.runName", f"{' + '.join(names)}, env {env_name(run_params)}"
            )
        self._run_id, self._signalled = run.info.run_id, False
        mlflow.set_tags({HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())})
        _tidy_run_param_tags(run, run_params)
        experiment = mlflow.get_experiment(run.info.experiment_id)
        if EXPERIMENT_KIND not in experiment.tags:
            mlflow.set_experiment_tag(EXPERIMENT_KIND, "custom_model_development")
        mark_stale_runs(run.info.experiment_id, run.info.run_id)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._interrupted)

    def _interrupted(self, signum: int, frame: Any) -> None:
        logger.warning(
            "%s: marking the MLflow run KILLED and stopping.",
            signal.Signals(signum).name,
        )
        if self._run_id is not None and not self._signalled:
            self._signalled = True
            # Registered after MLflow's own exit handler, this runs before it.
            atexit.register(_mark_killed, self._run_id, int(time.time() * 1000))
        # Ending the runs now, in case the process is killed outright before it
        # exits. Not inside a tracking-store write: ending them would wait for
        # the lock the interrupted code holds (SQLite's 20 s busy timeout) and
        # fail; the exit handler ends them once that code has unwound.
        if not _in_tracking_store(frame):
            try:
                _end_runs_killed()
            except Exception:  # noqa: BLE001 (the exit handler tries again)
                logger.warning("The MLflow runs are marked KILLED at exit.")
        previous = self._previous.get(signal.SIGINT)
        if callable(previous):  # PySpark's: cancels the running Spark jobs
            previous(signum, frame)
        raise KeyboardInterrupt

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._restore()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._restore()

    @hook_impl(wrapper=True)
    def before_node_run(self, inputs: dict[str, Any]) -> Any:
        """kedro-mlflow logs a node's ``params:`` inputs, flattening dicts; the
        typed settings Kedro builds from the YAML (``params``) would be logged
        as one repr each. While the hooks run, it sees them as the dicts they
        were written as (``als.ranking.rank``, ...); the node gets them typed."""
        typed = {
            name: value
            for name, value in inputs.items()
            if name.startswith("params:") and isinstance(value, BaseModel)
        }
        inputs.update({name: value.model_dump() for name, value in typed.items()})
        try:
            return (yield)
        finally:
            inputs.update(typed)


class AliasHooks:
    """The registry aliases the run staged move when its pipeline succeeded,
    and not when it failed (``book_recommender.aliases``)."""

    @hook_impl
    def before_pipeline_run(self) -> None:
        aliases.drop()  # a previous run of this process that never finished

    @hook_impl
    def after_pipeline_run(self) -> None:
        aliases.apply()

    @hook_impl
    def on_pipeline_error(self) -> None:
        aliases.drop()
