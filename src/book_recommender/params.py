"""Typed settings of the pipelines, checked before any node runs.

The YAML in ``conf/base/parameters_*.yml`` holds every default;
these models say what a value may be. ``ParameterCheckHooks`` validates the
merged parameters (base, the environment, ``--params``) with them before the
first node of a run, so a typo or a contradiction fails in seconds with the key
named, not after data_processing has run for minutes.

A grid axis is a list of numbers, a single number, or a string of numbers
separated by spaces or semicolons. The string form exists for the command line:
``kedro run --params`` splits on commas, so ``als.ranking.alpha=[1,5]`` cannot
be passed there, but ``"als.ranking.alpha=1 5 20"`` can.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from book_recommender.errors import ProjectError

PARAMS_FILE = "parameters_data_science.yml"


class ConfigurationError(ProjectError, ValueError):
    """A setting has a value the pipelines cannot use."""


def _axis(value: Any) -> Any:
    if isinstance(value, str):
        parts = [p for p in re.split(r"[\s;]+", value.strip()) if p]
        try:
            return [float(p) for p in parts]
        except ValueError:
            return value  # pydantic reports it
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [value]
    return value


def _no_bools(values: list[Any]) -> list[Any]:
    if any(isinstance(v, bool) for v in values):
        raise ValueError("grid values must be numbers, not true/false")
    return values


RankAxis = Annotated[
    list[Annotated[int, Field(ge=1)]],
    BeforeValidator(_no_bools),
    BeforeValidator(_axis),
    Field(min_length=1),
]
NonNegativeAxis = Annotated[
    list[Annotated[float, Field(ge=0)]],
    BeforeValidator(_no_bools),
    BeforeValidator(_axis),
    Field(min_length=1),
]
PositiveAxis = Annotated[
    list[Annotated[float, Field(gt=0)]],
    BeforeValidator(_no_bools),
    BeforeValidator(_axis),
    Field(min_length=1),
]


def _words(value: Any) -> Any:
    if isinstance(value, str):
        return [p for p in re.split(r"[\s;]+", value.strip()) if p]
    return value


SimilarityAxis = Annotated[
    list[Literal["bm25", "cosine"]], BeforeValidator(_words), Field(min_length=1)
]
CountAxis = Annotated[
    list[Annotated[int, Field(ge=1)]],
    BeforeValidator(_no_bools),
    BeforeValidator(_axis),
    Field(min_length=1),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RankingFamily(_Strict):
    """Implicit ALS on every interaction (the implicit zeros included)."""

    enabled: bool
    rank: RankAxis
    reg_param: NonNegativeAxis
    alpha: PositiveAxis
    num_epochs: int = Field(ge=1)
    nonnegative: bool
    implicit_strength: float = Field(gt=0)
    min_item_interactions: int = Field(ge=1)


class RatingFamily(_Strict):
    """Rating predictors: biased ALS, or the tutorial's explicit ALS."""

    enabled: bool
    kind: Literal["biased", "explicit"]
    rank: RankAxis
    reg_param: NonNegativeAxis
    num_epochs: int = Field(ge=1)
    nonnegative: bool  # explicit ALS only: biased residuals are never non-negative
    bias_damping: float = Field(ge=0)  # biased ALS and the bias baseline


class AlsParams(_Strict):
    seed: int
    num_blocks: int | None = Field(ge=1)
    ranking: RankingFamily
    rating: RatingFamily


class KnnFamily(_Strict):
    """Item-kNN over co-readers (``models.knn.fit_item_knn``)."""

    enabled: bool
    similarity: SimilarityAxis
    neighbours: CountAxis  # kept per book
    side_weight: NonNegativeAxis  # similarity per shared side value (0: none)
    max_user_items: int = Field(ge=2)  # a reader's books sampled into the pairs
    bm25_k1: float = Field(gt=0)
    bm25_b: float = Field(ge=0, le=1)


class Rp3Family(_Strict):
    """RP3beta over the whole catalog (``models.rp3.fit_rp3``)."""

    enabled: bool
    alpha: PositiveAxis  # exponent of the walk's steps
    beta: NonNegativeAxis  # popularity penalty (0: none)
    neighbours: CountAxis  # kept per book: ~8 bytes each in the weights
    side_weight: NonNegativeAxis  # edge weight of a side value's books (0: none)
    max_user_items: int = Field(ge=2)  # a reader's books sampled into the walk
    min_item_readers: int = Field(ge=1)  # training readers a recommended book has


class EaseFamily(_Strict):
    """EASE over the most read books (``models.ease.fit_ease``)."""

    enabled: bool
    l2: PositiveAxis
    beta: NonNegativeAxis  # weight of the side information (0: none)
    max_items: int = Field(ge=2)  # ~12 * max_items^2 bytes per fit on the driver


class ItemBasedParams(_Strict):
    seed: int  # the sample of a prolific reader's books
    side_information: list[str]  # items' columns, e.g. [Book-Author]; [] none
    knn: KnnFamily
    rp3: Rp3Family
    ease: EaseFamily


class TuningParams(_Strict):
    method: Literal["TrainValidationSplit", "CrossValidator"]
    train_ratio: float = Field(gt=0, lt=1)
    num_folds: int = Field(ge=2)
    seed: int
    parallelism: int = Field(ge=1)  # candidates fitted and evaluated at once


class EvaluationParams(_Strict):
    k: int = Field(ge=1)
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
    k: int = Field(ge=1)  # books per user
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


def _check_item_based(parsed: ItemBasedParams) -> None:
    for key, axis in (
        ("knn.side_weight", parsed.knn.side_weight),
        ("rp3.side_weight", parsed.rp3.side_weight),
        ("ease.beta", parsed.ease.beta),
    ):
        weighted = [w for w in axis if w > 0]
        if weighted and not parsed.side_information:
            raise ConfigurationError(
                f"item_based.{key} has {weighted} but item_based.side_information "
                "is empty: name the items' column(s) (e.g. [Book-Author]) or set "
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
            "als.ranking.enabled": parsed["als"].ranking.enabled,
            "als.rating.enabled": parsed["als"].rating.enabled,
            "item_based.knn.enabled": parsed["item_based"].knn.enabled,
            "item_based.rp3.enabled": parsed["item_based"].rp3.enabled,
            "item_based.ease.enabled": parsed["item_based"].ease.enabled,
        }
        if not any(switches.values()):
            raise ConfigurationError(
                f"{', '.join(switches)} are all false: enable at least one model "
                f"family (conf/base/{PARAMS_FILE})."
            )
