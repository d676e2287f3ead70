"""The Java check that runs before Spark starts, and the quiet JVM console."""

from __future__ import annotations

import pytest

from book_recommender import spark_session
from book_recommender.spark_session import (
    JavaNotFoundError,
    check_java,
    jvm_noise,
    parse_java_major,
)


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("no version here", None),
    ],
)
def test_parse_java_major(output, major):
    assert parse_java_major(output) == major


def test_missing_java_names_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(
        JavaNotFoundError, match=r"no java was found on JAVA_HOME.*no-jdk"
    ):
        check_java()


def test_old_java_is_refused_with_its_version(monkeypatch, tmp_path):
    bin_dir = tmp_path / "jdk8" / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "java"
    fake.write_text("#!/bin/sh\necho 'java version \"1.8.0_392\"' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk8"))
    with pytest.raises(JavaNotFoundError, match=r"Java 17 or newer.*1\.8\.0_392"):
        check_java()


def test_installed_java_is_accepted(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    if spark_session.java_executable() is None:
        pytest.skip("no java on PATH")
    assert check_java() >= 17


def test_session_has_delta_and_a_checkpoint_dir(spark, tmp_path):
    assert spark.sparkContext.getCheckpointDir()
    path = str(tmp_path / "delta")
    spark.range(3).write.format("delta").save(path)
    assert spark.read.format("delta").load(path).count() == 3


def test_the_jvm_start_up_noise_is_dropped_and_spark_warnings_pass():
    noise = [
        ":: loading settings :: url = jar:file:/x/ivy-2.5.3.jar!/ivysettings.xml",
        "Ivy Default Cache set to: /root/.ivy2.5.2/cache",
        "io.delta#delta-spark_4.2_2.13 added as a dependency",
        "\tconfs: [default]",
        "\tfound io.delta#delta-storage;4.4.0 in central",
        "\t|      default     |   37  |   0   |   0   |   4   ||   33  |   0   |",
        "\t---------------------------------------------------------------------",
        "\torg.slf4j#slf4j-api;2.0.13 from central in [default]",
        "\torg.slf4j#slf4j-api;1.7.36 by [org.slf4j#slf4j-api;2.0.13] in [default]",
        "\t0 artifacts copied, 33 already retrieved (0kB/7ms)",
        "WARNING: Using incubator modules: jdk.incubator.vector",
        "Using Spark's default log4j profile: org/apache/spark/log4j2-defaults.properties",
        "26/12/03 15:00:35 WARN Utils: Your hostname, vm, resolves to a loopback address",
        "26/12/03 15:00:36 WARN NativeCodeLoader: Unable to load native-hadoop library",
    ]
    kept = [
        "26/12/03 15:01:02 WARN TaskSetManager: Lost task 0.0 in stage 3.0",
        "26/12/03 15:01:02 ERROR Executor: Exception in task 0.0 in stage 3.0",
        "java.lang.OutOfMemoryError: Java heap space",
        "\tat org.apache.spark.rdd.RDD.iterator(RDD.scala:1)",
    ]
    assert [line for line in noise if not jvm_noise(line + "\n")] == []
    assert [line for line in kept if jvm_noise(line + "\n")] == []
