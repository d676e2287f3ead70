"""The project's one SparkSession: Java check, Delta Lake, quiet logs."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from subprocess import PIPE, STDOUT
from typing import Any

from delta import configure_spark_with_delta_pip
from pyspark import SparkConf, SparkContext
from pyspark.java_gateway import launch_gateway
from pyspark.sql import DataFrame, SparkSession

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


# What the JVM prints at every start that no user can act on: Ivy's resolution
# of the Delta jars (found ..., the report table), log4j's default-profile notes,
# the incubator-module notice of the vector API we ask for, and the loopback and
# native-library notes of local mode (no native BLAS: Spark uses its Java one),
# a block cached twice by two identical plans. Anything else (Spark's WARN and ERROR
# lines) passes. BOOK_RECOMMENDER_JVM_OUTPUT=all shows everything.
JVM_OUTPUT_ENV = "BOOK_RECOMMENDER_JVM_OUTPUT"
_JVM_NOISE = re.compile(
    r"^(?:found \S+ in \S+|confs: \[|\||-{10,}|:: |\d+ artifacts copied"
    r"|\S+ from \S+ in \[default\]|\S+ by \[\S+\] in \[default\]"
    r"|Ivy Default Cache|The jars for the packages|\S+#\S+ added as a dependency"
    r"|WARNING: Using incubator modules"
    r"|Using Spark's default log4j profile|Setting default log level"
    r"|To adjust logging level"
    r"|.*WARN Utils: (?:Your hostname|Set SPARK_LOCAL_IP)"
    r"|.*WARN NativeCodeLoader: Unable to load native-hadoop"
    r"|netlib-(?:blas|lapack): JNI_OnLoad: dlopen"
    r"|.*WARN BlockManager: Block \S+ already exists on this machine)"
)


def jvm_noise(line: str) -> bool:
    """Whether a line the JVM printed is start-up noise (``_JVM_NOISE``)."""
    return bool(_JVM_NOISE.match(line.strip()))


def _forward(stream: Any) -> None:
    for line in iter(stream.readline, ""):
        if not jvm_noise(line):
            sys.stderr.write(line)
    stream.close()


def _launch_quiet_jvm(builder: SparkSession.Builder) -> None:
    """Starts the Spark JVM with its output piped through ``jvm_noise``
    (pyspark's ``launch_gateway(popen_kwargs=...)``, meant for capturing it),
    unless a JVM is already there or all its output is asked for."""
    if (
        SparkContext._gateway is not None
        or "PYSPARK_GATEWAY_PORT" in os.environ
        or os.getenv(JVM_OUTPUT_ENV) == "all"
    ):
        return
    conf = SparkConf(loadDefaults=False)
    for key, value in builder._options.items():  # what getOrCreate would pass
        conf.set(key, value)
    gateway = launch_gateway(
        conf, popen_kwargs={"stdout": PIPE, "stderr": STDOUT, "text": True}
    )
    threading.Thread(
        target=_forward, args=(gateway.proc.stdout,), name="jvm-output", daemon=True
    ).start()
    SparkContext._gateway, SparkContext._jvm = gateway, gateway.jvm


# Spark loggers whose WARN lines say nothing a user can act on: candidates
# evaluated or fitted at once cache frames whose plans are identical (a split's
# relevant items, the bias model of every rating candidate), which Spark shares
# and notes; a long plan's string is truncated.
QUIET_LOGGERS = (
    "org.apache.spark.sql.execution.CacheManager",
    "org.apache.spark.util.SparkStringUtils",
)


def _quiet_loggers(spark: SparkSession) -> None:
    jvm = spark.sparkContext._jvm
    log4j = jvm.org.apache.logging.log4j
    for name in QUIET_LOGGERS:
        log4j.core.config.Configurator.setLevel(name, log4j.Level.ERROR)


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
    builder = configure_spark_with_delta_pip(builder, extra_packages=extra)
    _launch_quiet_jvm(builder)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(log_level)
    _quiet_loggers(spark)
    if checkpoint_dir:
        # ALS needs a checkpoint directory, or repeated fits overflow the stack.
        spark.sparkContext.setCheckpointDir(checkpoint_dir)
    logger.info(
        "Spark %s session on %s (Delta Lake configured)",
        spark.version,
        spark.sparkContext.master,
    )
    return spark


def cached(df: DataFrame) -> DataFrame:
    """``df`` cached, unless its plan already is: Spark matches a cached plan
    for any frame that reads the same, so a file loaded again by the catalog
    (the raw CSVs, read by validation and by the raw-table summary) is parsed
    once, and asking twice would log a warning."""
    level = df.storageLevel
    return df if level.useMemory or level.useDisk else df.cache()
