"""Shared by the benchmark scripts: where results go, what machine made them."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import yaml

PROJECT = Path(__file__).resolve().parents[1]
# Committed, so the next measurement can be compared with this one.
RESULTS = PROJECT / "benchmarks" / "results"


def machine() -> dict[str, Any]:
    """Date and machine of a measurement, for the README's tables."""
    java = subprocess.run(  # noqa: S603
        ["java", "-version"],
        capture_output=True,
        text=True,
        check=False,  # noqa: S607
    ).stderr.splitlines()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "java": java[0] if java else "unknown",
    }


def bench_spark(
    driver_memory: str | None = None,
    shuffle_partitions: int = 8,
    checkpoint_dir: Path | None = None,
):
    """A local[2] SparkSession for a benchmark, with the project's JVM options
    (conf/base/spark.yml: ALS's thread stack, the vector module), UI off, and
    ``driver_memory`` (None: the project's)."""
    from book_recommender.spark_session import build_spark_session  # noqa: PLC0415

    project = yaml.safe_load((PROJECT / "conf" / "base" / "spark.yml").read_text())
    settings = {
        "spark.master": "local[2]",
        "spark.driver.memory": driver_memory or project["spark.driver.memory"],
        "spark.driver.extraJavaOptions": project["spark.driver.extraJavaOptions"],
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
    }
    if checkpoint_dir is not None:
        settings["spark.checkpoint.dir"] = str(checkpoint_dir)
    return build_spark_session(settings)


def reference_fit_seconds(pairs) -> float:
    """The unit benchmarks state times in (U): one plain Spark
    ``pyspark.ml.recommendation.ALS`` fit, implicit, rank 32, 15 iterations,
    regParam 1, alpha 1, one block per core, on ``pairs`` (USER_IDX, ITEM_IDX;
    binary strength) in the benchmark's session. Absolute seconds do not carry
    from one machine to the next; a multiple of this fit, taken in the same
    run, does."""
    from pyspark.ml.recommendation import ALS  # noqa: PLC0415
    from pyspark.sql import functions as F  # noqa: PLC0415

    from book_recommender.columns import ITEM_IDX, USER_IDX  # noqa: PLC0415

    frame = (
        pairs.select(USER_IDX, ITEM_IDX)
        .withColumn("_strength", F.lit(1.0).cast("float"))
        .cache()
    )
    frame.count()
    blocks = frame.sparkSession.sparkContext.defaultParallelism
    started = time.perf_counter()
    model = ALS(
        userCol=USER_IDX, itemCol=ITEM_IDX, ratingCol="_strength", implicitPrefs=True,
        rank=32, maxIter=15, regParam=1.0, alpha=1.0, seed=42,
        numUserBlocks=blocks, numItemBlocks=blocks,
    ).fit(frame)  # fmt: skip
    model.itemFactors.count()
    seconds = time.perf_counter() - started
    frame.unpersist()
    return seconds


def write_results(name: str, results: dict[str, Any], table: str) -> tuple[Path, Path]:
    """``<name>.json`` and ``<name>.md`` under benchmarks/results."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    as_json, as_md = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    as_json.write_text(json.dumps(results, indent=2) + "\n")
    as_md.write_text(table)
    return as_json, as_md


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"  # noqa: PLR2004
        if isinstance(value, int):
            return f"{value:,}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


@dataclass
class MemorySampler:
    """Resident memory of a process and all its children (the JVM), sampled.

    Samples are (Unix time, Python's RSS, its children's RSS) in bytes;
    ``workers`` holds, per sample, the part of the children's RSS that is not
    the JVM (Spark's Python workers).
    """

    pid: int
    interval: float = 0.25
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    workers: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _tree(self) -> tuple[int, int, int]:
        try:
            root = psutil.Process(self.pid)
            python = root.memory_info().rss
            children = [
                (c.memory_info().rss, c.name())
                for c in root.children(recursive=True)
                if c.is_running()
            ]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return 0, 0, 0
        workers = sum(rss for rss, name in children if name != "java")
        return python, sum(rss for rss, _ in children), workers

    def _run(self) -> None:
        while not self._stop.is_set():
            python, children, workers = self._tree()
            self.samples.append((time.time(), python, children))
            self.workers.append(workers)
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_gib(self, start: float = 0.0, end: float = float("inf")) -> float:
        inside = [p + c for t, p, c in self.samples if start <= t <= end]
        return round(max(inside, default=0) / 2**30, 2)
