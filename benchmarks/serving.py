"""How fast the registered recommender answers, against a floor: a no-op model
served the same way.

Run after a training run (`make demo`, or `kedro run` in the project or with
``--tracking-uri`` pointing at another store). It loads
``models:/<name>@champion`` in a fresh Python process (load time, artifact
size), logs a no-op pyfunc model with the champion's signature to a scratch
store (its ``predict`` returns its input), serves both at once with
``mlflow models serve --env-manager local`` (one worker each) on free 127.0.0.1
ports and sends single-row ``dataframe_split`` requests one at a time,
alternating between the two (so that the machine's ups and downs fall on both
alike):

- by id: a known user (every tenth an unknown id) and ``k``;
- by history: an id the model never saw with a 20-book ``history``.

Both models get the same bodies. Prints and writes
(``benchmarks/results/serving.*``) the p50/p99 of each, and each champion
row's p50 as a multiple of the no-op's p50 for the same bodies.

    .venv/bin/python benchmarks/serving.py [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
from common import PROJECT, machine, markdown_table, write_results

MODEL = "aisample-recommendation-recommender"
HISTORY_BOOKS = 20
LOAD = """
import sys, time
started = time.perf_counter()
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
print(time.perf_counter() - started)
bundle = model.unwrap_python_model().bundle
print(bundle.meta.get("rank", 0), type(bundle.weights).__name__)
local = mlflow.artifacts.download_artifacts(artifact_uri=sys.argv[2])
print(sum(f.stat().st_size for f in __import__("pathlib").Path(local).rglob("*") if f.is_file()))
print(",".join(bundle.items[bundle.columns["item_id"]].head(2000)))
print(",".join(bundle.users["user"].head(1000)))
"""


class NoOp(mlflow.pyfunc.PythonModel):
    """The floor: MLflow's parsing, schema check and JSON answer, no model."""

    def predict(self, context, model_input, params=None):
        return model_input


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(url: str, body: dict) -> tuple[float, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310
        answer = json.loads(reply.read())
    return time.perf_counter() - started, answer


def _serve(model_uri: str, tracking_uri: str) -> tuple[subprocess.Popen, str, float]:
    """``mlflow models serve`` of ``model_uri`` on a free port, once it answers
    /ping: the process, its URL and the seconds it took."""
    port = _free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    started = time.perf_counter()
    server = subprocess.Popen(  # noqa: S603
        [
            str(mlflow_cli),
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
        ],  # fmt: skip
        env=os.environ
        | {
            "MLFLOW_TRACKING_URI": tracking_uri,
            # the server starts `uvicorn` from PATH
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2):  # noqa: S310
                return server, base, time.perf_counter() - started
        except OSError:
            if server.poll() is not None:
                raise SystemExit("mlflow models serve exited") from None
            time.sleep(0.2)


def _stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


def _bodies(users: list[str], books: list[str], n: int, k: int) -> dict[str, list]:
    """The same seeded requests for every served model: ``n`` + 5 (warm-up)
    of each kind."""
    rng = np.random.default_rng(42)
    by_id, by_history = [], []
    for i in range(n + 5):
        user = "no-such-user" if i % 10 == 9 else str(rng.choice(users))  # noqa: PLR2004
        by_id.append(
            {"dataframe_split": {"columns": ["User-ID", "k"], "data": [[user, k]]}}
        )
        history = rng.choice(books, size=HISTORY_BOOKS, replace=False).tolist()
        by_history.append(
            {
                "dataframe_split": {
                    "columns": ["User-ID", "k", "history"],
                    "data": [["a-new-reader", k, history]],
                }
            }
        )
    return {"by id": by_id, f"by a {HISTORY_BOOKS}-book history": by_history}


def _latencies(bases: dict[str, tuple[str, object]], bodies: list[dict]) -> dict:
    """Milliseconds of each request after the first five (the warm-up), per
    server: each body is sent to every server in turn."""
    latencies: dict[str, list[float]] = {name: [] for name in bases}
    for i, body in enumerate(bodies):
        for name, (base, check) in bases.items():
            seconds, answer = _post(f"{base}/invocations", body)
            check(answer)
            if i >= 5:  # noqa: PLR2004
                latencies[name].append(seconds * 1000)
    return latencies


def _noop_model(signature, folder: Path) -> tuple[str, str]:
    """A no-op model with ``signature`` logged to a scratch store in
    ``folder``: (its URI, the store's)."""
    store = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    mlflow.set_experiment("serving-floor")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="noop",
            python_model=NoOp(),
            signature=signature,
            pip_requirements=[f"mlflow=={mlflow.__version__}", "pandas"],
        )
    return info.model_uri, store


def _percentiles(latencies: list[float]) -> dict[str, float]:
    p50, p99 = np.percentile(latencies, [50, 99])
    return {
        "p50": round(float(p50), 2),
        "p99": round(float(p99), 2),
        "max": round(max(latencies), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=f"sqlite:///{PROJECT / 'mlflow.db'}")
    parser.add_argument("--model", default=f"models:/{MODEL}@champion")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--label", default=None, help="the rows' prefix (default: the champion's kind)"
    )
    args = parser.parse_args()

    loaded = subprocess.run(  # noqa: S603
        [sys.executable, "-c", LOAD, args.tracking_uri, args.model],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    load_seconds, (rank, weights) = float(loaded[-5]), loaded[-4].split()
    artifact_bytes = int(loaded[-3])
    books, users = loaded[-2].split(","), loaded[-1].split(",")
    kind = {"SparseWeights": "item-kNN", "DenseWeights": "EASE"}.get(
        weights, f"factors (rank {rank})"
    )
    mlflow.set_tracking_uri(args.tracking_uri)
    signature = mlflow.models.get_model_info(args.model).signature
    bodies = _bodies(users, books, args.requests, args.k)

    def answered(answer: dict) -> None:
        assert len(answer["predictions"][0]["ISBN"]) == args.k, answer

    measured: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        noop_uri, noop_store = _noop_model(signature, Path(scratch))
        servers, bases, ready = [], {}, {}
        try:
            for model, (uri, store, check) in {
                "no-op model (floor)": (noop_uri, noop_store, lambda _: None),
                "champion": (args.model, args.tracking_uri, answered),
            }.items():
                server, base, ready[model] = _serve(uri, store)
                servers.append(server)
                bases[model] = (base, check)
            for request, sent in bodies.items():
                for model, latencies in _latencies(bases, sent).items():
                    measured[f"{model}, {request}"] = {
                        "serve_ready_seconds": round(ready[model], 2),
                        "latency_ms": _percentiles(latencies),
                    }
        finally:
            for server in servers:
                _stop(server)

    label = args.label or kind
    rows = {}
    for request in bodies:
        floor = measured[f"no-op model (floor), {request}"]["latency_ms"]["p50"]
        for model in ("no-op model (floor)", "champion"):
            row = measured[f"{model}, {request}"]
            rows[f"{label}: {model}, {request}"] = {
                "machine": machine(),
                "model": args.model if model == "champion" else "no-op pyfunc",
                "kind": kind if model == "champion" else "no-op",
                "artifact_mib": round(artifact_bytes / 2**20, 1)
                if model == "champion"
                else None,
                "users": len(users),
                "k": args.k,
                "requests": args.requests,
                "load_seconds_fresh_process": round(load_seconds, 2)
                if model == "champion"
                else None,
                **row,
                "p50_over_floor": round(row["latency_ms"]["p50"] / floor, 2),
            }
    path = PROJECT / "benchmarks" / "results" / "serving.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update(rows)
    table = markdown_table(
        ["row", "artifact (MiB)", "load (fresh process, s)", "server ready (s)",
         "requests", "p50 (ms)", "p99 (ms)", "p50 / floor's"],
        [[name, r.get("artifact_mib"), r.get("load_seconds_fresh_process"),
          r["serve_ready_seconds"], r["requests"], r["latency_ms"]["p50"],
          r["latency_ms"]["p99"], r.get("p50_over_floor")]
         for name, r in results.items()],
    )  # fmt: skip
    as_json, _ = write_results("serving", results, table)
    print(table)  # noqa: T201
    print(f"written to {as_json}")  # noqa: T201


if __name__ == "__main__":
    main()
