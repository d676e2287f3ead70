"""Typed settings of the pipelines, checked before any node runs.

The YAML in ``conf/base/parameters_*.yml`` holds every default;
these models say what a value may be. ``ParameterCheckHooks`` validates the
merged parameters (base, the environment, ``--params``) with them before the
first node of a run, so a typo or a contradiction fails in seconds with the key
named, not after data_processing has run for minutes.

The families' own sections (``als``, each section of ``item_based``) live in
their modules (``models.families``); a grid axis is one of ``axes``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from book_recommender.axes import Section as _Strict
from book_recommender.errors import ProjectError
from book_recommender.models.als import AlsParams
from book_recommender.models.families import item_based_params, rows

PARAMS_FILE = "parameters_data_science.yml"


class ConfigurationError(ProjectError, ValueError):
    """A setting has a value the pipelines cannot use."""


# What every family's section is built from (``axes``) and the families'
# sections themselves (``models.families``: one per family module).
ItemBasedParams = item_based_params()


class TuningParams(_Strict):
    method: Literal["TrainValidationSplit", "CrossValidator"]
    train_ratio: float = Field(gt=0, lt=1)
    num_folds: int = Field(ge=2)
    seed: int
    parallelism: int = Field(ge=1)  # candidates fitted and evaluated at once


# The most books per list a run evaluates or scores: checked at start-up; that
# k is at most the books the model input holds is checked after data_processing.
MAX_K = 1000


class EvaluationParams(_Strict):
    k: int = Field(ge=1, le=MAX_K)
    relevance_threshold: float | None
    # The recommender champion's metric at k, and the rating champion's metric.
    ranking_metric: Literal["ndcg", "precision", "recall", "map"]
    rating_metric: Literal["rmse", "mae"]
    tile_cells: int = Field(ge=1)  # scores a top-k task holds at once (4 bytes each)
    # The recommender champion's least validation catalog coverage; None: any.
    min_catalog_coverage: Annotated[float, Field(gt=0, le=1)] | None

    @property
    def ranking_key(self) -> str:
        return f"{self.ranking_metric}_at_{self.k}"


class RegistryParams(_Strict):
    model_name: str = Field(min_length=1)  # the recommender champions' model
    alias: str = Field(min_length=1)  # the recommender champion; scoring uses it
    rating_model_name: str = Field(min_length=1)  # the rating champions' model
    rating_alias: str = Field(min_length=1)  # the rating champion
    max_k: int = Field(ge=1)  # the most books a served request may ask per id
    max_rows: int = Field(ge=1)  # the most rows (ids, pairs) in one served request


class ScoringParams(_Strict):
    k: int = Field(ge=1, le=MAX_K)  # books per user
    exclude_rated: bool
    tile_cells: int = Field(ge=1)  # scores a top-k task holds at once (4 bytes each)
    # Which version scores is the catalog's (champion_recommender); these two
    # arrive only from `--params` and are read there.
    model_alias: str | None = Field(default=None, min_length=1)
    model_version: int | None = Field(default=None, ge=1)


class ReportingParams(_Strict):
    sample_users: int = Field(ge=1)  # the most active raters, in the sample
    sample_books: int = Field(ge=1)  # books rated highly and recommended, per user


class MinimumDataParams(_Strict):
    interactions: int = Field(ge=1)
    train_rows: int = Field(ge=1)
    test_rows: int = Field(ge=1)


class QualityParams(_Strict):
    """How much damage to the raw data a run tolerates (``assess_data_quality``)."""

    max_lost_share: float = Field(ge=0, le=1)
    max_undecodable_share: float = Field(ge=0, le=1)
    max_merged_share: float = Field(ge=0, le=1)


class DataFiles(_Strict):
    folder: str = Field(min_length=1)
    items_file: str = Field(min_length=1)
    users_file: str = Field(min_length=1)
    ratings_file: str = Field(min_length=1)


class RatingRules(_Strict):
    min: float
    max: float
    implicit_value: float | None  # records an interaction, not a score
    integer: bool  # ratings are whole numbers


class UserRules(_Strict):
    age_range: tuple[float, float] | None  # plausible ages; others are counted


class Preparation(_Strict):
    is_sample: bool
    sample_rows: int = Field(ge=1)
    train_fraction: float = Field(gt=0, lt=1)
    seed: int


class FileCheck(_Strict):
    size: int | None = Field(default=None, ge=0)
    sha256: str | None = None


class Download(_Strict):
    remote_url: str | None
    overwrite: bool
    timeout_seconds: float = Field(gt=0)
    retries: int = Field(ge=0)
    backoff_seconds: float = Field(ge=0)
    min_bytes: int = Field(ge=0)
    max_bytes: int | None = Field(ge=1)
    allowed_redirect_hosts: list[str]
    expected: dict[str, FileCheck]


class DataProcessingParams(_Strict):
    data: DataFiles
    ratings: RatingRules
    users: UserRules
    minimum: MinimumDataParams
    quality: QualityParams
    preparation: Preparation
    download: Download


SECTIONS: dict[str, type[_Strict]] = {
    "als": AlsParams,
    "item_based": ItemBasedParams,
    "tuning": TuningParams,
    "evaluation": EvaluationParams,
    "registry": RegistryParams,
    "scoring": ScoringParams,
    "data_processing": DataProcessingParams,
    "reporting": ReportingParams,
}
FILES = {
    **dict.fromkeys(
        ("als", "item_based", "tuning", "evaluation", "registry"), PARAMS_FILE
    ),
    "scoring": "parameters_scoring.yml",
    "data_processing": "parameters_data_processing.yml",
    "reporting": "parameters_reporting.yml",
}


def _where(error: dict[str, Any], section: str) -> str:
    where = section
    for part in error["loc"]:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    return where


def parse(section: str, value: Any, env: str | None = None) -> Any:
    """``value`` (the ``section`` of the parameters) as its typed model.

    Raises a ``ConfigurationError`` that names every offending key, what was
    found and where the defaults live.
    """
    model = SECTIONS[section]
    try:
        parsed = value if isinstance(value, model) else model.model_validate(value)
    except ValidationError as error:
        lines = [
            f"{_where(e, section)}: {e['msg']} (found {e['input']!r})"
            if e["type"] != "missing"
            else f"{_where(e, section)}: missing"
            for e in error.errors()
        ]
        raise ConfigurationError(
            f"Invalid {section} settings:\n  "
            + "\n  ".join(lines)
            + f"\nDefaults: conf/base/{FILES[section]}"
            + (f", overridden by conf/{env}/" if env and env != "base" else "")
            + "; --params overrides them too."
        ) from None
    _check_combinations(section, parsed)
    if section == "item_based":
        _check_item_based(parsed)
    return parsed


def _check_combinations(section: str, parsed: Any) -> None:
    if section == "data_processing":
        ratings, download = parsed.ratings, parsed.download
        if ratings.min > ratings.max:
            raise ConfigurationError(
                f"data_processing.ratings.min ({ratings.min:g}) is above "
                f"data_processing.ratings.max ({ratings.max:g}) "
                f"(conf/base/{FILES[section]})."
            )
        if download.overwrite and not download.remote_url:
            raise ConfigurationError(
                "data_processing.download.overwrite is true but "
                "data_processing.download.remote_url is not set "
                f"(conf/base/{FILES[section]})."
            )


def _check_item_based(parsed: Any) -> None:
    for row in rows():
        for key, axis in row.side_axes(parsed).items():
            weighted = [w for w in axis if w > 0]
            if weighted and not parsed.side_information:
                raise ConfigurationError(
                    f"item_based.{key} has {weighted} but "
                    "item_based.side_information is empty: name the items' "
                    "column(s) (e.g. [Book-Author]) or set "
                    f"item_based.{key} to [0.0] (conf/base/{PARAMS_FILE})."
                )


def check_parameters(parameters: dict[str, Any], env: str | None = None) -> None:
    """Validates every typed section present in ``parameters``, and that at
    least one model family is on (the baselines alone train nothing)."""
    parsed = {
        section: parse(section, parameters[section], env)
        for section in SECTIONS
        if section in parameters
    }
    if "als" in parsed and "item_based" in parsed:
        switches = {
            key: on for row in rows() for key, on in row.switches(parsed).items()
        }
        if not any(switches.values()):
            raise ConfigurationError(
                f"{', '.join(switches)} are all false: enable at least one model "
                f"family (conf/base/{PARAMS_FILE})."
            )
