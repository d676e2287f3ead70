"""Typed data_science settings: what they accept, and errors that name the key."""

from __future__ import annotations

import copy

import pytest
import yaml

from book_recommender.params import ConfigurationError, check_parameters, parse
from tests.conftest import PROJECT_ROOT

BASE = yaml.safe_load(
    (PROJECT_ROOT / "conf/base/parameters_data_science.yml").read_text()
)
SCORING = yaml.safe_load(
    (PROJECT_ROOT / "conf/base/parameters_scoring.yml").read_text()
)["scoring"]


def _with(section: str, path: str, value):
    params = copy.deepcopy(BASE[section])
    *parents, last = path.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value
    return params


def test_base_settings_parse():
    als = parse("als", BASE["als"])
    assert als.ranking.alpha == sorted(als.ranking.alpha)
    assert all(isinstance(a, float) and a > 0 for a in als.ranking.alpha)
    assert parse("evaluation", BASE["evaluation"]).ranking_key == "ndcg_at_10"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([1, 5], [1.0, 5.0]),
        (8, [8.0]),
        ("1 5 20", [1.0, 5.0, 20.0]),
        ("0.5;2", [0.5, 2.0]),
    ],
)
def test_a_grid_axis_is_a_list_a_number_or_a_string_of_numbers(value, expected):
    als = parse("als", _with("als", "ranking.alpha", value))
    assert als.ranking.alpha == expected


@pytest.mark.parametrize(
    ("section", "path", "value", "named", "found"),
    [
        ("als", "ranking.rank", [], "als.ranking.rank", "[]"),
        ("als", "ranking.rank", "ten", "als.ranking.rank", "'ten'"),
        ("als", "rating.rank", [4, 0], "als.rating.rank[1]", "0"),
        ("als", "rating.reg_param", [-1], "als.rating.reg_param[0]", "-1"),
        ("als", "ranking.alpha", [True], "als.ranking.alpha", "[True]"),
        ("als", "rating.kind", "implicit", "als.rating.kind", "'implicit'"),
        ("tuning", "method", "Bogus", "tuning.method", "'Bogus'"),
        ("tuning", "train_ratio", 1.5, "tuning.train_ratio", "1.5"),
        ("evaluation", "k", 0, "evaluation.k", "0"),
        ("evaluation", "ranking_metric", "rmse", "evaluation.ranking_metric", "'rmse'"),
    ],
)
def test_a_bad_value_names_its_key_and_what_was_found(
    section, path, value, named, found
):
    with pytest.raises(ConfigurationError) as error:
        parse(section, _with(section, path, value))
    message = str(error.value)
    assert f"{named}: " in message and f"(found {found})" in message
    assert "conf/base/parameters_data_science.yml" in message


def test_old_and_unknown_keys_are_refused_by_name():
    als = {**BASE["als"], "implicit_prefs": True, "biased": True}
    with pytest.raises(ConfigurationError) as error:
        parse("als", als)
    assert "als.implicit_prefs" in str(error.value)
    assert "als.biased" in str(error.value)


def test_the_environment_in_force_is_named():
    with pytest.raises(ConfigurationError, match="overridden by conf/movielens/"):
        check_parameters({"evaluation": {**BASE["evaluation"], "k": 0}}, "movielens")


def test_every_family_disabled_is_a_contradiction():
    als = _with("als", "ranking.enabled", False)
    als["rating"]["enabled"] = False
    item_based = copy.deepcopy(BASE["item_based"])
    check_parameters({"als": als, "item_based": item_based})  # item families on
    for family in ("knn", "rp3", "ease"):
        item_based[family]["enabled"] = False
    with pytest.raises(ConfigurationError) as error:
        check_parameters({"als": als, "item_based": item_based})
    for key in (
        "als.ranking",
        "als.rating",
        "item_based.knn",
        "item_based.rp3",
        "item_based.ease",
    ):
        assert f"{key}.enabled" in str(error.value)


def test_scoring_and_minimum_data_settings_are_checked_at_start_up_too():
    with pytest.raises(ConfigurationError) as error:
        check_parameters({"scoring": {"k": 0, "exclude_rated": True}})
    assert "scoring.k: " in str(error.value)
    assert "conf/base/parameters_scoring.yml" in str(error.value)
    minimum = {"interactions": 1, "train_rows": 0, "test_rows": 1}
    with pytest.raises(ConfigurationError) as error:
        check_parameters({"data_processing": {"minimum": minimum}})
    assert "data_processing.minimum.train_rows: " in str(error.value)
    assert "conf/base/parameters_data_processing.yml" in str(error.value)
    # The files as they are parse.
    for name in ("parameters_scoring.yml", "parameters_data_processing.yml"):
        check_parameters(
            yaml.safe_load((PROJECT_ROOT / "conf/base" / name).read_text())
        )


@pytest.mark.parametrize("key", ["knn.side_weight", "rp3.side_weight", "ease.beta"])
def test_a_side_weight_without_side_columns_is_refused(key):
    item_based = _with("item_based", "side_information", [])
    family, axis = key.split(".")
    item_based[family][axis] = [0.0, 2.0]
    axes = {"knn": "side_weight", "rp3": "side_weight", "ease": "beta"}
    for other, other_axis in axes.items():
        if other != family:
            item_based[other][other_axis] = [0.0]
    with pytest.raises(ConfigurationError) as error:
        parse("item_based", item_based)
    assert f"item_based.{key} has [2.0]" in str(error.value)
    assert "item_based.side_information is empty" in str(error.value)
    item_based[family][axis] = [0.0]
    parse("item_based", item_based)  # no weight, no side columns: fine


def test_settings_that_would_run_until_the_machine_gives_out_are_refused_at_start_up():
    """An ALS rank of 512 or an evaluation k of 100,000 is refused before any
    data is read, naming the key and the bound."""
    settings = copy.deepcopy(BASE)
    settings["als"]["ranking"]["rank"] = [512]
    with pytest.raises(ConfigurationError) as error:
        check_parameters(settings)
    assert "als.ranking.rank" in str(error.value) and "256" in str(error.value)
    settings = copy.deepcopy(BASE)
    settings["evaluation"]["k"] = 100_000
    with pytest.raises(ConfigurationError) as error:
        check_parameters(settings)
    assert "evaluation.k" in str(error.value) and "1000" in str(error.value)
