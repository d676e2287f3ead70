"""Nodes of the data_processing pipeline: the tutorial's data preparation, each
in the room of its concern.

Input columns are named by the ``columns`` parameters, so any user-item-rating
data set fits; the columns the pipeline adds are in ``book_recommender.columns``.

- ``fetching``: the raw files, fetched when missing, described for the records;
- ``reading``: the raw tables validated, each dropped row counted by reason;
- ``indexing``: indices, the merged model input and its train/test split;
- ``quality``: the damage to the raw files, warned about and bounded;
- ``statistics``: what the data is, and what the side information could tell.
"""

from book_recommender.pipelines.data_processing.fetching import fetch_raw_data
from book_recommender.pipelines.data_processing.indexing import (
    check_model_input,
    index_items,
    index_users,
    merge_ratings,
    prepare_model_input,
    split_ratings,
)
from book_recommender.pipelines.data_processing.quality import assess_data_quality
from book_recommender.pipelines.data_processing.reading import (
    DataValidationError,
    repair_shifted_items,
    validate_items,
    validate_ratings,
    validate_users,
)
from book_recommender.pipelines.data_processing.statistics import (
    compute_statistics,
    count_join_losses,
    measure_side_information,
)

__all__ = [
    "DataValidationError",
    "assess_data_quality",
    "check_model_input",
    "compute_statistics",
    "count_join_losses",
    "fetch_raw_data",
    "index_items",
    "index_users",
    "measure_side_information",
    "merge_ratings",
    "prepare_model_input",
    "repair_shifted_items",
    "split_ratings",
    "validate_items",
    "validate_ratings",
    "validate_users",
]
