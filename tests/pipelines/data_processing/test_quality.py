"""Damage to the raw files is never silent: a WARNING naming the file and the
count, the data_quality block, and a failure above the share it may reach."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from book_recommender.params import parse
from book_recommender.pipelines.data_processing.indexing import _index
from book_recommender.pipelines.data_processing.nodes import (
    DataValidationError,
    assess_data_quality,
    count_join_losses,
    validate_items,
    validate_ratings,
    validate_users,
)
from tests.conftest import data_processing_params

COLUMNS = {
    "user_id": "User-ID",
    "item_id": "ISBN",
    "item_info": "Book-Title",
    "rating": "Book-Rating",
}
BOOKS = "ISBN,Book-Title\n"
USERS = "User-ID,Location\n"
RATINGS = "User-ID,ISBN,Book-Rating\n"


def _params(**quality: float):
    return parse(
        "data_processing",
        data_processing_params(
            data={"folder": "raw", "items_file": "Books.csv",
                  "users_file": "Users.csv", "ratings_file": "Ratings.csv"},
            quality=quality,
        ),
    )  # fmt: skip


def _read(spark, folder: Path, name: str, data: bytes):
    """The file as conf/base's catalog reads it (UTF-8, '"' escapes)."""
    path = folder / name
    path.write_bytes(data)
    return spark.read.csv(
        str(path), header=True, quote='"', escape='"', multiLine=True, encoding="UTF-8"
    )


def _reports(spark, tmp_path, books: bytes, users: bytes, ratings: bytes, params):
    """The four reports assess_data_quality reads, from the three files."""
    items, items_report = validate_items(
        _read(spark, tmp_path, "Books.csv", books), COLUMNS, params
    )
    people, users_report = validate_users(
        _read(spark, tmp_path, "Users.csv", users), COLUMNS, params
    )
    rated, ratings_report = validate_ratings(
        _read(spark, tmp_path, "Ratings.csv", ratings), COLUMNS, params
    )
    joins = count_join_losses(
        rated,
        _index(people, "User-ID", "user_idx"),
        _index(items, "ISBN", "item_idx"),
        COLUMNS,
    )
    return ratings_report, users_report, items_report, joins


@pytest.fixture(scope="module")
def damaged(spark, tmp_path_factory):
    """The reports of three files with every damage at once, read once: Books.csv
    in Latin-1 with a quote never closed (it swallows the next two books),
    Users.csv in Latin-1, and ratings naming an ISBN in another case and a user
    with leading zeros."""
    folder = tmp_path_factory.mktemp("damaged")
    books = (
        BOOKS + "034545104X,Caf\xe9 Noir\n0451524934,Plain\n"
        '1111111111,"Opened and never closed\n2222222222,Gone\n3333333333,Gone Too\n'
    ).encode("latin-1")
    users = (USERS + "2,z\xfcrich\n3,paris\n").encode("latin-1")
    pairs = [
        ("2", "0451524934"), ("3", "034545104x"), ("002", "0451524934"),
        ("3", "034545104X"), ("9", "0451524934"), ("2", "2222222222"),
        ("3", "3333333333"), ("2", "034545104X"), ("3", "0451524934"),
        ("2", "1111111111"),
    ]  # fmt: skip
    ratings = (RATINGS + "".join(f"{u},{i},5\n" for u, i in pairs)).encode()
    return _reports(spark, folder, books, users, ratings, _params())


def _assessed(damaged, caplog, **quality: float) -> tuple[dict, str]:
    """assess_data_quality with the quality bounds raised to ``quality``: its
    block and the WARNING lines it said."""
    caplog.clear()
    bounds = {"max_undecodable_share": 1.0, "max_merged_share": 1.0,
              "max_lost_share": 1.0} | quality  # fmt: skip
    with caplog.at_level(logging.WARNING):
        block = assess_data_quality(*damaged, params=_params(**bounds))
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return block, "\n".join(said)


def test_a_latin1_file_read_as_utf8_is_said_and_fails_above_its_share(damaged, caplog):
    block, said = _assessed(damaged, caplog)
    assert block["items"]["undecodable_bytes"] == 1
    assert block["users"]["undecodable_bytes"] == 1
    assert "raw/Books.csv: 1 of 3 rows hold U+FFFD" in said
    assert "raw/Users.csv: 1 of 2 rows hold U+FFFD" in said
    with pytest.raises(DataValidationError) as refused:
        _assessed(damaged, caplog, max_undecodable_share=0.4)
    message = str(refused.value)
    assert "raw/Users.csv: 1 of 2 rows (50.00%)" in message
    assert "raw/Books.csv" not in message  # 33% is within the 40% bound
    assert "data.csv.encoding" in message and "max_undecodable_share" in message


def test_an_unclosed_quote_is_said_and_fails_above_its_share(damaged, caplog):
    """The quote swallows the two books after it: one row with line breaks,
    their two ratings lost to the join."""
    block, said = _assessed(damaged, caplog)
    assert block["items"]["read"] == 3  # noqa: PLR2004
    assert block["items"]["line_breaks_in_a_field"] == 1
    assert "raw/Books.csv: 1 of 3 rows hold a line break inside a field" in said
    with pytest.raises(DataValidationError, match="max_merged_share"):
        _assessed(damaged, caplog, max_merged_share=0.001)


def test_an_isbns_case_and_a_users_leading_zeros_are_said_not_guessed(damaged, caplog):
    """Ids are text: '034545104x' is not '034545104X' and '002' is not '2'.
    They are not joined, and the warning says how many would be."""
    block, said = _assessed(damaged, caplog)
    ratings = block["ratings"]
    # Unknown books: the case slip and the two the quote swallowed.
    assert ratings["unknown_item"] == 3  # noqa: PLR2004
    assert ratings["unknown_item_known_in_another_case"] == 1
    assert ratings["unknown_user"] == 2  # noqa: PLR2004
    assert ratings["unknown_user_known_without_leading_zeros"] == 1
    assert ratings["lost"] == 5 and ratings["lost_share"] == 0.5  # noqa: PLR2004
    assert "raw/Ratings.csv: 2 valid ratings name a user that raw/Users.csv" in said
    assert "1 of them would match without leading zeros" in said
    assert "3 valid ratings name a book that raw/Books.csv" in said
    assert "1 of them would match in another case" in said
    with pytest.raises(DataValidationError, match=r"5 of 10 ratings \(50.00%\)"):
        _assessed(damaged, caplog, max_lost_share=0.25)
