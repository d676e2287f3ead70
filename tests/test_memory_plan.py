"""The memory plan: an item family larger than the driver can hold is refused
before any fit, naming the setting, the estimate and the memory."""

from __future__ import annotations

import pytest
import yaml

from book_recommender import memory_plan
from book_recommender.demo_data import bookcrossing_config, generate
from book_recommender.memory_plan import MemoryPlanError, check, memory_bytes
from book_recommender.models.ease import Ease
from book_recommender.models.knn import ItemKnn
from book_recommender.models.rp3 import Rp3Beta
from tests.conftest import PROJECT_ROOT

GIB = 2**30
MACHINE = 24 * GIB


def _driver(env: str = "base") -> int:
    """spark.driver.memory of conf/<env>/spark.yml, in bytes."""
    conf = yaml.safe_load((PROJECT_ROOT / "conf" / env / "spark.yml").read_text())
    return memory_bytes(conf["spark.driver.memory"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4g", 4 * GIB), ("512m", 2**29), ("2048K", 2**21), ("1000", 1000)],
)
def test_memory_settings_are_read_as_the_jvm_reads_them(text, expected):
    assert memory_bytes(text) == expected


def test_an_unreadable_memory_setting_says_so():
    with pytest.raises(ValueError, match="not a JVM memory size: '4 gigs'"):
        memory_bytes("4 gigs")


def test_the_sessions_driver_memory_is_its_setting(spark):
    assert memory_plan.driver_bytes(spark) == _driver("test")


def test_the_15000_book_ease_is_refused_naming_the_setting_and_the_memory():
    """The whole-catalog issue's run: 858 MiB of weights per candidate died in a
    4g driver (TorrentBroadcast); the project's 3g driver refuses them before
    any fit; 5,000 books fit."""
    books = 26_000
    refused = Ease(maxItems=15_000, beta=10.0).footprint(books, parallel=2)
    assert refused.broadcast_bytes == 4 * 15_000**2
    with pytest.raises(MemoryPlanError) as error:
        check([refused], books, _driver(), MACHINE)
    message = str(error.value)
    assert "item_based.ease.max_items = 15000" in message
    assert "would be 858 MiB" in message  # the weights
    assert "at most 512 MiB (1/6)" in message
    assert "spark.driver.memory 3.00 GiB" in message
    assert "nothing was fitted" in message
    check(
        [Ease(maxItems=5_000, beta=10.0).footprint(books, 2)], books, _driver(), MACHINE
    )
    # On data with fewer books a large max_items is only what the data has.
    check([Ease(maxItems=15_000).footprint(3_000, 2)], 3_000, _driver(), MACHINE)


def test_a_100000_book_ease_on_150k_real_shaped_ratings_is_refused():
    """``demo_data --shape bookcrossing --ratings 150000``: its books with a
    rating are far more than dense EASE can hold in memory or broadcast."""
    tables = generate(bookcrossing_config(150_000))
    books = len({row[1] for row in tables.ratings[1:]})
    assert books > 20_000  # noqa: PLR2004
    need = Ease(maxItems=100_000, beta=10.0).footprint(books, parallel=2)
    with pytest.raises(MemoryPlanError) as error:
        check([need], books, _driver(), MACHINE)
    message = str(error.value)
    assert message.count("item_based.ease.max_items = 100000") == 2  # noqa: PLR2004
    assert "broadcast to every Spark task" in message
    assert "GiB in the driver; this machine has 24.00 GiB" in message


def test_neighbour_families_grow_with_the_books_not_their_square():
    books = 300_000
    for family, key, kept in (
        (Rp3Beta(neighbours=100), "rp3", 101),  # and each book's best in-link
        (ItemKnn(neighbours=200), "knn", 200),
    ):
        need = family.footprint(books, parallel=2)
        neighbours = family.getOrDefault("neighbours")
        assert need.broadcast_bytes == books * (kept * 8 + 8)
        assert need.setting == f"item_based.{key}.neighbours = {neighbours}"
        check([need], books, _driver(), MACHINE)
    # Only a neighbour count far past any use is refused.
    with pytest.raises(MemoryPlanError, match="item_based.rp3.neighbours = 5000"):
        check(
            [Rp3Beta(neighbours=5_000).footprint(books, 2)], books, _driver(), MACHINE
        )
