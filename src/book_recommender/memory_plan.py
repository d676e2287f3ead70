"""A memory plan before work: an item family configured larger than the driver
can hold is refused before its first fit, naming the setting, the estimate and
the memory it would not fit in.

Two limits, both checked once the number of books with training readers is
known (the configuration alone cannot decide them: a 100,000-book EASE fits on
data with 3,000 books), before tuning starts:

- what a family holds in the driver's Python process while it fits (numpy,
  beside the JVM): at most half of the machine's physical memory;
- what is broadcast to Spark's tasks (the fitted weights, for every
  evaluation and for scoring): at most a sixth of ``spark.driver.memory``. A
  broadcast of 858 MiB of EASE weights died in a 4g driver with
  ``java.lang.OutOfMemoryError`` in ``TorrentBroadcast``; 95 MiB (EASE over
  5,000 books) and 213 MiB (item-kNN, K 200 over 270k books) did not.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from book_recommender.errors import ProjectError

BROADCAST_SHARE = 6  # a broadcast is at most driver memory / this
PYTHON_SHARE = 2  # a fit holds at most physical memory / this


class MemoryPlanError(ProjectError, ValueError):
    """An item family would not fit in the driver's memory."""


@dataclass(frozen=True)
class Footprint:
    """What one family's grid needs at most, in bytes, and the setting that
    decides it (named in the refusal)."""

    setting: str
    python_bytes: int  # held by the driver's Python process during a fit
    broadcast_bytes: int  # the weights sent to every task


def memory_bytes(text: str) -> int:
    """A JVM memory setting (``4g``, ``512m``, ``2048k``, bytes) in bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)b?\s*", text.lower())
    if match is None:
        raise ValueError(f"not a JVM memory size: {text!r} (e.g. 4g, 512m)")
    number, unit = match.groups()
    return int(number) * 1024 ** " kmgt".index(unit or " ")


def driver_bytes(spark) -> int:
    """``spark.driver.memory`` in bytes (Spark's default 1g if unset)."""
    return memory_bytes(spark.sparkContext.getConf().get("spark.driver.memory", "1g"))


def physical_bytes() -> int:
    """The machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _size(n: float) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MiB"
    return f"{n / 2**10:.1f} KiB"


def check(footprints: list[Footprint], books: int, driver: int, physical: int) -> None:
    """Refuses, in one message, every footprint over a limit (see the module
    docstring)."""
    problems = []
    for need in footprints:
        if need.broadcast_bytes > driver / BROADCAST_SHARE:
            problems.append(
                f"{need.setting}: its weights over {books:,} books would be "
                f"{_size(need.broadcast_bytes)}, broadcast to every Spark task; "
                f"spark.driver.memory {_size(driver)} takes at most "
                f"{_size(driver / BROADCAST_SHARE)} (1/{BROADCAST_SHARE})"
            )
        if need.python_bytes > physical / PYTHON_SHARE:
            problems.append(
                f"{need.setting}: fitting it over {books:,} books needs about "
                f"{_size(need.python_bytes)} in the driver; this machine has "
                f"{_size(physical)} (at most 1/{PYTHON_SHARE} for a fit)"
            )
    if problems:
        raise MemoryPlanError(
            "An item family is configured larger than the driver can hold; "
            "nothing was fitted:\n  "
            + "\n  ".join(problems)
            + "\nLower the setting (conf/base/parameters_data_science.yml, or "
            "--params), raise spark.driver.memory (conf/<env>/spark.yml), or use "
            "item_based.rp3, whose weights grow with the books, not their square."
        )
