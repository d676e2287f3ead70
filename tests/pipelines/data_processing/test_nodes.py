"""data_processing nodes on hand-built frames with explicit schemas."""

from __future__ import annotations

import random

import pytest
from pyspark.ml.feature import StringIndexer
from pyspark.sql import functions as F
from pyspark.sql.types import (
    FloatType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from book_recommender.columns import ITEM_IDX, ROW_ID, USER_IDX
from book_recommender.params import ConfigurationError, parse
from book_recommender.pipelines.data_processing.indexing import _index
from book_recommender.pipelines.data_processing.nodes import (
    DataValidationError,
    compute_statistics,
    count_join_losses,
    index_items,
    index_users,
    measure_side_information,
    merge_ratings,
    prepare_model_input,
    split_ratings,
    validate_items,
    validate_ratings,
    validate_users,
)
from tests.conftest import data_processing_params, raw_catalog
from tests.test_params import BASE

COLUMNS = {
    "user_id": "User-ID",
    "item_id": "ISBN",
    "item_info": "Book-Title",
    "rating": "Book-Rating",
    "item_author": "Book-Author",
    "user_age": "Age",
}
PARAMS = data_processing_params(
    ratings={"min": 0, "max": 10, "implicit_value": 0, "integer": False},
    users={"age_range": None},
    preparation={"seed": 7},
)
TYPED = parse("data_processing", PARAMS)
ITEM_BASED = BASE["item_based"]


def _strings(*names: str) -> StructType:
    return StructType([StructField(n, StringType(), True) for n in names])


RATINGS_SCHEMA = _strings("User-ID", "ISBN", "Book-Rating")
USERS_SCHEMA = _strings("User-ID", "Location", "Age")
BOOKS_SCHEMA = _strings("ISBN", "Book-Title", "Book-Author")


@pytest.fixture
def raw_ratings(spark):
    rows = [
        ("1", "034545104X", "0"),
        ("1", "0155061224", "5"),
        (" 2 ", "0446520802", " 8 "),  # padded: trimmed, kept
        ("2", "034545104X", "10"),
        ("3", "0155061224", "7"),
        ("3", "9999999999", "9"),  # item not in Books: lost in the join
        ("42", "0155061224", "6"),  # user not in Users: lost in the join
        ("", "0155061224", "5"),  # bad: empty user id
        (None, "0155061224", "5"),  # bad: no user id
        ("4", "", "5"),  # bad: empty item id
        ("4", "0446520802", "ten"),  # bad: not a number
        ("4", "0446520802", "NaN"),  # bad: not a number
        ("4", "034545104X", "11"),  # bad: above max
        ("5", "034545104X", "-1"),  # bad: below min
    ]
    return spark.createDataFrame(rows, RATINGS_SCHEMA)


@pytest.fixture
def raw_users(spark):
    rows = [
        ("1", "nyc, new york, usa", "34.0"),
        ("2", "porto, porto, portugal", ""),
        ("3", "london, england, united kingdom", "abc"),
        ("3", "duplicate row, of user 3", "50.0"),
        ("", "no id", "20.0"),
        ("4", "timmins, ontario, canada", "244.0"),
        ("5", "seattle, washington, usa", None),
    ]
    return spark.createDataFrame(rows, USERS_SCHEMA)


@pytest.fixture
def raw_books(spark):
    rows = [
        ("034545104X", "Flesh Tones: A Novel", "M. J. Rose"),
        ("0155061224", 'Rites of "Passage"', "Judith Rae"),
        ("0446520802", "The Notebook", "Nicholas Sparks"),
        ("0446520802", "The Notebook (duplicate ISBN)", "Nicholas Sparks"),
        (None, "No ISBN", "Nobody"),
    ]
    return spark.createDataFrame(rows, BOOKS_SCHEMA)


# -- validation ------------------------------------------------------------------------


def test_validate_ratings_counts_each_bad_row_exactly(raw_ratings):
    kept, report = validate_ratings(raw_ratings, COLUMNS, TYPED)
    assert report == {
        "read": 14,
        "kept": 7,
        "dropped": {
            "missing_item_id": 1,
            "missing_user_id": 2,
            "rating_not_numeric": 2,
            "rating_out_of_range": 2,
        },
    }
    assert kept.count() == 7
    assert dict(kept.dtypes)["Book-Rating"] == "double"
    assert kept.filter(F.col("User-ID") == "2").count() == 2  # " 2 " was trimmed
    assert raw_ratings.filter(F.col("User-ID") == " 2 ").count() == 1  # input untouched


def test_one_row_per_pair_explicit_first_then_the_last_and_whole_ratings(spark):
    rows = [
        ("1", "A", "10"),
        ("1", "A", "3"),  # the same pair later in the file: this one is kept
        ("2", "A", "4"),
        ("2", "A", "0"),  # implicit: the explicit 4 wins although it came first
        ("3", "B", "0"),
        ("3", "B", "0"),  # two implicit rows: one is kept
        ("4", "B", "7.5"),  # not a whole rating
        ("4", "B", "x"),  # invalid rows never hide a valid duplicate
    ]
    raw = spark.createDataFrame(rows, RATINGS_SCHEMA).coalesce(1)
    params = {**PARAMS, "ratings": {**PARAMS["ratings"], "integer": True}}
    kept, report = validate_ratings(raw, COLUMNS, parse("data_processing", params))
    assert report["dropped"] == {
        "duplicate_pair": 3,
        "rating_not_integer": 1,
        "rating_not_numeric": 1,
    }
    assert sorted((r[0], r[1], r[2]) for r in kept.collect()) == [
        ("1", "A", 3.0),
        ("2", "A", 4.0),
        ("3", "B", 0.0),
    ]
    # Without the integer rule 7.5 is a rating like any other.
    _, lenient = validate_ratings(raw, COLUMNS, TYPED)
    assert "rating_not_integer" not in lenient["dropped"]


def test_ages_outside_the_plausible_range_are_counted_and_kept(raw_users):
    params = {**PARAMS, "users": {"age_range": [5, 100]}}
    users, report = validate_users(raw_users, COLUMNS, parse("data_processing", params))
    assert report["rows_with"]["age_out_of_range"] == 1  # 244.0
    assert users.filter(F.col("Age") == 244.0).count() == 1  # noqa: PLR2004


def test_validate_ratings_names_file_column_and_config_key(spark):
    df = spark.createDataFrame([("1", "x")], _strings("User-ID", "ISBN"))
    with pytest.raises(DataValidationError) as error:
        validate_ratings(df, COLUMNS, TYPED)
    message = str(error.value)
    assert "data/01_raw/Ratings.csv" in message
    assert "'Book-Rating'" in message
    assert "columns.rating" in message
    assert "['User-ID', 'ISBN']" in message


def test_a_semicolon_file_and_a_case_slip_get_a_hint(spark, tmp_path):
    """The original Book-Crossing dump is ';'-separated: read with commas its
    header is one column, and the error says which separator to set; a header
    that differs only in case or quotes is named as the near miss."""
    dump = tmp_path / "BX-Book-Ratings.csv"
    dump.write_text('"User-ID";"ISBN";"Book-Rating"\n"276725";"034545104X";"0"\n')
    raw = spark.read.csv(str(dump), header=True, quote='"', escape='"')
    with pytest.raises(DataValidationError) as error:
        validate_ratings(raw, COLUMNS, TYPED)
    assert "likely separated by ';'" in str(error.value)
    assert "`kedro run --env bookcrossing_dump`" in str(error.value)
    assert "data.csv.sep: ';'" in str(error.value)

    slip = spark.createDataFrame(
        [("1", "x", "5")], _strings("user-id", "ISBN", "Book-Rating")
    )
    with pytest.raises(DataValidationError, match="'user-id' for 'User-ID'"):
        validate_ratings(slip, COLUMNS, TYPED)


def test_a_missing_column_setting_names_the_config_key(raw_ratings):
    columns = {k: v for k, v in COLUMNS.items() if k != "item_id"}
    with pytest.raises(DataValidationError, match=r"columns\.item_id"):
        validate_ratings(raw_ratings, columns, TYPED)


def test_validate_users_drops_missing_and_duplicate_ids_and_parses_age(raw_users):
    users, report = validate_users(raw_users, COLUMNS, TYPED)
    assert report == {
        "read": 7,
        "kept": 5,
        "dropped": {"duplicate_user_id": 1, "missing_user_id": 1},
        "rows_with": {"line_breaks_in_a_field": 0, "undecodable_bytes": 0},
    }
    ages = {r["User-ID"]: r["Age"] for r in users.collect()}
    assert ages == {"1": 34.0, "2": None, "3": None, "4": 244.0, "5": None}
    # The first row of a duplicated id is the one kept.
    location = users.filter(F.col("User-ID") == "3").first()["Location"]
    assert location.startswith("london")


def test_validate_items_requires_the_title_column(spark, raw_books):
    items, report = validate_items(raw_books, COLUMNS, TYPED)
    assert report["dropped"] == {"duplicate_item_id": 1, "missing_item_id": 1}
    assert items.count() == 3
    with pytest.raises(
        DataValidationError, match=r"Books\.csv.*'Book-Title'.*columns\.item_info"
    ):
        validate_items(raw_books.drop("Book-Title"), COLUMNS, TYPED)


# -- indexing and merging ----------------------------------------------------------------


@pytest.fixture
def prepared(raw_ratings, raw_users, raw_books):
    ratings, _ = validate_ratings(raw_ratings, COLUMNS, TYPED)
    users, _ = validate_users(raw_users, COLUMNS, TYPED)
    items, _ = validate_items(raw_books, COLUMNS, TYPED)
    indexed_users = index_users(users, COLUMNS)
    indexed_items = index_items(items, COLUMNS)
    merged = merge_ratings(ratings, indexed_users, indexed_items, COLUMNS)
    return ratings, indexed_users, indexed_items, merged


def test_indexes_are_dense_from_zero(prepared):
    _, indexed_users, indexed_items, _ = prepared
    user_ids = sorted(r[USER_IDX] for r in indexed_users.collect())
    item_ids = sorted(r[ITEM_IDX] for r in indexed_items.collect())
    assert user_ids == list(range(5))
    assert item_ids == list(range(3))
    assert dict(indexed_users.dtypes)[USER_IDX] == "int"


def test_index_numbers_ids_as_spark_string_indexer_does(spark):
    """StringIndexer (most frequent first, ties alphabetically, nulls skipped)
    is the reference: the index is built without it, the ids must not move."""
    rng = random.Random(7)
    ids = [rng.choice(["b", "a", "0x", "0X", "10", "9", "c c"]) for _ in range(60)]
    frame = spark.createDataFrame(
        [(value, n) for n, value in enumerate(ids + [None])], "id string, n long"
    )
    expected = (
        StringIndexer(inputCol="id", outputCol="idx", handleInvalid="skip")
        .fit(frame)
        .transform(frame)
    )
    got = _index(frame, "id", "idx")
    assert got.columns == ["id", "n", "idx"]
    assert dict(got.dtypes)["idx"] == "int"
    assert sorted((r["n"], r["idx"]) for r in got.collect()) == sorted(
        (r["n"], int(r["idx"])) for r in expected.collect()
    )


def test_merge_keeps_known_users_and_items_with_consistent_ids(prepared):
    _, indexed_users, indexed_items, merged = prepared
    rows = merged.collect()
    assert len(rows) == 5  # 7 valid ratings minus unknown item and unknown user
    assert len({r[ROW_ID] for r in rows}) == 5
    user_map = {r["User-ID"]: r[USER_IDX] for r in indexed_users.collect()}
    item_map = {r["ISBN"]: r[ITEM_IDX] for r in indexed_items.collect()}
    for r in rows:
        assert r[USER_IDX] == user_map[r["User-ID"]]
        assert r[ITEM_IDX] == item_map[r["ISBN"]]


def test_count_join_losses(prepared):
    ratings, indexed_users, indexed_items, _ = prepared
    assert count_join_losses(ratings, indexed_users, indexed_items, COLUMNS) == {
        "ratings_validated": 7,
        "ratings_with_unknown_user": 1,
        "ratings_with_unknown_item": 1,
        # Neither unknown id differs from a known one by case or leading zeros
        # (test_quality.py has those that do).
        "ratings_with_unknown_item_known_in_another_case": 0,
        "ratings_with_unknown_user_known_without_leading_zeros": 0,
    }


def test_prepare_model_input_casts_and_samples_by_user(spark, prepared):
    merged = prepared[3]
    full = prepare_model_input(merged, COLUMNS, TYPED)
    assert dict(full.dtypes)["Book-Rating"] == "float"
    assert full.count() == 5
    params = {
        **PARAMS,
        "preparation": {**PARAMS["preparation"], "is_sample": True, "sample_rows": 2},
    }
    sample = prepare_model_input(
        merged, COLUMNS, parse("data_processing", params)
    ).collect()
    lowest_two = sorted((r[USER_IDX], r[ITEM_IDX]) for r in merged.collect())[:2]
    assert sorted((r[USER_IDX], r[ITEM_IDX]) for r in sample) == lowest_two
    bad = {
        **PARAMS,
        "preparation": {**PARAMS["preparation"], "is_sample": True, "sample_rows": 0},
    }
    with pytest.raises(ConfigurationError, match="sample_rows"):
        prepare_model_input(merged, COLUMNS, parse("data_processing", bad))


# -- the split ---------------------------------------------------------------------------

MODEL_INPUT_SCHEMA = StructType(
    [
        StructField(USER_IDX, IntegerType(), False),
        StructField(ITEM_IDX, IntegerType(), False),
        StructField("Book-Rating", FloatType(), False),
        StructField(ROW_ID, IntegerType(), False),
    ]
)


@pytest.fixture(scope="module")
def model_input(spark):
    """11 rating values x 2,000 rows each, zeros included: large enough for shares."""
    rows = [(i % 997, i % 1009, float(i % 11), i) for i in range(22_000)]
    return spark.createDataFrame(rows, MODEL_INPUT_SCHEMA)


def test_split_is_disjoint_covers_explicit_rows_and_leaves_out_zeros(model_input):
    train, test = split_ratings(model_input, COLUMNS, TYPED)
    explicit = model_input.filter(F.col("Book-Rating") != 0)
    assert train.join(test, on=ROW_ID, how="inner").count() == 0
    union = train.unionByName(test)
    assert union.exceptAll(explicit).count() == 0
    assert explicit.exceptAll(union).count() == 0
    assert train.filter(F.col("Book-Rating") == 0).count() == 0
    assert test.filter(F.col("Book-Rating") == 0).count() == 0


def test_split_is_stratified_by_rating_value(model_input):
    # 2,000 rows a value: the train share's sd is 0.009, so 0.03 is > 3 sd.
    train, _ = split_ratings(model_input, COLUMNS, TYPED)
    shares = {
        r["Book-Rating"]: r["count"] / 2000
        for r in train.groupBy("Book-Rating").count().collect()
    }
    assert set(shares) == {float(v) for v in range(1, 11)}
    for value, share in shares.items():
        assert share == pytest.approx(0.8, abs=0.03), value


def test_split_is_reproducible_with_its_seed(model_input):
    first, _ = split_ratings(model_input, COLUMNS, TYPED)
    again, _ = split_ratings(model_input, COLUMNS, TYPED)
    assert first.exceptAll(again).count() == 0 and again.exceptAll(first).count() == 0


def test_split_rejects_a_fraction_outside_zero_one(model_input):
    params = {**PARAMS, "preparation": {**PARAMS["preparation"], "train_fraction": 1.0}}
    with pytest.raises(ConfigurationError, match="train_fraction"):
        split_ratings(model_input, COLUMNS, parse("data_processing", params))


# -- statistics --------------------------------------------------------------------------


def test_statistics_on_a_tiny_model_input(spark):
    rows = [
        (0, 0, 0.0, 1),
        (0, 1, 8.0, 2),
        (1, 1, 8.0, 3),
        (2, 3, 5.0, 4),
        (1, 0, 5.0, 5),
    ]
    model_input = spark.createDataFrame(rows, MODEL_INPUT_SCHEMA)
    train = model_input.filter(F.col(ROW_ID).isin(2, 4, 5))
    test = model_input.filter(F.col(ROW_ID) == 3)
    report = {"read": 1, "kept": 1, "dropped": {}}
    joins = {
        "ratings_validated": 5,
        "ratings_with_unknown_user": 0,
        "ratings_with_unknown_item": 0,
    }
    side = {"columns": [], "test_share_sharing_a_value": None, "per_column": {}}
    quality = {"ratings": {"read": 1, "lost": 0}}
    stats = compute_statistics(
        report, report, report, joins, side, quality, model_input, train, test,
        COLUMNS, TYPED,
    )  # fmt: skip
    mi = stats["model_input"]
    assert mi["interactions"] == 5
    assert mi["implicit_interactions"] == 1 and mi["explicit_interactions"] == 4
    assert (mi["users"], mi["items"]) == (3, 3)
    assert mi["sparsity"] == pytest.approx(1 - 5 / 9)
    assert (mi["max_user_id"], mi["max_item_id"]) == (2, 3)
    assert mi["ratings_per_value"] == {"0": 1, "5": 2, "8": 2}
    assert mi["rating_values"] == ["0", "5", "8"]
    assert stats["split"]["train_rows"] == 3 and stats["split"]["test_rows"] == 1
    assert stats["split"]["train_share_per_value"] == {"5": 1.0, "8": 0.5}
    assert stats["joins"] == joins
    assert stats["side_information"] == side
    assert stats["data_quality"] == quality


def test_side_information_share_counts_test_books_sharing_an_author(spark):
    """A test interaction counts when its reader has, outside test, another
    book with the same normalized author (implicit rows included); its own
    book, other readers' books and other columns' values do not count."""
    rows = [
        (0, 0, 0.0, 1),  # user 0 saw book 0 (implicit): King
        (0, 1, 8.0, 2),  # test: book 1, " STEPHEN  KING." = King -> shares
        (1, 2, 8.0, 3),  # test: book 2, Atwood; user 1 has no other Atwood
        (1, 3, 5.0, 4),  # train: book 3, Lee, publisher Pocket like book 2
        (2, 0, 5.0, 5),  # test: book 0, King; user 2 saw book 1 (King) -> shares
        (2, 1, 7.0, 6),
    ]
    model_input = spark.createDataFrame(rows, MODEL_INPUT_SCHEMA)
    test = model_input.filter(F.col(ROW_ID).isin(2, 3, 5))
    items = spark.createDataFrame(
        [
            (0, "Stephen King", "Bantam"),
            (1, " STEPHEN  KING.", "Vintage"),
            (2, "Margaret Atwood", "Pocket"),
            (3, "Harper Lee", "Pocket"),
        ],
        [ITEM_IDX, "Book-Author", "Publisher"],
    )

    def side(columns: list[str]):
        weights = {
            "knn": {"side_weight": [0.0]},
            "rp3": {"side_weight": [0.0]},
            "ease": {"beta": [0.0]},
        }
        return parse(
            "item_based",
            {
                **ITEM_BASED,
                "side_information": columns,
                "knn": {**ITEM_BASED["knn"], **weights["knn"]},
                "rp3": {**ITEM_BASED["rp3"], **weights["rp3"]},
                "ease": {**ITEM_BASED["ease"], **weights["ease"]},
            },
        )

    report = measure_side_information(model_input, test, items, side(["Book-Author"]))
    assert report["test_share_sharing_a_value"] == pytest.approx(2 / 3, abs=1e-4)
    both = measure_side_information(
        model_input, test, items, side(["Book-Author", "Publisher"])
    )
    assert both["per_column"] == {
        "Book-Author": pytest.approx(2 / 3, abs=1e-4),
        "Publisher": pytest.approx(1 / 3, abs=1e-4),
    }
    assert both["test_share_sharing_a_value"] == 1.0
    none = measure_side_information(model_input, test, items, side([]))
    assert none["test_share_sharing_a_value"] is None


def test_the_original_dump_is_read_by_its_environment_alone(spark, tmp_path):
    """The original Book-Crossing dump: ';'-separated, Latin-1, quotes inside
    fields escaped with a backslash. `--env bookcrossing_dump` reads it as
    written: accents and quotes intact, no replacement character, no line
    swallowed by a quote."""
    books = (
        '"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher"\n'
        '"0195153448";"Classical Mythology";"Mark P. O. Morford";"2002";"Oxford"\n'
        '"3442353866";"Der Fluch der Kaiserin";"Ludwig Gaña";"2001";"Goldmann"\n'
        '"0440234743";"The \\"Testament\\": A Novel";"John Grisham";"1999";"Dell"\n'
        '"2070423204";"L\'Étranger";"Albert Camus";"1999";"Gallimard"\n'
    )
    ratings = (
        '"User-ID";"ISBN";"Book-Rating"\n'
        '"276725";"0195153448";"0"\n"276726";"0440234743";"5"\n'
        '"276727";"2070423204";"9"\n"276727";"3442353866";"7"\n'
    )
    users = (
        '"User-ID";"Location";"Age"\n"276725";"tyler, texas, usa";"NULL"\n'
        '"276726";"münchen, bayern, germany";"34"\n"276727";"zürich, switzerland";NULL\n'
    )
    for name, text in [
        ("raw_books", books),
        ("raw_ratings", ratings),
        ("raw_users", users),
    ]:
        (tmp_path / name).write_bytes(text.encode("latin-1"))
    catalog = raw_catalog("bookcrossing_dump", tmp_path)
    params = parse("data_processing", PARAMS)
    items, report = validate_items(catalog.load("raw_books"), COLUMNS, params)
    titles = dict(items.select("ISBN", "Book-Title").collect())
    assert titles["0440234743"] == 'The "Testament": A Novel'
    assert titles["2070423204"] == "L'Étranger"
    authors = dict(items.select("ISBN", "Book-Author").collect())
    assert authors["3442353866"] == "Ludwig Gaña"
    assert len(titles) == 4  # noqa: PLR2004
    assert report["rows_with"]["undecodable_bytes"] == 0
    assert report["rows_with"]["line_breaks_in_a_field"] == 0
    rated, _ = validate_ratings(catalog.load("raw_ratings"), COLUMNS, params)
    assert rated.count() == 4  # noqa: PLR2004
    people, _ = validate_users(catalog.load("raw_users"), COLUMNS, params)
    places = {r["User-ID"]: r["Location"] for r in people.collect()}
    assert places["276726"] == "münchen, bayern, germany"
