"""How much of the catalog a candidate reaches: the share of the books its
served top-k lists hold, and the share of the books it could recommend at all.

- ``catalog_coverage``: distinct books in the top-k lists of the judged users
  (``evaluation.SERVED_BOOKS``) over every book of the catalog (the indexed
  items, read or not);
- ``trained_coverage``: the same over the books with at least one training
  reader (the books any model could learn about);
- ``reach_2plus``: the share of the books with at least two training readers
  that the model can recommend at all (a column of an item-based model's
  weights, an item with factors; every book for the baselines, which rank all
  books with readers). Dense EASE reaches only its ``max_items`` books.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, USER_IDX

_READERS = "_readers"


@dataclass(frozen=True)
class Catalog:
    """The catalog's size and each trained book's number of training readers."""

    books: int
    trained_ids: np.ndarray  # int64, ascending: books with a training reader
    readers: np.ndarray  # int64, their training readers

    @classmethod
    def of(cls, items: DataFrame, seen: DataFrame) -> Catalog:
        """The catalog of ``items`` (ITEM_IDX) and the readers of each book in
        the training interactions ``seen`` (USER_IDX, ITEM_IDX)."""
        counts = (
            seen.groupBy(ITEM_IDX)
            .agg(F.countDistinct(USER_IDX).alias(_READERS))
            .toPandas()
            .sort_values(ITEM_IDX)
        )
        return cls(
            books=items.select(ITEM_IDX).distinct().count(),
            trained_ids=counts[ITEM_IDX].to_numpy(np.int64),
            readers=counts[_READERS].to_numpy(np.int64),
        )

    def coverage(self, model, served_books: float) -> dict[str, float]:
        """``model``'s coverage from the distinct books it served (see the
        module docstring)."""
        two_plus = self.trained_ids[self.readers >= 2]  # noqa: PLR2004
        reachable = recommendable(model)
        reach = (
            1.0
            if reachable is None
            else np.isin(two_plus, reachable).sum() / max(len(two_plus), 1)
        )
        return {
            "catalog_coverage": served_books / max(self.books, 1),
            "trained_coverage": served_books / max(len(self.trained_ids), 1),
            "reach_2plus": float(reach),
        }


def recommendable(model) -> np.ndarray | None:
    """The ids of the books ``model`` (a ``models.RecommenderModel``) can
    recommend; None for a model that ranks every book with readers."""
    weights = model.item_weights()
    if weights is not None:
        return weights.recommendable
    factors = model.item_factors()
    if factors is not None:
        return factors.select("id").toPandas()["id"].to_numpy(np.int64)
    return None
