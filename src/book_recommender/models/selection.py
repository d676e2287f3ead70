"""Picking among the tuned families, and the champions' records.

Two questions, two champions: the recommender champion (which books will this
reader pick up?) is the family best with the best validation ranking metric,
popularity included; the rating champion (how would this reader rate this
book?) the rating family best with the best rating metric, the bias baseline
included. A tie goes to the earlier family: baselines first
(``families.families``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from book_recommender.evaluation import LOWER_IS_BETTER
from book_recommender.models.records import (
    Champion,
    Reference,
    TestResult,
    TuningResult,
)

if TYPE_CHECKING:  # params imports the family modules, which sit beside this one
    from book_recommender.params import EvaluationParams

logger = logging.getLogger(__name__)

# A champion is judged against the baseline of these candidates' role.
JUDGED_AGAINST = {"recommender": "ranking", "rating": "rating"}


def better(metric: str, candidate: float, best: float) -> bool:
    return candidate < best if metric in LOWER_IS_BETTER else candidate > best


def best(results: list[TuningResult], metric: str) -> TuningResult:
    """The result with the best validation ``metric``; a tie goes to the
    earlier one (baselines come first)."""
    chosen = results[0]
    for result in results[1:]:
        if better(metric, result.validation[metric], chosen.validation[metric]):
            chosen = result
    return chosen


def _family_bests(results: list[TuningResult]) -> list[TuningResult]:
    return [r for r in results if r.best_of_family]


def covering(
    results: list[TuningResult], evaluation: EvaluationParams
) -> list[TuningResult]:
    """The results whose validation lists cover at least
    ``evaluation.min_catalog_coverage`` of the catalog (all without one).
    Raises ``ValueError`` naming the setting and the best coverage found when
    none does."""
    least = evaluation.min_catalog_coverage
    if least is None:
        return results
    meeting = [r for r in results if r.validation["catalog_coverage"] >= least]
    if not meeting:
        top = max(results, key=lambda r: r.validation["catalog_coverage"])
        raise ValueError(
            f"evaluation.min_catalog_coverage is {least:g}, but no candidate's "
            "validation lists cover that much of the catalog: the best is "
            f"{top.name} with {top.validation['catalog_coverage']:.4g}. "
            "Lower the setting (or null: no constraint), or add candidates that "
            "cover more (e.g. item_based.rp3)."
        )
    return meeting


def pick_champions(
    results: list[TuningResult], evaluation: EvaluationParams
) -> dict[str, tuple[TuningResult, str]]:
    """Per role, the family best ``best`` picks on validation and the metric it
    is picked on: the recommender among every family on the ranking metric,
    the rating champion among the rating families (if any) on the rating
    metric."""
    bests = _family_bests(results)
    pools = {"recommender": (covering(bests, evaluation), evaluation.ranking_key)}
    rating = [r for r in bests if r.candidate.rating]
    if rating:
        pools["rating"] = (rating, evaluation.rating_metric)
    return {
        role: (best(pool, metric), metric) for role, (pool, metric) in pools.items()
    }


def best_without_side_information(
    results: list[TuningResult], evaluation: EvaluationParams
) -> TuningResult | None:
    """If the recommender champion uses side information, the family best
    ``best`` picks on validation among the families without it: judged on test
    beside it, it shows what the side information adds. Else None."""
    champion, metric = pick_champions(results, evaluation)["recommender"]
    if not champion.candidate.side_information:
        return None
    plain = [r for r in _family_bests(results) if not r.candidate.side_information]
    return best(plain, metric)


def baselines(results: list[TuningResult]) -> dict[str, str]:
    """The baseline each champion's role is judged against, by name."""
    found = {r.candidate.role: r.name for r in results if r.candidate.baseline}
    return {
        role: found[among] for role, among in JUDGED_AGAINST.items() if among in found
    }


