"""`kedro viz build` renders the project: every node of every pipeline is in its API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kedro.framework.project import pipelines
from kedro.framework.startup import bootstrap_project

from tests.conftest import copy_project

KEDRO = Path(sys.executable).with_name("kedro")


@pytest.mark.e2e
def test_viz_build_lists_every_node_of_every_pipeline(tmp_path):
    project = copy_project(tmp_path)
    result = subprocess.run(  # noqa: S603
        [str(KEDRO), "viz", "build"],
        cwd=project,
        env=os.environ | {"KEDRO_DISABLE_TELEMETRY": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (project / "build/index.html").exists()

    bootstrap_project(project)
    registered = {name: p for name, p in pipelines.items() if name != "__default__"}
    assert {"data_processing", "data_science", "scoring", "reporting"} <= set(
        registered
    )
    api = project / "build/api"
    everything = json.loads((api / "main").read_text())
    assert {p["id"] for p in everything["pipelines"]} == {*registered, "__default__"}
    # The layer toggle: every catalog entry has a layer, drawn in flow order.
    assert everything["layers"] == [
        "raw",
        "intermediate",
        "model_input",
        "models",
        "model_output",
        "reporting",
    ]
    layered = {
        n["name"]: n.get("layer") for n in everything["nodes"] if n["type"] == "data"
    }
    assert not [name for name, layer in layered.items() if not layer]
    # A file's layer is its folder's: what kedro-viz shows of each file (its
    # node's panel) under 08_reporting is in the reporting layer, and so on.
    folders = {
        "01_raw": "raw", "05_model_input": "model_input", "06_models": "models",
        "07_model_output": "model_output", "08_reporting": "reporting",
    }  # fmt: skip
    shown = 0
    for node in everything["nodes"]:
        if node["type"] != "data":
            continue
        path = json.loads((api / "nodes" / node["id"]).read_text()).get("filepath")
        folder = next((f for f in folders if path and f"/{f}/" in path), None)
        if folder:
            assert node["layer"] == folders[folder], (node["name"], path)
            shown += 1
    assert shown >= 20  # the demo's files
    assert layered["raw_ratings"] == "raw" and layered["champions"] == "models"
    assert layered["validated_ratings"] == "intermediate"  # from a factory
    assert layered["model_comparison_plot"] == "reporting"  # from the factory
    # Each pipeline a namespace: four blocks that expand into their nodes.
    blocks = {n["id"] for n in everything["nodes"] if n["type"] == "modularPipeline"}
    assert blocks == {"data_processing", "data_science", "scoring", "reporting"}
    tree = everything["modular_pipelines"]
    root = tree["__root__"]["children"]
    assert {c["id"] for c in root if c["type"] == "modularPipeline"} == blocks
    assert not [c for c in root if c["type"] == "task"]  # every node in a block
    for name in blocks:
        tasks = {c["id"] for c in tree[name]["children"] if c["type"] == "task"}
        assert len(tasks) == len(registered[name].nodes), name
    for name, pipeline in registered.items():
        drawn = json.loads((api / "pipelines" / name).read_text())
        tasks = {n["full_name"] for n in drawn["nodes"] if n["type"] == "task"}
        assert tasks == {node.name for node in pipeline.nodes}, name
        for node in pipeline.nodes:  # inputs and outputs drawn as data nodes
            data = {n["name"] for n in drawn["nodes"] if n["type"] != "task"}
            wanted = {
                d for d in node.inputs + node.outputs if not d.startswith("params:")
            }
            assert wanted <= data, node.name
