"""Registry aliases move when the whole run has succeeded, never before.

The invariant (README, "Registry"): a run that fails (in training, in
registration or in scoring) moves no alias; after a successful run the
aliases name its champions, and the recommender alias names the version whose
recommendations the run's scoring wrote (when the run scored).

``register_champions`` stages the moves here; within the run, the scoring
pipeline's ``champion_recommender`` dataset reads a staged alias as the version
it will become, so the run scores its own champion; ``AliasHooks`` applies the
moves after the pipeline succeeded and drops them when it failed.
"""

from __future__ import annotations

import logging

from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

_staged: dict[tuple[str, str], int] = {}


def stage(model_name: str, alias: str, version: int) -> None:
    """``alias`` of ``model_name`` moves to ``version`` if the run succeeds."""
    _staged[(model_name, alias)] = int(version)


def staged(model_name: str, alias: str) -> int | None:
    """The version ``alias`` will name once this run succeeds, if it moves."""
    return _staged.get((model_name, alias))


def apply() -> list[tuple[str, str, int]]:
    """Moves every staged alias (the run succeeded); returns the moves."""
    client = MlflowClient()
    moved = []
    for (model_name, alias), version in list(_staged.items()):
        client.set_registered_model_alias(model_name, alias, str(version))
        logger.info("Registered %s version %s as '%s'", model_name, version, alias)
        moved.append((model_name, alias, version))
    _staged.clear()
    return moved


def drop() -> None:
    """Forgets the staged moves (the run failed, or a new run starts)."""
    if _staged:
        logger.warning(
            "The run did not finish: the aliases stay where they were (%s not moved).",
            ", ".join(f"'{a}' -> version {v}" for (_, a), v in _staged.items()),
        )
    _staged.clear()
