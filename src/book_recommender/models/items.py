"""What the item-based families (``knn``, ``ease``) share: a reader's history
as distinct (reader, book) pairs, and the books' side information (e.g. the
author), each normalized value a pseudo-reader of its books.

Both families score a user from the books they have seen, not from a learnt
user vector: ``score(u, j) = sum over u's seen books i of W[i, j]``. A user's
history is binary (an explicit rating and an implicit interaction count
alike), so the served model needs no more than the books each user has seen,
which it already carries to leave them out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import sparse

from book_recommender.columns import ITEM_IDX, USER_IDX


def distinct_pairs(interactions: DataFrame) -> DataFrame:
    return interactions.select(USER_IDX, ITEM_IDX).distinct()


def side_incidence(side: pd.DataFrame, item_ids: np.ndarray) -> sparse.csr_matrix:
    """Side values x books (1 where a book has the value), over ``item_ids``;
    books outside them left out."""
    ids = side[ITEM_IDX].to_numpy(np.int64)
    position = np.searchsorted(item_ids, ids).clip(0, max(len(item_ids) - 1, 0))
    known = (item_ids[position] == ids) if len(item_ids) else np.zeros(len(ids), bool)
    _, rows = np.unique(side[SIDE].to_numpy(str)[known], return_inverse=True)
    return sparse.csr_matrix(
        (np.ones(len(rows), np.float64), (rows, position[known])),
        shape=(int(rows.max(initial=-1)) + 1, len(item_ids)),
    )


SIDE = "_side"  # a normalized side-information value of a book (its author...)


def side_information(items: DataFrame, columns: list[str]) -> DataFrame | None:
    """(ITEM_IDX, SIDE): each book's values of the side-information
    ``columns`` (e.g. ``Book-Author``), normalized to their lower-case letters
    and digits (case, punctuation and spacing ignored), each prefixed by its
    column; empty values left out. None without columns."""
    if not columns:
        return None
    missing = [c for c in columns if c not in items.columns]
    if missing:
        raise ValueError(
            f"item_based.side_information names {missing}, not columns of the "
            f"items table (found {items.columns}); name the items' column(s) or "
            "set it to [] and item_based.knn.side_weight and item_based.ease.beta "
            "to [0.0]."
        )
    parts = []
    for column in columns:
        # Letters and digits only, lower case: "J.R.R. Tolkien" = "j. r. r. tolkien".
        value = F.regexp_replace(
            F.lower(F.col(column).cast("string")), r"[^\p{L}\p{N}]", ""
        )
        parts.append(
            items.filter(value != "").select(
                ITEM_IDX, F.concat(F.lit(f"{column}="), value).alias(SIDE)
            )
        )
    side = parts[0]
    for part in parts[1:]:
        side = side.unionByName(part)
    return side.distinct()
