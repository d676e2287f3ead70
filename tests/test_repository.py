"""What git tracks: the demo raw files, never run artefacts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTEFACT = re.compile(
    r"(^|/)(mlruns|mlflow\.db|spark-warehouse|metastore_db|\.venv)(/|$)"
)


def _tracked() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def test_no_run_artefacts_are_tracked():
    tracked = _tracked()
    assert not [f for f in tracked if ARTEFACT.search(f)]
    data = [f for f in tracked if f.startswith("data/") and not f.endswith(".gitkeep")]
    assert sorted(data) == [
        "data/01_raw/Books.csv",
        "data/01_raw/Ratings.csv",
        "data/01_raw/Users.csv",
    ]
