"""The standalone cluster of the cluster test, started in the background.

When the session has the cluster test, the first test's set-up starts a Spark
master, one worker (``spark-class`` of the installed pyspark) and an ``mlflow
server``, all on 127.0.0.1, and a `kedro run --env cluster` against them; the
run goes on beside the other tests (most of a test's time is waiting on JVMs
and subprocesses, not the cores), and the cluster test, collected last, waits
for it and checks what it left. Everything is stopped at the end of the session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyspark
import pytest

from tests.conftest import copy_project

BIN = Path(sys.executable).parent
CLUSTER_TEST = "test_cluster.py"
# The run: a small grid and the author-term candidates only (the plain families
# are the 0 of these grids), on the smallest data that still trains every
# family (the first users' 8,000 interactions; the raw files are still read).
RUN_ARGS = (
    "--params",
    "als.ranking.rank=8,als.ranking.reg_param=1,als.ranking.alpha=5,"
    "als.rating.rank=4,als.rating.reg_param=1,item_based.knn.similarity=bm25,"
    "item_based.knn.neighbours=50,item_based.ease.l2=250,"
    "item_based.knn.side_weight=3,item_based.ease.beta=10,"
    "data_processing.preparation.is_sample=true,"
    "data_processing.preparation.sample_rows=8000",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(ready: Callable[[], bool], what: str, log: Path, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.5)
    raise AssertionError(
        f"{what} not ready after {timeout} s:\n{log.read_text()[-3000:]}"
    )


def _in_log(log: Path, text: str) -> Callable[[], bool]:
    return lambda: log.exists() and text in log.read_text(errors="replace")


def _answers(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                return response.status == 200  # noqa: PLR2004
        except OSError:
            return False

    return ready


class _Services:
    """Processes started for the test, stopped (and checked stopped) at the end."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.processes: list[subprocess.Popen] = []

    def start(self, name: str, command: list[str], env: dict) -> Path:
        log = self.folder / f"{name}.log"
        with log.open("w") as out:
            self.processes.append(
                subprocess.Popen(  # noqa: S603
                    command, stdout=out, stderr=subprocess.STDOUT, env=env
                )
            )
        return log

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _cluster(folder: Path) -> Iterator[dict]:
    """A Spark master, one worker and an MLflow server on 127.0.0.1."""
    spark_home = Path(pyspark.__file__).parent
    env = os.environ | {
        "SPARK_HOME": str(spark_home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(folder / "logs"),
    }
    spark_class = str(spark_home / "bin" / "spark-class")
    master_port, master_ui, worker_ui, mlflow_port = (_free_port() for _ in range(4))
    master_url = f"spark://127.0.0.1:{master_port}"
    services = _Services(folder)
    try:
        master_log = services.start(
            "master",
            [spark_class, "org.apache.spark.deploy.master.Master", "--host",
             "127.0.0.1", "--port", str(master_port), "--webui-port", str(master_ui)],
            env,
        )  # fmt: skip
        _wait(_in_log(master_log, "New state: ALIVE"), "Spark master", master_log)
        worker_log = services.start(
            "worker",
            [spark_class, "org.apache.spark.deploy.worker.Worker", "--host",
             "127.0.0.1", "--cores", "2", "--memory", "3g", "--webui-port",
             str(worker_ui), "--work-dir", str(folder / "work"), master_url],
            env,
        )  # fmt: skip
        _wait(
            _in_log(worker_log, "Successfully registered with master"),
            "Spark worker",
            worker_log,
        )
        mlflow_log = services.start(
            "mlflow",
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port",
             str(mlflow_port), "--workers", "1", "--backend-store-uri",
             f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
             str(folder / "artifacts")],
            env,
        )  # fmt: skip
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        _wait(_answers(f"{mlflow_url}/health"), "MLflow server", mlflow_log)
        yield {
            "master": master_url,
            "master_ui": f"http://127.0.0.1:{master_ui}",
            "mlflow": mlflow_url,
            "logs": folder,
        }
    finally:
        services.stop()
    assert all(p.poll() is not None for p in services.processes)


def _start_kedro_run(project: Path, cluster: dict, *args: str) -> subprocess.Popen:
    """`kedro run --env cluster ARGS` in ``project``, against the cluster."""
    return subprocess.Popen(  # noqa: S603
        [str(BIN / "kedro"), "run", "--env", "cluster", *args],
        cwd=project,
        env=os.environ | {
            "SPARK_MASTER_URL": cluster["master"],
            "MLFLOW_TRACKING_URI": cluster["mlflow"],
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_EXECUTOR_MEMORY": "2g",
            "KEDRO_DISABLE_TELEMETRY": "1",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


@dataclass
class ClusterRun:
    cluster: dict
    project: Path
    process: subprocess.Popen

    def result(self, timeout: float = 1500) -> subprocess.CompletedProcess:
        stdout, stderr = self.process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(
            self.process.args, self.process.returncode, stdout, stderr
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The cluster test last: its run starts with the session (below)."""
    items.sort(key=lambda item: item.path.name == CLUSTER_TEST)


@pytest.fixture(scope="session", autouse=True)
def cluster_run(request, tmp_path_factory) -> Iterator[ClusterRun | None]:
    if not any(item.path.name == CLUSTER_TEST for item in request.session.items):
        yield None
        return
    services = _cluster(tmp_path_factory.mktemp("cluster"))
    cluster = next(services)
    project = copy_project(tmp_path_factory.mktemp("cluster_project"))
    process = _start_kedro_run(project, cluster, *RUN_ARGS)
    try:
        yield ClusterRun(cluster, project, process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        next(services, None)  # stops them, and checks they stopped
