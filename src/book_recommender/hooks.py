"""Project hooks."""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any

import mlflow
from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.framework.project import settings
from kedro.pipeline import Node
from mlflow.tracking import MlflowClient
from pydantic import BaseModel
from pyspark.sql import SparkSession

from book_recommender import aliases
from book_recommender.errors import install_excepthook
from book_recommender.models.records import Champion
from book_recommender.params import check_parameters
from book_recommender.run_lock import (
    acquire,
    alive,
    check_artifacts_inside,
    create_experiment,
    release,
    schema_lock,
)
from book_recommender.spark_session import build_spark_session

TIMINGS_ENV = "BOOK_RECOMMENDER_NODE_TIMINGS"
# The MLflow UI opens an experiment on the view this tag names.
EXPERIMENT_KIND = "mlflow.experimentKind"
# Where a run's process lives, to tell a killed run from one still going.
HOST_TAG, PID_TAG = "book_recommender.host", "book_recommender.pid"
logger = logging.getLogger(__name__)


# MLflow, kedro-mlflow and kedro-telemetry set their loggers' levels when
# imported (INFO, INFO and DEBUG), over conf/logging.yml, and the plugins are
# imported when the session loads their hooks. Their INFO notes (database
# migrations, input-example checks, resolver registration, the run's id: the
# closing summary names the run) and MLflow's advice to log models from code
# (mlflow.pyfunc) are left out of the console; their warnings, and telemetry's
# notice that it sends data, are kept. $MLFLOW_LOGGING_LEVEL still rules MLflow.
_LIBRARY_LEVELS = {"kedro_mlflow": logging.WARNING, "kedro_telemetry": logging.INFO}
_MLFLOW_LEVELS = {"mlflow": logging.WARNING, "mlflow.pyfunc": logging.ERROR}


def _quiet_library_loggers() -> None:
    levels = _LIBRARY_LEVELS | (
        {} if os.getenv("MLFLOW_LOGGING_LEVEL") else _MLFLOW_LEVELS
    )
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


class ParameterCheckHooks:
    @hook_impl(tryfirst=True)
    def after_context_created(self, context: KedroContext) -> None:
        """Checks the typed settings (base, the environment, ``--params``) before
        Spark starts or any node reads data. From here on, ``kedro`` prints
        the project's own errors as their message (``errors``), and the
        libraries' loggers keep to the console's levels."""
        install_excepthook()
        _quiet_library_loggers()
        # The raw merged parameters: ``context.params`` would have Kedro build
        # the nodes' typed inputs first, with its own messages.
        check_parameters(context.config_loader["parameters"], context.env)


def _env(run_params: dict) -> str:
    """The environment in force: ``--env``, else $KEDRO_ENV, else the default."""
    return (
        run_params["env"]
        or os.getenv("KEDRO_ENV")
        or settings.CONFIG_LOADER_ARGS["default_run_env"]
    )


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

    @hook_impl
    def before_pipeline_run(self, run_params: dict) -> None:
        run = mlflow.active_run()
        if run is None:
            return
        pipelines = run_params["pipeline_names"] or ["__default__"]
        if run.info.run_name == "+".join(pipelines):
            names = ["all pipelines" if p == "__default__" else p for p in pipelines]
            mlflow.set_tag(
                "mlflow.runName", f"{' + '.join(names)}, env {_env(run_params)}"
            )
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
        if _in_tracking_store(frame):
            # Ending the runs now would wait for the lock the interrupted code
            # holds (SQLite's 20 s busy timeout), fail, and leave them RUNNING.
            # End them at exit instead, once that code has unwound: before
            # MLflow's own exit handler, registered earlier, ends them FINISHED.
            atexit.register(_end_runs_killed)
        else:
            _end_runs_killed()
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


class RunLockHooks:
    """One run at a time per data root (``run_lock``): taken before any other
    hook's ``before_pipeline_run`` (no MLflow run is opened by a run that
    refuses) and released when the pipeline ends. At start-up, before
    kedro-mlflow's set-up: a copied project's MLflow database is refused (its
    artifacts live in the original), and the database's first connection
    (which creates its schema) and the experiment's creation are serialized
    across processes."""

    def __init__(self) -> None:
        self._data_root: Path | None = None
        self._lock: Path | None = None

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: KedroContext) -> None:
        root = str(context.config_loader["globals"]["data"]["root"])
        self._data_root = None if "://" in root else Path(context.project_path) / root
        mlflow_config = context.config_loader["mlflow"]
        uri = str(mlflow_config["server"]["mlflow_tracking_uri"])
        check_artifacts_inside(uri, Path(context.project_path))
        experiment = mlflow_config["tracking"]["experiment"]
        with schema_lock(uri):
            create_experiment(
                uri,
                experiment["name"],
                **(experiment.get("create_experiment_kwargs") or {}),
            )

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict) -> None:
        if self._data_root is None:
            return
        pipelines = ",".join(run_params["pipeline_names"] or ["__default__"])
        self._lock = acquire(
            self._data_root,
            f"kedro run --pipeline {pipelines} --env {_env(run_params)}",
        )

    def _release(self) -> None:
        if self._lock is not None:
            release(self._lock)
            self._lock = None

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._release()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._release()


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


