"""`kedro jupyter lab` and `notebook` work after the README's set-up (the
``notebook`` extra, which `make test` installs through ``test``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import copy_project

KERNEL = "kedro_book_recommender"


def _kedro(project: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        [str(Path(sys.executable).with_name("kedro")), *args],
        cwd=project,
        check=False,
        # The kernel Kedro writes goes to a scratch folder, not the user's.
        env=os.environ | {"JUPYTER_DATA_DIR": str(tmp_path / "jupyter")},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_kedro_jupyter_lab_starts_with_the_project_kernel(tmp_path):
    (tmp_path / "project").mkdir()
    project = copy_project(tmp_path / "project")
    # `--version` goes through what `kedro jupyter lab` does before the server
    # starts (the module check, the project's kernel) and ends at once.
    # (`kedro jupyter notebook` goes the same way to the notebook app, which the
    # extra installs; one app is checked, for CI time.)
    started = _kedro(project, tmp_path, "jupyter", "lab", "--version")
    output = started.stdout + started.stderr
    assert started.returncode == 0, output[-2000:]
    assert started.stdout.strip().splitlines()[-1][0].isdigit(), output[-2000:]
    spec = json.loads(
        (tmp_path / "jupyter" / "kernels" / KERNEL / "kernel.json").read_text()
    )
    assert "kedro.ipython" in spec["argv"]
