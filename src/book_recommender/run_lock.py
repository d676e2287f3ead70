"""One `kedro run` at a time per data root, and one creator of the MLflow database.

Two runs writing the same ``data.root`` interleave their Parquet part files
(a test table with every row twice, a table that holds only ``_SUCCESS``) and
delete what the other is reading. So a run takes ``<data.root>/.kedro-run.lock``
before its first node: the file is created atomically (``O_EXCL``) and names
the holder's pid, host and start time. A second run refuses to start with that
name; a lock whose process is gone (same host) is taken over with a warning.
The same process may take it again (sequential runs in one session).

Two processes creating a fresh ``mlflow.db`` race on its schema (sqlite's
"duplicate column name"), and then on the experiment (kedro-mlflow looks it up
and creates it if missing: the second of two processes doing so at once fails
on the name's unique constraint); ``schema_lock`` serializes that first contact
with an ``flock`` beside the database, and ``create_experiment`` makes the
experiment under it.

A copied project brings its ``mlflow.db``, whose experiments name their artifact
folders by absolute path: runs in the copy would write into the original's
``mlruns/``. ``check_artifacts_inside`` refuses that at start-up and says how to
make the copy independent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from book_recommender.errors import ProjectError

logger = logging.getLogger(__name__)

LOCK_NAME = ".kedro-run.lock"


class RunLockedError(ProjectError, RuntimeError):
    """Another live process is running the pipeline on the same data root."""


class ProjectCopiedError(ProjectError, RuntimeError):
    """The project's MLflow database stores its artifacts in another folder."""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def acquire(data_root: Path, what: str) -> Path:
    """Takes the run lock of ``data_root`` for this process; ``what`` (the
    command) is recorded for whoever finds it taken. Raises RunLockedError
    naming the holder if another live process has it."""
    data_root.mkdir(parents=True, exist_ok=True)
    path = data_root / LOCK_NAME
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "run": what,
    }
    for _ in range(3):  # a stale lock removed under us: try again
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is None:  # being written right now, or garbage
                time.sleep(0.2)
                holder = _holder(path)
            if (
                holder
                and holder.get("pid") == me["pid"]
                and holder.get("host") == me["host"]
            ):
                return path
            if (
                holder
                and holder.get("host") == me["host"]
                and not alive(int(holder.get("pid", 0)))
            ) or holder is None:
                logger.warning(
                    "Removing the run lock %s of a process that is gone: %s",
                    path,
                    holder,
                )
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            raise RunLockedError(
                f"Another run is writing {data_root}: pid {holder['pid']} on "
                f"{holder['host']}, started {holder['started']} ({holder['run']}). "
                "Wait for it to finish or stop it; two runs on one data root would "
                f"mix their tables. The lock is {path}; it clears itself when that "
                "process is gone. Nothing was written by this run."
            ) from None
        with os.fdopen(descriptor, "w") as out:
            json.dump(me, out)
        return path
    raise RunLockedError(f"Could not take the run lock {path}; try again.")


def release(path: Path) -> None:
    """Removes the lock if this process holds it."""
    holder = _holder(path)
    if holder and holder.get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def schema_lock(tracking_uri: str) -> Iterator[None]:
    """Holds an exclusive ``flock`` beside a ``sqlite:///`` database while the
    block runs (e.g. the first connection, which creates the schema); any
    other URI runs the block as it is."""
    database = _sqlite_file(tracking_uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def create_experiment(tracking_uri: str, name: str, **kwargs) -> None:
    """Creates the experiment ``name`` (with ``kwargs``, as kedro-mlflow would)
    unless it exists; call it under ``schema_lock``. Behind a server, where the
    lock does not reach, an experiment another process created meanwhile is
    taken as it is."""
    client = MlflowClient(tracking_uri=tracking_uri)
    if client.get_experiment_by_name(name) is not None:
        return
    try:
        client.create_experiment(name, **kwargs)
    except MlflowException:
        if client.get_experiment_by_name(name) is None:
            raise


def _sqlite_file(tracking_uri: str) -> Path | None:
    prefix = "sqlite:///"
    return (
        Path(tracking_uri.removeprefix(prefix))
        if tracking_uri.startswith(prefix)
        else None
    )


def check_artifacts_inside(tracking_uri: str, project: Path) -> None:
    """Refuses a project whose own ``mlflow.db`` (a database inside the
    project) keeps an experiment's artifacts in a local folder outside it: the
    project was copied or moved, and its runs would write into the original."""
    database = _sqlite_file(tracking_uri)
    project = project.resolve()
    if database is None or not database.exists():
        return
    if not database.resolve().is_relative_to(project):
        return  # a shared database: its artifact store is its own business
    client = MlflowClient(tracking_uri=tracking_uri)
    outside = []
    for experiment in client.search_experiments(view_type=ViewType.ALL):
        location = urlparse(experiment.artifact_location)
        if location.scheme not in ("", "file"):
            continue
        folder = Path(location.path)
        if not folder.resolve().is_relative_to(project):
            outside.append(f"'{experiment.name}' -> {folder}")
    if outside:
        raise ProjectCopiedError(
            f"{database} was made in another folder: its experiments keep their "
            f"artifacts outside this project ({'; '.join(outside)}), so runs here "
            "would write into (and depend on) that folder. This looks like a copied "
            "or moved project. To make this copy independent, remove its mlflow.db "
            "and mlruns/ and run `kedro run` (it trains and registers its own "
            "champions); or run from the original folder. Nothing was written."
        )
