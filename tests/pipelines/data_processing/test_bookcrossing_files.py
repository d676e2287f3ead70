"""data_processing on files with the real Kaggle Book-Crossing files' known bad rows."""

from __future__ import annotations

import pandas as pd

from book_recommender.params import parse
from book_recommender.pipelines.data_processing.nodes import (
    assess_data_quality,
    count_join_losses,
    index_items,
    index_users,
    merge_ratings,
    validate_items,
    validate_ratings,
    validate_users,
)
from tests.conftest import env_config, raw_catalog

BOOKS = (
    b"ISBN,Book-Title,Book-Author,Year-Of-Publication,Publisher,"
    b"Image-URL-S,Image-URL-M,Image-URL-L\n"
    b"0195153448,Classical Mythology,Mark P. O. Morford,2002,Oxford University Press,"
    b"http://s/1.jpg,http://m/1.jpg,http://l/1.jpg\n"
    # The author is inside the quoted title, so every later column moved left.
    b'0789466953,"DK Readers: Creating the X-Men, How Comic Books Come to Life '
    b'(Level 4: Proficient Readers)\\"";James Buckley""",2000,DK Publishing Inc,'
    b"http://s/2.jpg,http://m/2.jpg,http://l/2.jpg\n"
    # A latin-1 byte (0xE9) in a UTF-8 file.
    b"0002005018,Caf\xe9 Clara,Richard Bruce Wright,2001,HarperFlamingo Canada,"
    b"http://s/3.jpg,http://m/3.jpg,http://l/3.jpg\n"
    # Quotes doubled inside a quoted field.
    b'0399135782,"The ""Kitchen"" God\'s Wife",Amy Tan,1991,Putnam Pub Group,'
    b"http://s/4.jpg,http://m/4.jpg,http://l/4.jpg\n"
    b"0425176428,What If?,Robert Cowley,unknown,Berkley Publishing Group,"
    b"http://s/5.jpg,http://m/5.jpg,http://l/5.jpg\n"
    b"0195153448,Classical Mythology (again),Someone,2003,Oxford,,,\n"  # duplicate
    b",No ISBN,Nobody,1999,Nowhere,,,\n"  # no id
)
USERS = (
    b"User-ID,Location,Age\n"
    b'1,"nyc, new york, usa",\n'
    b'2,"stockton, california, usa",18.0\n'
    b'3,"porto, v.n.gaia,\nportugal",17\n'  # a line break inside quotes
    b'4,"m\xfcnchen, bayern, germany",34.0\n'  # latin-1 0xFC
    b'5,"farnborough, hants, united kingdom",NULL\n'
    b'60,"timmins, ontario, canada",244\n'  # an absurd age: kept, counted
    b'2,"duplicate id",30\n'
    b',"no id",20\n'
)
RATINGS = (
    b"User-ID,ISBN,Book-Rating\n"
    b"1,0195153448,0\n"
    b"1,0789466953,8\n"
    b"2,0195153448,5\n"
    b"2,0002005018,7\n"
    b"3,0789466953,9\n"
    b"3,0399135782,6\n"
    b"4,0425176428,10\n"
    b"4,0195153448,3\n"
    b"5,0399135782,4\n"
    b"5,0002005018,0\n"
    b"5,9999999999,5\n"  # unknown ISBN: kept by validation, lost in the join
    b"6,0195153448,5\n"  # unknown user
    b"1,0425176428,ten\n"  # bad rating
)


def test_known_bad_rows_are_counted_and_handled(spark, tmp_path):
    """The bookcrossing environment's reading options and the project's
    columns, through data_processing's validation, join and quality nodes
    (the whole pipeline in that environment: test_download.py)."""
    for name, body in {
        "raw_books": BOOKS,
        "raw_users": USERS,
        "raw_ratings": RATINGS,
    }.items():
        (tmp_path / name).write_bytes(body)
    config = env_config("bookcrossing")
    catalog = raw_catalog("bookcrossing", tmp_path)
    columns = config["parameters"]["columns"]
    # One damaged row in seven is far above the real files' share: the quality
    # bounds are raised for these few rows (test_quality.py checks the bounds).
    settings = config["parameters"]["data_processing"]
    settings["quality"] |= {"max_undecodable_share": 0.2, "max_merged_share": 0.2}
    params = parse("data_processing", settings)
    validated_items, items = validate_items(catalog.load("raw_books"), columns, params)
    validated_users, users = validate_users(catalog.load("raw_users"), columns, params)
    validated, ratings = validate_ratings(catalog.load("raw_ratings"), columns, params)
    indexed_users = index_users(validated_users, columns)
    indexed_items = index_items(validated_items, columns)
    joins = count_join_losses(validated, indexed_users, indexed_items, columns)
    quality = assess_data_quality(ratings, users, items, joins, params)
    assert quality["items"]["undecodable_bytes"] == 1
    assert quality["users"]["line_breaks_in_a_field"] == 1
    # The bad rating, the unknown ISBN and the unknown user.
    assert quality["ratings"]["lost"] == 3  # noqa: PLR2004

    assert (items["read"], items["kept"]) == (7, 5)
    assert items["dropped"] == {"duplicate_item_id": 1, "missing_item_id": 1}
    assert quality["items"]["dropped"] == items["dropped"]
    assert items["rows_with"] == {
        "line_breaks_in_a_field": 0,
        "undecodable_bytes": 1,
        "shifted_columns_repaired": 1,
        "invalid_year": 1,
    }
    assert (users["read"], users["kept"]) == (8, 6)
    assert users["dropped"] == {"duplicate_user_id": 1, "missing_user_id": 1}
    assert users["rows_with"] == {
        "line_breaks_in_a_field": 1,
        "undecodable_bytes": 1,
        "age_out_of_range": 1,
    }
    assert (ratings["read"], ratings["kept"]) == (13, 12)
    assert ratings["dropped"] == {"rating_not_numeric": 1}

    books = validated_items.toPandas().set_index("ISBN")
    dk = books.loc["0789466953"]
    assert dk["Book-Title"] == (
        "DK Readers: Creating the X-Men, How Comic Books Come to Life "
        "(Level 4: Proficient Readers)"
    )
    assert (dk["Book-Author"], dk["Year-Of-Publication"], dk["Publisher"]) == (
        "James Buckley",
        2000,
        "DK Publishing Inc",
    )
    assert (dk["Image-URL-S"], dk["Image-URL-L"]) == (
        "http://s/2.jpg",
        "http://l/2.jpg",
    )
    assert books.loc["0399135782", "Book-Title"] == 'The "Kitchen" God\'s Wife'
    assert books.loc["0002005018", "Book-Title"] == "Caf\ufffd Clara"
    assert pd.isna(books.loc["0425176428", "Year-Of-Publication"])
    assert books.loc["0195153448", "Book-Title"] == "Classical Mythology"  # first wins

    people = validated_users.toPandas().set_index("User-ID")
    assert people.loc["3", "Location"] == "porto, v.n.gaia,\nportugal"
    assert people.loc["2", "Age"] == 18.0 and pd.isna(people.loc["5", "Age"])

    merged = merge_ratings(validated, indexed_users, indexed_items, columns)
    # 12 valid ratings, less one unknown ISBN and one unknown user.
    assert merged.count() == 10  # noqa: PLR2004
