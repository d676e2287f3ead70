"""The table of families: what tuning, selection, tracking and reporting
iterate over.

A family module declares ``FAMILIES``, a ``FamilyRow``: where its settings
live (a section of ``item_based``, or a group of its own such as ``als``), its
typed section, and how its estimators and grids are built from it. The table
is every module of this package that declares one, so a new family is a new
module (its estimator, its section, its row) and its YAML, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import create_model
from pyspark.ml.param import Param
from pyspark.ml.tuning import ParamGridBuilder

from book_recommender.axes import Section
from book_recommender.models.base import Recommender
from book_recommender.models.records import Candidate


@dataclass(frozen=True)
class Family:
    """A family's estimator (its fixed knobs set) and the grid tuning varies."""

    label: str
    estimator: Recommender
    grid: list[dict[Param, Any]]

    @property
    def rating(self) -> bool:
        """Tuned and picked on the rating metric."""
        return self.estimator.role == "rating"

    @property
    def baseline(self) -> bool:
        return self.estimator.baseline

    def points(self) -> list[Recommender]:
        """The estimator at each grid point."""
        return [self.estimator.copy(point) for point in self.grid]

    def candidates(self) -> list[Candidate]:
        return [point.candidate() for point in self.points()]

    def at(self, **values: Any) -> Recommender:
        """The estimator at ``values`` of its ``Param``s (by name), on the grid
        or off it (benchmarks, notebooks)."""
        estimator = self.estimator
        return estimator.copy({estimator.getParam(n): v for n, v in values.items()})


def grid(estimator: Recommender, **axes: list[Any]) -> list[dict[Param, Any]]:
    """``ParamGridBuilder``'s grid over ``estimator``'s ``Param``s by name."""
    builder = ParamGridBuilder()
    for name, values in axes.items():
        builder.addGrid(estimator.getParam(name), list(values))
    return builder.build() or [{}]


def with_and_without_side(
    estimator: Recommender, side_axis: str, **axes: list[Any]
) -> list[Family]:
    """The family without side information (its ``side_axis``, one of
    ``axes``, at 0) and the one with it (above 0), each only if its values are
    on the grid: two families, so that what the side information adds is
    measured."""
    values = axes[side_axis]
    kind = estimator.kind
    parts = (
        (kind, [v for v in values if not v]),
        (f"{kind}_side", [v for v in values if v]),
    )
    return [
        Family(label, estimator, grid(estimator, **(axes | {side_axis: part})))
        for label, part in parts
        if part
    ]


def _none(*_: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class FamilyRow:
    """One family module's entry in the table.

    ``section`` is its typed settings: under ``item_based.<key>`` when ``key``
    is set (its ``enabled`` switches it; ``build`` gets the section and the
    whole ``item_based``; ``side_axis`` names its side-information axis, if
    any), else the group ``group`` of its own (``build`` gets that group, and
    ``group_switches`` says which of its switches are on), or none (a baseline
    always on). ``order`` places its families among the others (baselines
    first within a role, whatever their order)."""

    order: int
    build: Callable[..., list[Family]]
    key: str | None = None
    side_axis: str | None = None
    group: str | None = None
    section: type[Section] | None = None
    group_switches: Callable[[Any], dict[str, bool]] = field(default=_none)

    def families(self, groups: dict[str, Any]) -> list[Family]:
        if self.key is not None:
            item_based = groups["item_based"]
            section = getattr(item_based, self.key)
            return self.build(section, item_based) if section.enabled else []
        if self.group is not None:
            return self.build(groups[self.group])
        return self.build()

    def switches(self, groups: dict[str, Any]) -> dict[str, bool]:
        """``"<where>.enabled"`` -> on, for each of its switches: at least one
        family of the table must be on."""
        if self.key is not None:
            section = getattr(groups["item_based"], self.key)
            return {f"item_based.{self.key}.enabled": section.enabled}
        if self.group is not None:
            return self.group_switches(groups[self.group])
        return {}

    def side_axes(self, item_based: Any) -> dict[str, list[float]]:
        """``"<key>.<axis>"`` -> values of its side-information axis, if any."""
        if self.key is None or self.side_axis is None:
            return {}
        section = getattr(item_based, self.key)
        return {f"{self.key}.{self.side_axis}": getattr(section, self.side_axis)}


@cache
def rows() -> tuple[FamilyRow, ...]:
    """Every family module's row, in ``order``."""
    package = importlib.import_module("book_recommender.models")
    found = []
    for module in pkgutil.iter_modules(package.__path__):
        declared = getattr(
            importlib.import_module(f"{package.__name__}.{module.name}"),
            "FAMILIES",
            None,
        )
        if isinstance(declared, FamilyRow):
            found.append(declared)
    return tuple(sorted(found, key=lambda row: row.order))


def item_based_params() -> type[Section]:
    """The ``item_based`` section: its shared keys and one section per item
    family module (``FamilyRow.key``)."""
    return create_model(
        "ItemBasedParams",
        __base__=Section,
        __module__=__name__,
        seed=(int, ...),  # the sample of a prolific reader's books
        side_information=(list[str], ...),  # items' columns; [] none
        **{row.key: (row.section, ...) for row in rows() if row.key is not None},
    )


def families(als: Any, item_based: Any) -> list[Family]:
    """The enabled families in the order they are tuned and picked among: the
    ranking families, popularity first, then the rating families, the bias
    baseline first. A baseline comes before its families, so a family that
    only ties with it is not chosen over it."""
    groups = {"als": als, "item_based": item_based}
    out = [family for row in rows() for family in row.families(groups)]
    return sorted(out, key=lambda f: (f.rating, not f.baseline))


def named(label: str, als: Any, item_based: Any) -> Family:
    """The enabled family ``label`` (``Family.label``)."""
    found = {f.label: f for f in families(als, item_based)}
    if label not in found:
        raise ValueError(
            f"No enabled family {label!r}: the enabled ones are {sorted(found)}."
        )
    return found[label]
