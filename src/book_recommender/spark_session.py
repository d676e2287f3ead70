"""The project's one SparkSession: Java check, Delta Lake, quiet logs."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from delta import configure_spark_with_delta_pip
from pyspark.sql import SparkSession

from book_recommender.errors import ProjectError

logger = logging.getLogger(__name__)

MIN_JAVA = 17
# Not Spark settings: read here and applied after the session starts.
LOG_LEVEL_KEY = "book_recommender.log_level"
CHECKPOINT_DIR_KEY = "spark.checkpoint.dir"


class JavaNotFoundError(ProjectError, RuntimeError):
    """Java is missing or too old for Spark."""


def java_executable() -> str | None:
    """The java Spark will start: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    java_home = os.getenv("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        return str(candidate) if candidate.exists() else None
    return shutil.which("java")


def parse_java_major(version_output: str) -> int | None:
    """Major version from ``java -version`` output (``1.8.0_x`` is 8)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def check_java() -> int:
    """Fails with an actionable message unless Java ``MIN_JAVA``+ is available."""
    java = java_executable()
    where = "JAVA_HOME" if os.getenv("JAVA_HOME") else "PATH"
    if java is None:
        raise JavaNotFoundError(
            f"Spark needs Java {MIN_JAVA} or newer, but no java was found on {where}"
            f" (JAVA_HOME={os.getenv('JAVA_HOME', '<unset>')}). Install a JDK"
            f" {MIN_JAVA}+ (e.g. `apt-get install openjdk-{MIN_JAVA}-jdk-headless`) and"
            " make `java` available on PATH or set JAVA_HOME."
        )
    result = subprocess.run(  # noqa: S603
        [java, "-version"], capture_output=True, text=True, check=False
    )
    output = result.stderr + result.stdout
    major = parse_java_major(output)
    if major is None or major < MIN_JAVA:
        found = (
            output.strip().splitlines()[0] if output.strip() else "no version output"
        )
        raise JavaNotFoundError(
            f"Spark needs Java {MIN_JAVA} or newer; {java} (from {where}) reports:"
            f" {found!r}. Install a JDK {MIN_JAVA}+ and point JAVA_HOME at it."
        )
    return major


def build_spark_session(settings: Mapping[str, Any]) -> SparkSession:
    """Creates (or returns) the SparkSession described by ``spark.yml`` settings.

    Delta Lake is configured through ``configure_spark_with_delta_pip``, so its jars
    are resolved from Maven Central on first use and cached in the Ivy cache.
    """
    check_java()
    settings = {k: str(v) for k, v in settings.items()}
    log_level = settings.pop(LOG_LEVEL_KEY, "WARN")
    checkpoint_dir = settings.get(CHECKPOINT_DIR_KEY)
    python = settings.get("spark.pyspark.python") or os.getenv("PYSPARK_PYTHON")
    # Python workers (the top-k ranking) run the interpreter the project is
    # installed in, not whatever python3 comes first on PATH. PySpark reads the
    # variable, not the setting, for the workers it starts.
    os.environ["PYSPARK_PYTHON"] = python or sys.executable
    builder = SparkSession.builder
    for key, value in settings.items():
        builder = builder.config(key, value)
    extra = [p for p in settings.get("spark.jars.packages", "").split(",") if p]
    spark = configure_spark_with_delta_pip(builder, extra_packages=extra).getOrCreate()
    spark.sparkContext.setLogLevel(log_level)
    if checkpoint_dir:
        # ALS needs a checkpoint directory, or repeated fits overflow the stack.
        spark.sparkContext.setCheckpointDir(checkpoint_dir)
    logger.info(
        "Spark %s session on %s (Delta Lake configured)",
        spark.version,
        spark.sparkContext.master,
    )
    return spark
