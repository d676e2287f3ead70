"""Damage to the raw files, said out loud: every count that means lost or
altered data is a WARNING naming the file, a ``data_quality`` block in
data_statistics.json and the MLflow run, and, above the shares of
``data_processing.quality``, a failure before any model input is written."""

from __future__ import annotations

import logging
from typing import Any

from book_recommender.params import DataProcessingParams
from book_recommender.pipelines.data_processing.reading import (
    DataValidationError,
    source_path,
)

logger = logging.getLogger(__name__)

# What each per-file count means, and what to do about it.
_TEXT_DAMAGE = {
    "undecodable_bytes": (
        "rows hold U+FFFD, the character a reader puts for bytes that are not "
        "UTF-8: the file is likely in another encoding (the original Book-Crossing "
        "dump is Latin-1); set data.csv.encoding (e.g. ISO-8859-1) in "
        "conf/<env>/globals.yml",
        "max_undecodable_share",
    ),
    "line_breaks_in_a_field": (
        "rows hold a line break inside a field: a quote opened and not closed "
        "merges the lines after it into one field (and their rows are lost); "
        "check the file's quoting (data.csv.escape)",
        "max_merged_share",
    ),
}
_FILES = {"ratings": "ratings_file", "users": "users_file", "items": "items_file"}


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def _file_quality(
    table: str, report: dict[str, Any], params: DataProcessingParams
) -> tuple[dict[str, Any], list[str]]:
    """One file's damage counts and the failures above their thresholds."""
    path = source_path(params, _FILES[table])
    read = report["read"]
    # Dropped rows per reason as a group of their own: the parent run logs
    # them once, as data.dropped.* (data_quality.* takes the numbers here).
    block: dict[str, Any] = {"path": path, "read": read, "dropped": report["dropped"]}
    failures = []
    for flag, (meaning, setting) in _TEXT_DAMAGE.items():
        count = report.get("rows_with", {}).get(flag, 0)
        block[flag] = count
        if not count:
            continue
        share, bound = _share(count, read), getattr(params.quality, setting)
        logger.warning("%s: %s of %s %s.", path, count, read, meaning)
        if share > bound:
            failures.append(
                f"{path}: {count} of {read} rows ({share:.2%}) {meaning}; at most "
                f"{bound:.2%} are tolerated (data_processing.quality.{setting})."
            )
    return block, failures


def _unjoined(
    joins_report: dict[str, int], params: DataProcessingParams
) -> dict[str, int]:
    """Valid ratings whose user or book the other files lack, each said with
    how many differ from a known id only by case or leading zeros."""
    ratings = source_path(params, "ratings_file")
    counts = {}
    # (side, its file, what it is, the near miss, how the near miss differs)
    for side, table, what, near, differing in [
        ("user", "users", "user", "user_known_without_leading_zeros",
         "without leading zeros ('002' for '2')"),
        ("item", "items", "book", "item_known_in_another_case",
         "in another case (an ISBN's 'x' for 'X')"),
    ]:  # fmt: skip
        count = joins_report[f"ratings_with_unknown_{side}"]
        matching = joins_report.get(f"ratings_with_unknown_{near}", 0)
        counts[f"unknown_{side}"], counts[f"unknown_{near}"] = count, matching
        if count:
            logger.warning(
                "%s: %s valid ratings name a %s that %s does not hold: dropped. "
                "Ids are compared as text: %s of them would match %s.",
                ratings, count, what, source_path(params, _FILES[table]),
                matching, differing,
            )  # fmt: skip
    return counts


def assess_data_quality(
    ratings_report: dict[str, Any],
    users_report: dict[str, Any],
    items_report: dict[str, Any],
    joins_report: dict[str, int],
    params: DataProcessingParams,
) -> dict[str, Any]:
    """Per file: rows read, dropped per reason, rows with replacement
    characters or a line break in a field; for the ratings: those lost
    (dropped, or valid but joined to no user or no book) and their share.
    Fails, naming each file, its count and the setting, when a share is above
    ``data_processing.quality``."""
    reports = {"ratings": ratings_report, "users": users_report, "items": items_report}
    quality: dict[str, Any] = {}
    failures = []
    for table, report in reports.items():
        quality[table], failed = _file_quality(table, report, params)
        failures += failed
    unjoined = _unjoined(joins_report, params)
    read = ratings_report["read"]
    lost = (
        sum(ratings_report["dropped"].values())
        + unjoined["unknown_user"]
        + unjoined["unknown_item"]
    )
    quality["ratings"] |= unjoined | {
        "lost": lost,
        "lost_share": round(_share(lost, read), 6),
    }
    bound = params.quality.max_lost_share
    if _share(lost, read) > bound:
        failures.append(
            f"{source_path(params, 'ratings_file')}: {lost} of {read} ratings "
            f"({_share(lost, read):.2%}) are lost (dropped: "
            f"{ratings_report['dropped']}; unknown user {unjoined['unknown_user']}, "
            f"unknown book {unjoined['unknown_item']}); at most {bound:.2%} are "
            "tolerated (data_processing.quality.max_lost_share)."
        )
    if failures:
        raise DataValidationError(
            "The raw data is too damaged to train on; nothing was written. "
            + " ".join(failures)
        )
    return quality
