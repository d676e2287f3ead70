"""Before a run: the settings checked (a typo fails in seconds, the key named),
the project's errors printed as their message, the libraries' notes kept
out of the console, and one run at a time per data root."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.framework.project import settings

from book_recommender.errors import install_excepthook
from book_recommender.params import check_parameters
from book_recommender.run_lock import (
    acquire,
    check_artifacts_inside,
    create_experiment,
    release,
    schema_lock,
)

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


def env_name(run_params: dict) -> str:
    """The environment in force: ``--env``, else $KEDRO_ENV, else the default."""
    return (
        run_params["env"]
        or os.getenv("KEDRO_ENV")
        or settings.CONFIG_LOADER_ARGS["default_run_env"]
    )


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
            f"kedro run --pipeline {pipelines} --env {env_name(run_params)}",
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
