"""What a setting may be: the strict base of every typed section and the grid
axes a family's section declares (``params`` and the family modules).

A grid axis is a list of numbers, a single number, or a string of numbers
separated by spaces or semicolons. The string form exists for the command line:
``kedro run --params`` splits on commas, so ``als.ranking.alpha=[1,5]`` cannot
be passed there, but ``"als.ranking.alpha=1 5 20"`` can.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class Section(BaseModel):
    """A typed section of the parameters: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


# ALS's cost grows steeply with its rank (at the real shape 0.4 / 5.6 / 19 s
# per iteration at rank 10 / 32 / 64): a rank above this is refused at start-up.
MAX_RANK = 256
RankAxis = Annotated[
    list[Annotated[int, Field(ge=1, le=MAX_RANK)]],
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


def words(value: Any) -> Any:
    """A list of words from a string of words (the command line's form); use as
    ``Annotated[list[Literal[...]], BeforeValidator(words), Field(min_length=1)]``."""
    if isinstance(value, str):
        return [p for p in re.split(r"[\s;]+", value.strip()) if p]
    return value


CountAxis = Annotated[
    list[Annotated[int, Field(ge=1)]],
    BeforeValidator(_no_bools),
    BeforeValidator(_axis),
    Field(min_length=1),
]