class SparkHooks:
    """The project's SparkSession, and no cached data across runs.

    Nodes cache what they read again (the raw files among them), and Spark
    matches a cached plan for any later read of the same path: in one process
    (a notebook, a test session) a second run would read a rewritten file
    from the first run's cache. So every run starts and ends with Spark's
    cache empty (a notebook's own cached frames are dropped too: recomputed,
    never wrong).
    """

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        """Starts the project's SparkSession from ``conf/<env>/spark.yml``."""
        build_spark_session(context.config_loader["spark"])

    @staticmethod
    def _forget_cached_data() -> None:
        spark = SparkSession.getActiveSession()
        if spark is not None:
            spark.catalog.clearCache()

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._forget_cached_data()

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._forget_cached_data()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._forget_cached_data()


class NodeTimingHooks:
    """Where a run's time goes: one JSON line per node event, for profiling.

    Active only when the environment variable ``BOOK_RECOMMENDER_NODE_TIMINGS``
    names a file. Lines hold the node's name, its tags (the pipeline it belongs
    to), the event (``ran``, or ``saved`` with the dataset) and its Unix time; the
    first line marks the start of the run. Spark is lazy: a node often returns a
    plan that runs only when an output is saved, after the node "ran". With the
    sequential runner a node's share of the run therefore lasts from the
    previous node's last event to its own last event (loading its inputs, its
    work, saving its outputs).
    """

    def __init__(self) -> None:
        self._path: Path | None = None

    def _write(self, line: dict) -> None:
        if self._path is not None:
            with self._path.open("a") as out:
                out.write(json.dumps({**line, "at": round(time.time(), 3)}) + "\n")

    @hook_impl
    def before_pipeline_run(self) -> None:
        target = os.getenv(TIMINGS_ENV)
        self._path = Path(target) if target else None
        if self._path:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._path.write_text("")
        self._write({"event": "run_started"})

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        self._write({"node": node.name, "tags": sorted(node.tags), "event": "ran"})

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node: Node) -> None:
        self._write(
            {
                "node": node.name,
                "tags": sorted(node.tags),
                "event": "saved",
                "dataset": dataset_name,
            }
        )


def _beyond(mine: dict[str, float], theirs: dict[str, float], baseline: str) -> str:
    """A champion's test lists beyond accuracy, its baseline's in brackets
    (``beyond_accuracy``)."""
    return (
        f"beyond accuracy ({baseline} in brackets): novelty {mine['novelty']:.2f} "
        f"bits ({theirs['novelty']:.2f}), diversity {mine.get('diversity', 0):.3f} "
        f"({theirs.get('diversity', 0):.3f}), {mine['head_share']:.0%} from the 1% "
        f"most-read books ({theirs['head_share']:.0%}), popularity percentile "
        f"{mine['popularity_percentile']:.2f} "
        f"({theirs['popularity_percentile']:.2f}; what readers read next: "
        f"{mine['read_popularity_percentile']:.2f})"
    )


def run_summary(
    champions: dict[str, Champion] | None,
    table: str | None,
    rows: int | None,
    tracking_uri: str,
    mlflow_run: str | None,
    reports: str,
) -> str:
    """What a run produced, in a few lines: each champion's test metric against
    its baseline's, the Delta table and its rows, and where to look next."""
    lines = ["The run finished."]
    if mlflow_run:
        lines.append(f"  MLflow run: {mlflow_run}")
    for role, champion in (champions or {}).items():
        metric = champion.metric
        mine = champion.test_metrics[metric]
        theirs = champion.baseline_test_metrics[metric]
        verdict = "beats" if champion.beats_baseline[metric] else "does NOT beat"
        coverage = champion.test_metrics.get("catalog_coverage")
        reach = (
            f"; its test lists cover {coverage:.1%} of the catalog"
            if role == "recommender" and coverage is not None
            else ""
        )
        lines.append(
            f"  {role} champion: {champion.name}, test {metric} {mine:.4f}, "
            f"{verdict} {champion.baseline} ({theirs:.4f}){reach}"
        )
        if role == "recommender" and "novelty" in champion.test_metrics:
            lines.append(
                "    "
                + _beyond(
                    champion.test_metrics,
                    champion.baseline_test_metrics,
                    champion.baseline,
                )
            )
    if table is not None:
        lines.append(f"  recommendations: {rows:,} rows in the Delta table {table}")
    lines += [
        "  look further: kedro viz run | "
        f"mlflow ui --backend-store-uri {tracking_uri} | {reports}",
    ]
    return "\n".join(lines)


class RunSummaryHooks:
    """Ends a successful run with its summary (``run_summary``)."""

    def __init__(self) -> None:
        self._tracking_uri = ""

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        uri = context.config_loader["mlflow"]["server"]["mlflow_tracking_uri"]
        self._tracking_uri = str(uri).replace(f"{Path.cwd().as_posix()}/", "")

    @hook_impl
    def after_pipeline_run(self, pipeline: Any, catalog: Any) -> None:
        outputs = pipeline.all_outputs()
        champions = catalog.load("champions") if "champions" in outputs else None
        table = rows = None
        if "user_recommendations" in outputs:
            dataset = catalog["user_recommendations"]
            table = str(getattr(dataset, "_filepath", "user_recommendations"))
            rows = catalog.load("user_recommendations").count()
        run = mlflow.last_active_run()
        name = f"'{run.info.run_name}' ({run.info.run_id})" if run else None
        # The champions' file as the catalog has it (data.root differs by env),
        # the figures beside it in the reporting layer's folder.
        champions_file = PurePosixPath(catalog["champions"]._filepath)
        reports = f"{champions_file.parent.parent / '08_reporting'}/ | {champions_file}"
        logger.info(
            run_summary(champions, table, rows, self._tracking_uri, name, reports)
        )
