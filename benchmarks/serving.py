"""How fast the registered recommender answers: load time and request latency.

Run after a training run (`make demo`, or `kedro run` in the project or with
``--tracking-uri`` pointing at another store): it loads
``models:/<name>@champion`` in a fresh Python process, then starts
``mlflow models serve --env-manager local`` on a free 127.0.0.1 port and sends
single-user ``dataframe_split`` requests (known users, and every tenth an unknown
id), one at a time. Prints and writes (``benchmarks/results/serving.*``)
the load times and the latency percentiles.

    .venv/bin/python benchmarks/serving.py [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from common import PROJECT, machine, markdown_table, write_results

MODEL = "aisample-recommendation-recommender"
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
print(",".join(bundle.users["user"].head(1000)))
"""


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=f"sqlite:///{PROJECT / 'mlflow.db'}")
    parser.add_argument("--model", default=f"models:/{MODEL}@champion")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--label", default=None, help="the row's name (default: the champion's kind)"
    )
    args = parser.parse_args()

    loaded = subprocess.run(  # noqa: S603
        [sys.executable, "-c", LOAD, args.tracking_uri, args.model],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    load_seconds, users = float(loaded[-4]), loaded[-1].split(",")
    rank, weights = loaded[-3].split()
    artifact_bytes = int(loaded[-2])
    kind = {"SparseWeights": "item-kNN", "DenseWeights": "EASE"}.get(
        weights, f"factors (rank {rank})"
    )

    port = _free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    started = time.perf_counter()
    server = subprocess.Popen(  # noqa: S603
        [
            str(mlflow_cli),
            "models",
            "serve",
            "-m",
            args.model,
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
            "MLFLOW_TRACKING_URI": args.tracking_uri,
            # the server starts `uvicorn` from PATH
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2):  # noqa: S310
                    break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit("mlflow models serve exited") from None
                time.sleep(0.2)
        serve_seconds = time.perf_counter() - started
        rng = np.random.default_rng(42)
        latencies = []
        for i in range(args.requests + 5):
            user = "no-such-user" if i % 10 == 9 else str(rng.choice(users))  # noqa: PLR2004
            body = {
                "dataframe_split": {
                    "columns": ["User-ID", "k"],
                    "data": [[user, args.k]],
                }
            }
            seconds, answer = _post(f"{base}/invocations", body)
            assert len(answer["predictions"][0]["ISBN"]) == args.k, answer
            if i >= 5:  # the first requests warm the server up  # noqa: PLR2004
                latencies.append(seconds * 1000)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    p50, p99 = np.percentile(latencies, [50, 99])
    result = {
        "machine": machine(),
        "model": args.model,
        "kind": kind,
        "artifact_mib": round(artifact_bytes / 2**20, 1),
        "users": len(users),
        "k": args.k,
        "requests": len(latencies),
        "load_seconds_fresh_process": round(load_seconds, 2),
        "serve_ready_seconds": round(serve_seconds, 2),
        "latency_ms": {
            "p50": round(float(p50), 1),
            "p99": round(float(p99), 1),
            "max": round(max(latencies), 1),
        },
    }
    path = PROJECT / "benchmarks" / "results" / "serving.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if "model" in results:  # the former single-row layout
        results = {"factors": results}
    results[args.label or kind] = result
    table = markdown_table(
        ["row", "model", "artifact (MiB)", "load (fresh process, s)", "server ready (s)",
         "requests", "p50 (ms)", "p99 (ms)"],
        [[label, r["model"], r.get("artifact_mib"), r["load_seconds_fresh_process"],
          r["serve_ready_seconds"], r["requests"], r["latency_ms"]["p50"],
          r["latency_ms"]["p99"]] for label, r in results.items()],
    )  # fmt: skip
    as_json, _ = write_results("serving", results, table)
    print(table)  # noqa: T201
    print(f"written to {as_json}")  # noqa: T201


if __name__ == "__main__":
    main()
