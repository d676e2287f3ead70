"""Project hooks."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import mlflow
from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.framework.project import settings
from kedro.pipeline import Node

from book_recommender.params import check_parameters
from book_recommender.spark_session import build_spark_session

TIMINGS_ENV = "BOOK_RECOMMENDER_NODE_TIMINGS"
# The MLflow UI opens an experiment on the view this tag names.
EXPERIMENT_KIND = "mlflow.experimentKind"


class ParameterCheckHooks:
    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        """Checks the typed settings (base, the environment, ``--params``) before
        Spark starts or any node reads data."""
        check_parameters(context.params, context.env)


def _env(run_params: dict) -> str:
    """The environment in force: ``--env``, else $KEDRO_ENV, else the default."""
    return (
        run_params.get("env")
        or os.environ.get("KEDRO_ENV")
        or settings.CONFIG_LOADER_ARGS.get("default_run_env", "local")
    )


class MlflowRunHooks:
    """Names the run after its pipelines and environment (kedro-mlflow names it
    after the pipeline alone, ``__default__``) and opens the experiment in the
    MLflow UI's model-training view rather than the GenAI one."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict) -> None:
        run = mlflow.active_run()  # started by kedro-mlflow's hook, called first
        if run is None:
            return
        pipelines = run_params.get("pipeline_names") or ["__default__"]
        if run.info.run_name == "+".join(pipelines):
            names = ["all pipelines" if p == "__default__" else p for p in pipelines]
            mlflow.set_tag(
                "mlflow.runName", f"{' + '.join(names)}, env {_env(run_params)}"
            )
        experiment = mlflow.get_experiment(run.info.experiment_id)
        if EXPERIMENT_KIND not in experiment.tags:
            mlflow.set_experiment_tag(EXPERIMENT_KIND, "custom_model_development")


class SparkHooks:
    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        """Starts the project's SparkSession from ``conf/<env>/spark.yml``."""
        build_spark_session(context.config_loader["spark"])


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
        target = os.environ.get(TIMINGS_ENV)
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