def to_test(results: list[TuningResult], evaluation: EvaluationParams) -> list[str]:
    """The candidates judged on test: the champions, the baselines they are
    judged against and, for a champion using side information, the best family
    without it. The others stop at their validation metrics and never see test."""
    chosen = {
        champion.name for champion, _ in pick_champions(results, evaluation).values()
    }
    reference = best_without_side_information(results, evaluation)
    if reference is not None:
        chosen.add(reference.name)
    return [r.name for r in results if r.name in chosen or r.candidate.baseline]


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {m: round(v, 4) for m, v in metrics.items()}


def _champion(
    role: str,
    chosen: TuningResult,
    metric: str,
    baseline: str,
    test: dict[str, TestResult],
) -> Champion:
    mine, theirs = test[chosen.name].metrics[metric], test[baseline].metrics[metric]
    beats = chosen.name != baseline and better(metric, mine, theirs)
    if chosen.name == baseline:
        logger.warning(
            "The %s champion is the %s baseline: no model beat it on validation %s "
            "(%.4f). It is registered and served as it is.",
            role,
            baseline.replace("_", " "),
            metric,
            chosen.validation[metric],
        )
    elif not beats:
        logger.warning(
            "The %s champion %s does NOT beat the %s baseline on test: %s %.4f vs %.4f.",
            role,
            chosen.name,
            baseline.replace("_", " "),
            metric,
            mine,
            theirs,
        )
    return Champion(
        role=role,
        candidate=chosen.candidate,
        selected_by=f"validation_{metric}",
        validation_value=chosen.validation[metric],
        test_metrics=test[chosen.name].metrics,
        baseline=baseline,
        baseline_test_metrics=test[baseline].metrics,
        beats_baseline={metric: beats},
    )


def _left_out(
    results: list[TuningResult], evaluation: EvaluationParams
) -> dict[str, float] | None:
    bests = _family_bests(results)
    left_out = [r for r in bests if r not in covering(bests, evaluation)]
    if not left_out:
        return None
    logger.warning(
        "evaluation.min_catalog_coverage %g left out of the recommender "
        "champion's choice: %s",
        evaluation.min_catalog_coverage,
        ", ".join(
            f"{r.name} (covers {r.validation['catalog_coverage']:.4g})"
            for r in left_out
        ),
    )
    return {r.name: r.validation["catalog_coverage"] for r in left_out}


def _reference(
    results: list[TuningResult],
    evaluation: EvaluationParams,
    recommender: Champion,
    test: dict[str, TestResult],
) -> Reference | None:
    reference = best_without_side_information(results, evaluation)
    if reference is None:
        return None
    metric = recommender.metric
    logger.info(
        "Without side information the best candidate is %s: on test %s %.4f "
        "against the champion's %.4f",
        reference.name,
        metric,
        test[reference.name].metrics[metric],
        recommender.test_metrics[metric],
    )
    return Reference(
        candidate=reference.candidate,
        validation_value=reference.validation[metric],
        test_metrics=test[reference.name].metrics,
    )


def champion_records(
    results: list[TuningResult],
    tested: list[TestResult],
    evaluation: EvaluationParams,
) -> dict[str, Champion]:
    """Per role, the champion ``pick_champions`` picks with its test metrics
    and its baseline's; a champion using side information also carries the
    best family without it (``without_side_information``). A champion that is
    its baseline, or loses to it on test, is said loudly."""
    test = {m.name: m for m in tested}
    baseline_of = baselines(results)
    champions = {
        role: _champion(role, chosen, metric, baseline_of[role], test)
        for role, (chosen, metric) in pick_champions(results, evaluation).items()
    }
    recommender = champions["recommender"]
    champions["recommender"] = replace(
        recommender,
        left_out_by_min_catalog_coverage=_left_out(results, evaluation),
        without_side_information=_reference(results, evaluation, recommender, test),
    )
    for role, champion in champions.items():
        logger.info(
            "%s champion: %s (%s %.4f); on test %s",
            role.capitalize(),
            champion.name,
            champion.selected_by,
            champion.validation_value,
            _rounded(champion.test_metrics),
        )
    return champions
