"""The Java check that runs before Spark starts."""

from __future__ import annotations

import pytest

from book_recommender import spark_session
from book_recommender.spark_session import (
    JavaNotFoundError,
    check_java,
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
