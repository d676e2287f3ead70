"""How the code is laid out: a family is one module (its estimator, its typed
section, its row of the table), and the records nodes hand each other are
typed inside the code and JSON only in the catalog."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import typing
from pathlib import Path

import pytest
from parse import parse

from book_recommender import pipelines as pipelines_package
from book_recommender.datasets import RecordsDataset
from book_recommender.models.base import Recommender
from book_recommender.models.families import rows
from book_recommender.models.records import (
    Candidate,
    Champion,
    Reference,
    TestResult,
    TuningResult,
)
from book_recommender.pipelines.data_science import nodes as data_science_nodes

SRC = Path(__file__).resolve().parents[1] / "src" / "book_recommender"


def _estimators(module) -> list[type[Recommender]]:
    """The family estimators ``module`` holds (its own or imported)."""
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, Recommender) and "kind" in vars(cls)
    ]


def _family_modules() -> dict[str, set[str]]:
    """Each family module's file -> the kinds of the estimators it defines."""
    kinds: dict[str, set[str]] = {}
    for row in rows():
        module = importlib.import_module(row.build.__module__)
        kinds[str(Path(module.__file__).resolve())] = {
            cls.kind for cls in _estimators(module) if cls.__module__ == module.__name__
        }
    return kinds


def _string_constants(path: Path) -> set[str]:
    return {
        node.value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def test_a_family_name_is_a_string_only_in_its_own_module():
    """The item and ALS families (and popularity) are named as strings in
    their own module only (its estimator, section and row); everything else
    iterates over the table of families or reads the records."""
    modules = _family_modules()
    every_kind = set().union(*modules.values())
    assert {"implicit", "biased", "explicit", "knn", "rp3", "ease"} <= every_kind
    for path in SRC.rglob("*.py"):
        own = modules.get(str(path.resolve()), set())
        stray = (_string_constants(path) & every_kind) - own
        assert not stray, f"{path.relative_to(SRC)} names the families {stray}"


def test_every_family_module_declares_its_section_and_row():
    table = rows()
    assert [row.order for row in table] == sorted(row.order for row in table)
    keys = [row.key for row in table if row.key is not None]
    assert keys == ["knn", "rp3", "ease"]
    for row in table:
        if row.key is not None or row.group is not None:
            assert row.section is not None and row.section.__module__ == (
                row.build.__module__
            )


def test_no_data_science_node_takes_or_returns_an_untyped_record():
    """Tuning results, candidate metrics and champions are typed records: no
    node of data_science has ``dict[str, Any]`` in its signature."""
    for name, function in inspect.getmembers(data_science_nodes, inspect.isfunction):
        if function.__module__ != data_science_nodes.__name__:
            continue
        for hint in inspect.get_annotations(function).values():
            assert "dict[str, Any]" not in str(hint), name


CANDIDATE = Candidate(
    name="rp3_a0.5_b0_k50_w30",
    kind="rp3",
    role="ranking",
    side_information=True,
    hyperparameters={"alpha": 0.5, "beta": 0.0, "neighbours": 50, "sideWeight": 30.0},
)
PLAIN = Candidate(
    name="rp3_a0.5_b0_k50",
    kind="rp3",
    role="ranking",
    hyperparameters={"alpha": 0.5, "beta": 0.0, "neighbours": 50, "sideWeight": 0.0},
)
RECORDS = {
    "tuning_results": [
        TuningResult(
            CANDIDATE, {"ndcg_at_10": 0.05, "catalog_coverage": 0.1}, True, 1.0, 2.5
        ),
        TuningResult(
            PLAIN, {"ndcg_at_10": 0.04, "catalog_coverage": 0.1}, False, 1.0, 2.5
        ),
    ],  # fmt: skip
    "candidate_metrics": [
        TestResult(
            CANDIDATE, {"ndcg_at_10": 0.06}, {"fit": 3.5, "evaluation": 1.25}, 1.0, 9.0
        )
    ],  # fmt: skip
    "champions": {
        "recommender": Champion(
            role="recommender",
            candidate=CANDIDATE,
            selected_by="validation_ndcg_at_10",
            validation_value=0.05,
            test_metrics={"ndcg_at_10": 0.06},
            baseline="popularity",
            baseline_test_metrics={"ndcg_at_10": 0.02},
            beats_baseline={"ndcg_at_10": True},
            left_out_by_min_catalog_coverage={"popularity": 0.001},
            without_side_information=Reference(PLAIN, 0.04, {"ndcg_at_10": 0.05}),
        ),
        "rating": Champion(
            role="rating",
            candidate=Candidate("bias_baseline", "bias", "rating", baseline=True),
            selected_by="validation_rmse",
            validation_value=1.7,
            test_metrics={"rmse": 1.8},
            baseline="bias_baseline",
            baseline_test_metrics={"rmse": 1.8},
            beats_baseline={"rmse": False},
        ),
    },
}


@pytest.mark.parametrize("record", sorted(RECORDS))
def test_records_round_trip_through_their_json_datasets(tmp_path, record):
    dataset = RecordsDataset(record=record, filepath=str(tmp_path / f"{record}.json"))
    dataset.save(RECORDS[record])
    assert dataset.load() == RECORDS[record]
    # JSON on disk, as a person or another tool reads it.
    text = (tmp_path / f"{record}.json").read_text()
    assert '"candidate": {' in text and "Candidate(" not in text


def test_a_records_dataset_of_an_unknown_record_is_refused(tmp_path):
    with pytest.raises(Exception, match="record must be one of"):
        RecordsDataset(record="tuning", filepath=str(tmp_path / "x.json"))


def test_every_nodes_type_hints_resolve():
    """Kedro types a node's ``params:`` inputs from its resolved type hints and
    silently skips a node whose hints do not resolve (its parameters then
    arrive as plain dicts)."""
    for module in pkgutil.iter_modules(pipelines_package.__path__):
        if not module.ispkg:
            continue
        pipeline = importlib.import_module(
            f"{pipelines_package.__name__}.{module.name}"
        ).create_pipeline()
        for node in pipeline.nodes:
            assert typing.get_type_hints(node.func), (module.name, node.name)


def test_no_module_over_500_lines_and_no_function_over_60():
    """A module is a room a newcomer can name; a ``create_pipeline`` lists its
    nodes and stays under 60 lines too."""
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        assert len(text.splitlines()) <= 500, path.relative_to(SRC)  # noqa: PLR2004
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                assert lines <= 60, (path.relative_to(SRC), node.name, lines)  # noqa: PLR2004


def _registered_pipelines() -> dict:
    out = {}
    for module in pkgutil.iter_modules(pipelines_package.__path__):
        if module.ispkg:
            out[module.name] = importlib.import_module(
                f"{pipelines_package.__name__}.{module.name}"
            ).create_pipeline()
    return out


def test_every_pipeline_is_a_namespace_of_its_own():
    """kedro-viz draws each pipeline as one block that expands; a node is run
    alone as ``<pipeline>.<node>``."""
    registered = _registered_pipelines()
    assert set(registered) == {
        "data_processing",
        "data_science",
        "scoring",
        "reporting",
    }
    for name, pipeline in registered.items():
        for node in pipeline.nodes:
            assert node.namespace == name, node.name
            assert node.name == f"{name}.{node.func.__name__}"
            assert name in node.tags


def _layer_of(catalog: dict, name: str) -> tuple[str | None, str]:
    """A dataset's kedro-viz layer and its file path, from its entry or the
    factory it matches."""
    entry = catalog.get(name)
    if entry is None:
        matches = [
            pattern
            for pattern in catalog
            if "{" in pattern and parse(pattern, name) is not None
        ]
        assert matches, f"{name} has no catalog entry"
        entry = catalog[max(matches, key=lambda p: len(p.split("{")[0]))]
    layer = (entry.get("metadata") or {}).get("kedro-viz", {}).get("layer")
    inner = entry.get("dataset") if isinstance(entry.get("dataset"), dict) else entry
    return layer, str(inner.get("filepath") or inner.get("path") or "")


LAYERS = ("raw", "intermediate", "model_input", "models", "model_output", "reporting")


def test_every_dataset_has_the_layer_of_its_folder():
    """Every dataset a pipeline reads or writes has a kedro-viz layer, and a
    file's layer is its folder's (data/08_reporting -> reporting)."""
    from kedro.config import OmegaConfigLoader  # noqa: PLC0415
    from kedro.framework.project import settings  # noqa: PLC0415

    conf = Path(__file__).resolve().parents[1] / "conf"
    catalog = OmegaConfigLoader(str(conf), **settings.CONFIG_LOADER_ARGS)["catalog"]
    layers = set()
    for pipeline in _registered_pipelines().values():
        for name in pipeline.datasets():
            if name.startswith("params:") or name == "parameters":
                continue
            layer, path = _layer_of(catalog, name)
            assert layer, f"{name} has no kedro-viz layer"
            folder = re.search(r"/\d\d_([a-z_]+)/", path)
            if folder:
                assert layer == folder.group(1), (name, layer, path)
            layers.add(layer)
    # kedro-viz draws layers only when no edge goes back to an earlier one
    # (it drops them all otherwise): a file read later sits in an earlier folder.
    order = list(LAYERS)
    for pipeline in _registered_pipelines().values():
        for node in pipeline.nodes:
            for read in node.inputs:
                if read.startswith("params:"):
                    continue
                for written in node.outputs:
                    before = order.index(_layer_of(catalog, read)[0])
                    after = order.index(_layer_of(catalog, written)[0])
                    assert before <= after, (node.name, read, written)
    assert layers == set(LAYERS)


def test_every_stage_takes_keyword_params_and_no_private_spark_class_is_used():
    """Each family's estimator and the evaluator take their Params by keyword
    (``@keyword_only`` ``__init__`` and ``setParams``, as pyspark.ml's own);
    nothing imports a private name from pyspark."""
    from book_recommender.evaluation import ServedEvaluator  # noqa: PLC0415

    stages = [ServedEvaluator]
    for row in rows():
        stages += _estimators(importlib.import_module(row.build.__module__))
    assert len(stages) >= 9  # noqa: PLR2004
    for stage in stages:
        for method in ("__init__", "setParams"):
            function = vars(stage).get(method)
            assert function is not None, (stage.__name__, method)
            assert hasattr(function, "__wrapped__"), (stage.__name__, method)
        with pytest.raises(TypeError, match="keyword"):
            stage(1.0)
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "pyspark"
            ):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, (path.relative_to(SRC), private)
