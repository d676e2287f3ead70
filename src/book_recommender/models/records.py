"""What tuning, testing and selection hand each other: typed records inside the
code, plain JSON only at the catalog boundary (``datasets.RecordsDataset``).

- ``Candidate``: one grid point of one family, as the project names and logs
  it (its hyperparameters are its estimator's Spark ``Param``s);
- ``TuningResult``: a candidate's validation metrics (``tuning_results.json``);
- ``TestResult``: a candidate judged on test (``candidate_metrics.json``);
- ``Champion``: a role's pick, with its baseline (``champions.json``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Hyperparameter = float | int | str
# A JSON document read by key where it is shown or logged, not a record of
# this module (the data statistics of data_processing, what registration
# returns). Not recursive: Kedro resolves a node's type hints to type its
# parameters, and silently skips a node whose hints it cannot resolve.
JsonDocument = dict[str, object]


@dataclass(frozen=True)
class Candidate:
    """One grid point of one family."""

    name: str
    kind: str  # the family's estimator (``Recommender.kind``)
    role: str  # "ranking" (which books) or "rating" (how a book is rated)
    baseline: bool = False
    side_information: bool = False  # weighs the books' side information
    hyperparameters: dict[str, Hyperparameter] = field(default_factory=dict)

    @property
    def family(self) -> str:
        """The family it is tuned in: its kind, with side information a family
        of its own (so what the side information adds is measured)."""
        return f"{self.kind}_side" if self.side_information else self.kind

    @property
    def rating(self) -> bool:
        return self.role == "rating"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        return cls(**data)


class _OfCandidate:
    """A record about one candidate: named by it, its JSON holding it."""

    candidate: Candidate

    @property
    def name(self) -> str:
        return self.candidate.name

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Any:
        return cls(**(data | {"candidate": Candidate.from_json(data["candidate"])}))


@dataclass(frozen=True)
class TuningResult(_OfCandidate):
    """A candidate's validation metrics (mean over the folds) and the span of
    its own fits and evaluations in the tuning."""

    candidate: Candidate
    validation: dict[str, float]
    best_of_family: bool
    started: float
    ended: float


@dataclass(frozen=True)
class TestResult(_OfCandidate):
    """A candidate refitted on train and judged on test, with the seconds its
    refit and test took and the span its MLflow run covers."""

    __test__ = False  # not a pytest class

    candidate: Candidate
    metrics: dict[str, float]
    seconds: dict[str, float]
    started: float
    ended: float


@dataclass(frozen=True)
class Reference(_OfCandidate):
    """The best family without side information, judged beside a champion
    that uses it."""

    candidate: Candidate
    validation_value: float
    test_metrics: dict[str, float]


@dataclass(frozen=True)
class Champion:
    """A role's champion: picked on validation, judged on test against its
    baseline."""

    role: str  # "recommender" or "rating"
    candidate: Candidate
    selected_by: str  # validation_<metric>
    validation_value: float
    test_metrics: dict[str, float]
    baseline: str  # the baseline's candidate name
    baseline_test_metrics: dict[str, float]
    beats_baseline: dict[str, bool]
    # Family bests the catalog-coverage floor left out: their coverage.
    left_out_by_min_catalog_coverage: dict[str, float] | None = None
    without_side_information: Reference | None = None

    @property
    def name(self) -> str:
        return self.candidate.name

    @property
    def kind(self) -> str:
        return self.candidate.kind

    @property
    def metric(self) -> str:
        """The metric it was picked on (and is judged on)."""
        return self.selected_by.removeprefix("validation_")

    @property
    def verdict(self) -> str:
        """Whether it beats its baseline on test on its metric, in words."""
        return "beats" if self.beats_baseline[self.metric] else "does NOT beat"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Champion:
        reference = data.get("without_side_information")
        return cls(
            **data
            | {
                "candidate": Candidate.from_json(data["candidate"]),
                "without_side_information": None
                if reference is None
                else Reference.from_json(reference),
            }
        )


def to_json(value: Any) -> Any:
    """``value`` (a record, or a list or dict of them) as plain JSON data."""
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return asdict(value)


# Catalog datasets holding records: how each one's JSON becomes records.
READERS = {
    "tuning_results": lambda data: [TuningResult.from_json(d) for d in data],
    "candidate_metrics": lambda data: [TestResult.from_json(d) for d in data],
    "champions": lambda data: {role: Champion.from_json(d) for role, d in data.items()},
}


def from_json(record: str, data: Any) -> Any:
    """The JSON ``data`` of the ``record`` dataset (a key of ``READERS``) as
    its records."""
    return READERS[record](data)
