"""How a pipeline wires its nodes: each node named after its function, its
inputs its arguments by keyword, each argument the dataset of the same name
(``params:<name>`` for a parameters section), unless the node says otherwise.
A pipeline is then its nodes in flow order, namespaced for kedro-viz."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from kedro.pipeline import Node, Pipeline

from book_recommender.params import SECTIONS

# Arguments read from the parameters rather than from a dataset.
PARAMETER_ARGUMENTS = frozenset({*SECTIONS, "columns"})


def node(func: Callable, outputs: str | list[str] | None, **inputs: str) -> Node:
    """A node of ``func`` named after it; ``inputs`` maps the arguments whose
    dataset is not their namesake (an unknown argument is refused)."""
    arguments = list(inspect.signature(func).parameters)
    unknown = set(inputs) - set(arguments)
    if unknown:
        raise TypeError(
            f"{func.__name__} has no argument(s) {sorted(unknown)}; "
            f"its arguments are {arguments}"
        )
    wired = {
        argument: inputs.get(
            argument,
            f"params:{argument}" if argument in PARAMETER_ARGUMENTS else argument,
        )
        for argument in arguments
    }
    return Node(func, wired, outputs, name=func.__name__)


def namespaced(name: str, nodes: list[Node]) -> Pipeline:
    """``nodes`` as the pipeline ``name``: its nodes in the namespace ``name``
    (kedro-viz draws it as one block that expands; ``kedro run --nodes`` takes
    ``name.<node>``) and tagged ``name``; datasets keep their catalog names."""
    return Pipeline(
        nodes, namespace=name, prefix_datasets_with_namespace=False, tags=name
    )
