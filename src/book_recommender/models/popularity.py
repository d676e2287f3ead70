"""The popularity baseline: every reader is served the books with the most
interactions they have not seen."""

from __future__ import annotations

from typing import Any

from pyspark import keyword_only
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.metrics import SCORE
from book_recommender.models.base import Recommender, RecommenderModel, TrainingData
from book_recommender.models.families import Family, FamilyRow


class Popularity(Recommender):
    """Ranks books by their number of interactions, for everyone."""

    kind = "popularity"
    baseline = True

    @keyword_only
    def __init__(self) -> None:
        super().__init__()

    @keyword_only
    def setParams(self):
        """It has no Params of its own (serving's ``k`` aside)."""
        return self

    def _fit_data(self, data: TrainingData) -> PopularityModel:
        return PopularityModel()


class PopularityModel(RecommenderModel):
    """Served as a one-factor model: each reader who interacted ``[1]``, each
    book ``[its interaction count]``; readers without an interaction get the
    same ranking as the fallback."""

    rank = 1

    @property
    def fold_in(self) -> dict[str, Any]:
        """Every reader with a history is ``[1]``."""
        return {"kind": "fixed", "factors": [1.0]}

    def user_factors(self) -> DataFrame:
        return (
            self.data.seen.select(F.col(USER_IDX).alias("id"))
            .distinct()
            .select("id", F.array(F.lit(1.0).cast("float")).alias("features"))
        )

    def item_factors(self) -> DataFrame:
        return self.data.popular.select(
            F.col(ITEM_IDX).alias("id"), F.array(SCORE).alias("features")
        )


# Always on: every recommender is judged against it.
FAMILIES = FamilyRow(
    order=0, build=lambda: [Family(Popularity.kind, Popularity(), [{}])]
)
