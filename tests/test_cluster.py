"""`kedro run --env cluster` against a real standalone Spark cluster and MLflow server.

The fixture starts a Spark master and one worker (``spark-class`` of the installed
pyspark) and an ``mlflow server``, all on 127.0.0.1, and stops them afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pyspark
import pytest
from deltalake import DeltaTable
from mlflow.tracking import MlflowClient

from tests.conftest import copy_project

BIN = Path(sys.executable).parent
MODEL = "aisample-recommendation-recommender"
RATING_MODEL = "aisample-recommendation-rating"


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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
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
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    try:
        # The MLflow server starts beside the Spark master and worker.
        mlflow_log = services.start(
            "mlflow",
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port",
             str(mlflow_port), "--workers", "1", "--backend-store-uri",
             f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
             str(folder / "artifacts")],
            env,
        )  # fmt: skip
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


def _kedro_run(project: Path, cluster: dict, *args: str) -> subprocess.CompletedProcess:
    """`kedro run --env cluster ARGS` in ``project``, against the cluster."""
    return subprocess.run(  # noqa: S603
        [str(BIN / "kedro"), "run", "--env", "cluster", *args],
        cwd=project,
        env=os.environ | {
            "SPARK_MASTER_URL": cluster["master"],
            "MLFLOW_TRACKING_URI": cluster["mlflow"],
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_EXECUTOR_MEMORY": "2g",
            # A few thousand rows: two shuffle partitions, not the env's 16.
            "SPARK_SHUFFLE_PARTITIONS": "2",
            "KEDRO_DISABLE_TELEMETRY": "1",
        },
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )  # fmt: skip


@pytest.mark.e2e
@pytest.mark.slow
def test_cluster_env_runs_on_a_spark_cluster_and_an_mlflow_server(cluster, tmp_path):
    project = copy_project(tmp_path)
    # The reporting pipeline (driver-side figures) is left out: the local
    # end-to-end runs check it, and it adds nothing the cluster exercises.
    result = _kedro_run(
        project, cluster, "--pipelines", "data_processing,data_science,scoring",
        "--params",
        "als.ranking.rank=8,als.ranking.reg_param=1,als.ranking.alpha=5,"
        "als.rating.rank=4,als.rating.reg_param=1,item_based.knn.enabled=true,"
        # Few ALS iterations and one RP3beta family (with the author): every
        # kind still fits and is judged on the cluster, in less time.
        "als.ranking.num_epochs=3,als.rating.num_epochs=3,"
        "item_based.rp3.side_weight=30,"
        "item_based.knn.similarity=bm25,"
        "item_based.knn.neighbours=50,item_based.ease.l2=250,"
        # The author term only (the plain families are the 0 of these grids).
        "item_based.knn.side_weight=3,item_based.ease.beta=10,"
        # The smallest data that still trains every family: the first users'
        # 8,000 interactions (the whole raw files are still read and checked).
        "data_processing.preparation.is_sample=true,"
        "data_processing.preparation.sample_rows=8000",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    # The work ran on the cluster: the master saw the application finish.
    with urllib.request.urlopen(f"{cluster['master_ui']}/json/") as response:  # noqa: S310
        master = json.load(response)
    assert [app["name"] for app in master["completedapps"]] == ["book-recommender"]

    # Runs and the registered model are on the MLflow server, not in a local file.
    assert not (project / "mlflow.db").exists()
    said = result.stdout + result.stderr
    assert f"kedro viz run | {cluster['mlflow']} |" in said, said[-2000:]
    client = MlflowClient(
        tracking_uri=cluster["mlflow"], registry_uri=cluster["mlflow"]
    )
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert int(champion.version) == 1
    run = client.get_run(champion.run_id)
    parent = run.data.tags.get("mlflow.parentRunId", run.info.run_id)
    assert client.get_run(parent).info.status == "FINISHED"
    assert client.get_run(parent).data.metrics["scoring.users"] > 0
    # The item-based families were fitted and evaluated there too.
    candidates = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"
    )
    kinds = {c.data.params["kind"] for c in candidates}
    assert {"knn", "rp3", "ease", "implicit"} <= kinds
    # What the MLflow UI shows, read through the server's REST API: one
    # registered model per kind, each described; each version linked from its
    # logged model, which carries its own champion's metrics only; nested runs
    # last at least the fit they logged.
    rating = client.get_model_version_by_alias(RATING_MODEL, "champion")
    own = {MODEL: "test.", RATING_MODEL: "rating_champion.test."}
    for name, version in ((MODEL, champion), (RATING_MODEL, rating)):
        assert client.get_registered_model(name).description
        logged = client.get_logged_model(version.source.removeprefix("models:/"))
        links = json.loads(logged.tags["mlflow.modelVersions"])
        assert (name, str(version.version)) in {
            (link["name"], str(link["version"])) for link in links
        }
        keys = {metric.key for metric in logged.metrics}
        assert keys and all(key.startswith(own[name]) for key in keys), keys
    refitted = [c for c in candidates if "fit_seconds" in c.data.metrics]
    assert refitted
    for candidate in refitted:
        duration = (candidate.info.end_time - candidate.info.start_time) / 1000
        assert duration >= candidate.data.metrics["fit_seconds"], candidate.info

    # The Delta table: k books for every user, scored by that model version.
    table = DeltaTable(str(project / "data/07_model_output/user_recommendations"))
    recs = table.to_pandas()
    users = recs["User-ID"].nunique()
    assert users == client.get_run(parent).data.metrics["scoring.users"]
    assert len(recs) == 10 * users
    assert set(recs["model_version"]) == {1}
