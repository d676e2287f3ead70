"""The screenshots in docs/images of what a user opens after a run: MLflow's runs
table (the latest run expanded, with the columns the README tells a new user to
add) and kedro-viz's graph of the four pipelines, collapsed. Taken in headless
Chromium, driven by Playwright, from pages served on 127.0.0.1.

After `make demo` (or any run of the project), from the project folder::

    make screenshots        # or: .venv/bin/python docs/screenshots.py

Needs Chromium (Debian: ``apt-get install chromium``; ``--chromium`` names
another binary) and Playwright (``pip install -e ".[docs]"``, which
``make screenshots`` does; Playwright's own browser download is not used).
Writes ``docs/images/mlflow_runs.png`` and ``docs/images/kedro_viz.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from mlflow.tracking import MlflowClient
from playwright.sync_api import Page, sync_playwright

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
IMAGES = PROJECT / "docs" / "images"
# The columns the README tells a new user to add (and those it can do without).
METRIC_COLUMNS = ["test.ndcg_at_10", "test.rmse", "test.catalog_coverage"]
HIDDEN_COLUMNS = ["Dataset", "Source"]
VIEWPORT = {"width": 1600, "height": 1000}
VIZ_STATE = {
    "showFeatureHints": False,
    "visible": {"miniMap": False, "sidebar": True, "graph": True, "code": False},
}
# Chromium with nothing of its own going to the network (closed here).
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _serving(command: list[str], url: str, cwd: Path) -> Iterator[str]:
    """``command`` running (its own process group, stopped after) until ``url``
    answers."""
    process = subprocess.Popen(  # noqa: S603
        command,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2):  # noqa: S310
                    break
            except OSError as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{command[0]} did not start: {error}") from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _runs_table(page: Page, url: str, target: Path) -> None:
    """The runs table with the metric columns, the latest run expanded."""
    page.goto(url)
    page.wait_for_selector("text=matching runs")
    page.wait_for_timeout(2000)
    assistant = page.get_by_role("button", name="Close")  # MLflow's chat panel
    if assistant.count():
        assistant.first.click()
    page.get_by_role("button", name="Columns", exact=True).click()
    tree = page.get_by_test_id("column-selector-tree")
    for name in HIDDEN_COLUMNS:
        tree.get_by_text(name, exact=True).click()
    search = page.get_by_placeholder("Search columns")
    for metric in METRIC_COLUMNS:
        search.fill(metric)
        title = re.compile(f"^{re.escape(metric)}$")
        tree.locator(".du-bois-light-tree-title").filter(has_text=title).click()
    page.keyboard.press("Escape")
    first = page.locator(".ag-row").first  # the newest run: expand its nested runs
    first.locator("button").first.click()
    page.wait_for_timeout(1500)
    page.screenshot(path=target)


def _graph(page: Page, url: str, target: Path) -> None:
    """kedro-viz's graph as it opens (the pipelines collapsed), without its tour
    of features or its minimap (kedro-viz reads both from local storage)."""
    page.add_init_script(f"localStorage.setItem('KedroViz', '{json.dumps(VIZ_STATE)}')")
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(4000)  # the graph's layout and zoom settle
    page.mouse.move(0, 0)
    page.screenshot(path=target)


def _latest_experiment(tracking_uri: str) -> str:
    client = MlflowClient(tracking_uri=tracking_uri)
    runs = [
        run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id], max_results=1)
    ]
    if not runs:
        raise SystemExit("No MLflow run in mlflow.db: run `make demo` first.")
    return max(runs, key=lambda run: run.info.start_time).info.experiment_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    chromium = parser.parse_args().chromium
    database = PROJECT / "mlflow.db"
    if not database.exists():
        raise SystemExit(f"{database} not found: run `make demo` first.")
    if (PROJECT / "build").exists():
        raise SystemExit("build/ exists (kedro viz build writes there): move it first.")
    IMAGES.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{database}"
    experiment = _latest_experiment(tracking_uri)
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_FLAGS
        )
        page = browser.new_page(viewport=VIEWPORT)
        port = _free_port()
        mlflow_server = [
            str(BIN / "mlflow"), "server", "--backend-store-uri", tracking_uri,
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ]  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        with _serving(mlflow_server, f"{base}/health", PROJECT):
            url = (
                f"{base}/#/experiments/{experiment}/runs?workflowType=machine_learning"
            )
            _runs_table(page, url, IMAGES / "mlflow_runs.png")
            print(f"docs/images/mlflow_runs.png: {url}")  # noqa: T201
        subprocess.run(  # noqa: S603
            [str(BIN / "kedro"), "viz", "build"],
            cwd=PROJECT,
            env=os.environ | {"KEDRO_DISABLE_TELEMETRY": "1"},
            check=True,
            capture_output=True,
        )
        build = Path(folder) / "build"
        shutil.move(PROJECT / "build", build)
        port = _free_port()
        static = [sys.executable, "-m", "http.server", str(port), "-b", "127.0.0.1"]
        with _serving(static, f"http://127.0.0.1:{port}/", build) as viz:
            _graph(page, viz, IMAGES / "kedro_viz.png")
            print(f"docs/images/kedro_viz.png: {viz}")  # noqa: T201
        browser.close()


if __name__ == "__main__":
    main()
