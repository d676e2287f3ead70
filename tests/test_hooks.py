"""NodeTimingHooks: the profile a benchmark reads, written only when asked for."""

from __future__ import annotations

import json

from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner

from book_recommender.hooks import TIMINGS_ENV, NodeTimingHooks


def _double(x):
    return 2 * x


def _run_with(hooks, monkeypatch, target):
    from kedro.framework.hooks import _create_hook_manager  # noqa: PLC0415

    if target is None:
        monkeypatch.delenv(TIMINGS_ENV, raising=False)
    else:
        monkeypatch.setenv(TIMINGS_ENV, str(target))
    manager = _create_hook_manager()
    manager.register(hooks)
    pipeline = Pipeline(
        [
            Node(_double, "a", "b", name="first", tags="data_processing"),
            Node(_double, "b", "c", name="second", tags="data_science"),
        ]
    )
    catalog = DataCatalog({"a": MemoryDataset(1), "b": MemoryDataset()})
    manager.hook.before_pipeline_run(run_params={}, pipeline=pipeline, catalog=catalog)
    SequentialRunner().run(pipeline, catalog, hook_manager=manager)


def test_node_events_are_written_in_order_with_tags(tmp_path, monkeypatch):
    target = tmp_path / "timings.jsonl"
    _run_with(NodeTimingHooks(), monkeypatch, target)
    events = [json.loads(line) for line in target.read_text().splitlines()]
    assert events[0]["event"] == "run_started"
    seen = [(e["node"], e["event"], e.get("dataset")) for e in events[1:]]
    assert seen == [
        ("first", "ran", None),
        ("first", "saved", "b"),
        ("second", "ran", None),
        ("second", "saved", "c"),
    ]
    assert events[1]["tags"] == ["data_processing"]
    times = [e["at"] for e in events]
    assert times == sorted(times)


def test_nothing_is_written_unless_asked(tmp_path, monkeypatch):
    _run_with(NodeTimingHooks(), monkeypatch, None)
    assert list(tmp_path.iterdir()) == []
