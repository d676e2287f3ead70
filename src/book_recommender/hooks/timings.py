"""Each node's wall time and peak memory, written as JSON lines where
``$BOOK_RECOMMENDER_NODE_TIMINGS`` says (the benchmarks read them)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Node

TIMINGS_ENV = "BOOK_RECOMMENDER_NODE_TIMINGS"


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
