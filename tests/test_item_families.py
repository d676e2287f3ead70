"""Item-kNN, RP3beta and EASE against small numpy references: the same similarity, the
same weights and the same served top-10 lists (seen books out, ties by item id,
short lists topped up and cold users served by the popular fallback)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from book_recommender.columns import COLD_START, ITEM_IDX, USER_IDX
from book_recommender.item_topk import SparseWeights, rank_history_block, top_of_rows
from book_recommender.metrics import RANK, SCORE
from book_recommender.models import items as items_module
from book_recommender.models import popularity_scores
from book_recommender.models import rp3 as rp3_module
from book_recommender.models.ease import EaseModel, ease_gram, fit_ease
from book_recommender.models.items import SIDE, NeighbourWeights, side_information
from book_recommender.models.knn import ItemKnnModel, fit_item_knn
from book_recommender.models.rp3 import fit_rp3, walk_matrices
from book_recommender.ranking import (
    MODEL,
    item_table,
    top_k_served,
    top_k_served_many,
)
from book_recommender.registry import export_bundle
from book_recommender.topk import ItemTable

N_USERS, N_ITEMS, K = 60, 40, 10
K1, B = 1.2, 0.75


@pytest.fixture(scope="module")
def interactions() -> pd.DataFrame:
    """Seeded (user, item) pairs with a popularity skew; user 0 reads one book
    nobody else reads, users 60-61 are unknown to the model (in no pair)."""
    rng = np.random.default_rng(3)
    weights = 1.0 / np.arange(1, N_ITEMS + 1)
    pairs = {
        (int(u), int(i))
        for u in range(1, N_USERS)
        for i in rng.choice(
            N_ITEMS - 1, size=rng.integers(1, 12), p=weights[:-1] / weights[:-1].sum()
        )
    }
    pairs.add((0, N_ITEMS - 1))
    return pd.DataFrame(sorted(pairs), columns=[USER_IDX, ITEM_IDX])


@pytest.fixture(scope="module")
def frame(spark, interactions):
    return spark.createDataFrame(interactions, f"{USER_IDX} int, {ITEM_IDX} int")


def _matrix(interactions: pd.DataFrame) -> np.ndarray:
    x = np.zeros((N_USERS, N_ITEMS))
    x[interactions[USER_IDX], interactions[ITEM_IDX]] = 1.0
    return x


def _similarity(x: np.ndarray, kind: str, neighbours: int) -> np.ndarray:
    """Item x item similarity, each row cut to its ``neighbours`` best (ties:
    lower item), the item itself excluded."""
    readers = x.sum(axis=0)
    if kind == "cosine":
        w = x / np.sqrt(np.where(readers > 0, readers, 1.0))
    else:
        books = x.sum(axis=1)
        n_items = int((readers > 0).sum())
        idf = np.log(n_items) - np.log1p(books)
        length = (1 - B) + B * readers / readers[readers > 0].mean()
        w = x * ((K1 + 1) / (K1 * length + 1))[None, :] * idf[:, None]
    s = w.T @ w
    np.fill_diagonal(s, 0.0)
    kept = np.zeros_like(s)
    for i in range(len(s)):
        order = np.lexsort((np.arange(len(s)), -s[i]))
        best = [j for j in order if s[i, j] > 0][:neighbours]
        kept[i, best] = s[i, best]
    return kept


def _ease(
    x: np.ndarray, l2: float, max_items: int, beta: float = 0.0, a=None
) -> tuple[np.ndarray, np.ndarray]:
    """EASE over the most read books; with ``a`` (authors x items incidence),
    the Gram matrix gains ``beta * a'a``."""
    counts = x.sum(axis=0)
    top = np.sort(np.lexsort((np.arange(N_ITEMS), -counts))[:max_items])
    top = top[counts[top] > 0]
    g = x[:, top].T @ x[:, top] + l2 * np.eye(len(top))
    if a is not None:
        g += beta * a[:, top].T @ a[:, top]
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return top, b


def _reference_lists(
    scores: np.ndarray, scored: np.ndarray, x: np.ndarray, users: list[int]
) -> dict[int, list[int]]:
    """Top K unseen items by score among ``scored`` (bool, users x items), ties
    by item; topped up with the popular unseen items (ties by item)."""
    popularity = x.sum(axis=0)
    popular = [
        i for i in np.lexsort((np.arange(N_ITEMS), -popularity)) if popularity[i]
    ]
    lists = {}
    for u in users:
        seen = x[u] > 0 if u < N_USERS else np.zeros(N_ITEMS, bool)
        mine = [
            int(i)
            for i in np.lexsort((np.arange(N_ITEMS), -scores[u]))
            if scored[u, i] and not seen[i]
        ][:K]
        mine += [int(i) for i in popular if not seen[i] and i not in mine]
        lists[u] = mine[:K]
    return lists


def _stage(weights):
    """The fitted family model holding item-kNN or EASE ``weights``."""
    if isinstance(weights, NeighbourWeights):
        return ItemKnnModel.of(weights)
    return EaseModel.of(weights)


def _served(model, spark, frame) -> tuple[dict[int, list[int]], dict[int, bool]]:
    users = spark.range(N_USERS + 2).select(F.col("id").cast("int").alias(USER_IDX))
    rows = top_k_served(
        _stage(model), users, frame, popularity_scores(frame), K
    ).orderBy(USER_IDX, RANK)
    lists: dict[int, list[int]] = {}
    cold: dict[int, bool] = {}
    for row in rows.collect():
        lists.setdefault(row[USER_IDX], []).append(row[ITEM_IDX])
        cold[row[USER_IDX]] = row[COLD_START]
    return lists, cold


def _assert_ease_serves(model, top, b, x, spark, frame) -> dict[int, bool]:
    """``model`` holds the reference weights ``b`` over ``top`` and serves the
    reference lists; returns who was served cold."""
    np.testing.assert_array_equal(model.item_ids, top)
    np.testing.assert_allclose(model.matrix, b, rtol=1e-4, atol=1e-6)
    scores = np.full((N_USERS + 2, N_ITEMS), -np.inf)
    scores[:N_USERS, top] = x[:, top] @ b
    scored = np.zeros_like(scores, dtype=bool)
    scored[:N_USERS, top] = x[:, top].sum(axis=1, keepdims=True) > 0
    lists, cold = _served(model, spark, frame)
    assert lists == _reference_lists(scores, scored, x, list(range(N_USERS + 2)))
    return cold


@pytest.mark.parametrize(("kind", "neighbours"), [("cosine", 5), ("bm25", 8)])
def test_item_knn_serves_the_numpy_reference_lists(
    spark, frame, interactions, kind, neighbours
):
    x = _matrix(interactions)
    expected = _similarity(x, kind, neighbours)
    model = fit_item_knn(frame, kind, neighbours, 1000, K1, B, seed=1)
    got = np.zeros((N_ITEMS, N_ITEMS))
    rows = np.repeat(np.arange(len(model.item_ids)), np.diff(model.indptr))
    got[model.item_ids[rows], model.item_ids[model.indices]] = model.data
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    scores = np.vstack([x @ expected, np.zeros((2, N_ITEMS))])
    history = np.vstack([x, np.zeros((2, N_ITEMS))])
    scored = (history @ (expected > 0)) > 0
    users = list(range(N_USERS + 2))
    lists, cold = _served(model, spark, frame)
    assert lists == _reference_lists(scores, scored, x, users)
    # Cold: the unknown users and user 0, whose one book has no co-reader.
    assert sorted(u for u, c in cold.items() if c) == [0, N_USERS, N_USERS + 1]


def test_ease_serves_the_numpy_reference_lists(spark, frame, interactions):
    x = _matrix(interactions)
    top, b = _ease(x, l2=5.0, max_items=25)
    cold = _assert_ease_serves(
        fit_ease(frame, l2=5.0, max_items=25), top, b, x, spark, frame
    )
    # Only books of the subset are ranked by the model; the rest are fallback.
    assert cold[N_USERS] and cold[0]  # user 0's only book is outside the subset


def test_a_prolific_reader_adds_only_a_sample_of_their_books(spark):
    """One reader with 6 books, max_user_items 3: only pairs among 3 of them."""
    frame = spark.createDataFrame(
        [(1, i) for i in range(6)] + [(2, 0), (2, 1)],
        f"{USER_IDX} int, {ITEM_IDX} int",
    )
    capped = fit_item_knn(frame, "cosine", 10, 3, K1, B, seed=5)
    full = fit_item_knn(frame, "cosine", 10, 6, K1, B, seed=5)
    pairs = lambda m: {  # noqa: E731
        (int(m.item_ids[r]), int(m.item_ids[c]))
        for r, c in zip(
            np.repeat(np.arange(len(m.item_ids)), np.diff(m.indptr)),
            m.indices,
            strict=True,
        )
    }
    assert len(pairs(full)) == 6 * 5
    reader_one = pairs(capped) - {(0, 1), (1, 0)}
    books = {i for pair in reader_one for i in pair}
    assert len(books) <= 3 and len(reader_one) == len(books) * (len(books) - 1)
    assert (0, 1) in pairs(capped)  # reader 2 has only 2 books: never sampled


@pytest.mark.parametrize("family", ["knn", "ease"])
def test_the_bundle_serves_the_lists_spark_evaluates(spark, frame, family):
    model = (
        fit_item_knn(frame, "bm25", 6, 1000, K1, B, seed=1)
        if family == "knn"
        else fit_ease(frame, l2=5.0, max_items=25)
    )
    lists, _ = _served(model, spark, frame)
    users = (
        frame.select(USER_IDX)
        .distinct()
        .withColumn("User-ID", F.col(USER_IDX).cast("string"))
    )
    items = (
        frame.select(ITEM_IDX)
        .distinct()
        .withColumn("ISBN", F.col(ITEM_IDX).cast("string"))
    )
    columns = {"user_id": "User-ID", "item_id": "ISBN", "item_info": None}
    bundle = export_bundle(_stage(model), frame, users, items, columns, K)
    ranked = pd.concat(list(bundle.top_k(np.arange(len(bundle.users)), K)))
    ranked["user"] = bundle.users["user_idx"].to_numpy()[ranked["request"]]
    ranked["item"] = bundle.table.ids[ranked["position"]]
    served = {
        int(u): group.sort_values(RANK)["item"].tolist()
        for u, group in ranked.groupby("user")
    }
    assert served == {u: items for u, items in lists.items() if u < N_USERS}
    assert ranked[SCORE].isna().sum() > 0  # topped-up entries carry no score
    distinct = frame.select(ITEM_IDX).distinct().count()
    assert len(item_table(_stage(model), popularity_scores(frame)).ids) == distinct


@pytest.mark.parametrize("ties", [False, True])
def test_top_of_rows_keeps_each_rows_best_ties_to_the_lower_column(ties):
    rng = np.random.default_rng(7)
    lengths = rng.geometric(0.02, 300) - 1  # some rows far longer than k
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.concatenate([rng.permutation(2000)[:n] for n in lengths])
    values = (rng.integers(0, 4, len(rows)) if ties else rng.random(len(rows))).astype(
        np.float32
    )
    k = 12
    order = np.lexsort((cols, -values, rows))
    place = np.empty(len(rows), np.int64)
    place[order] = np.arange(len(rows)) - np.searchsorted(rows[order], rows[order])
    expected = place < k
    np.testing.assert_array_equal(
        top_of_rows(rows, cols, values, len(lengths), k), expected
    )


@pytest.mark.parametrize("kind", ["cosine", "bm25"])
def test_fewer_neighbours_cut_from_a_wider_fit_equal_their_own_fit(frame, kind):
    wide = fit_item_knn(frame, kind, 12, 1000, K1, B, seed=1)
    for neighbours in (1, 4):
        own = fit_item_knn(frame, kind, neighbours, 1000, K1, B, seed=1)
        cut = wide.cut(neighbours)
        np.testing.assert_array_equal(cut.indptr, own.indptr)
        np.testing.assert_array_equal(cut.indices, own.indices)
        np.testing.assert_array_equal(cut.data, own.data)


def test_seen_books_are_ranked_again_only_when_asked():
    """W: 0 -> 1 (0.5), 1 -> 0 (0.25), 1 -> 2 (0.125); a reader of 0 and 1."""
    table = ItemTable.build(
        np.arange(3), np.zeros((3, 0), np.float32), np.arange(3), np.ones(3)
    )
    weights = SparseWeights(
        indptr=np.array([0, 1, 3, 3]),
        indices=np.array([1, 0, 2], np.int32),
        data=np.array([0.5, 0.25, 0.125], np.float32),
    )
    seen = (np.array([0, 0]), np.array([0, 1]))
    for exclude, expected in ((True, [2]), (False, [1, 0, 2])):
        rows, cols, rank, scores, cold = rank_history_block(
            table, weights, 1, *seen, k=3, exclude_seen=exclude
        )
        assert cols[np.isfinite(scores)].tolist() == expected
        assert not cold.any()


# Seven authors over the items, spelt differently from book to book.
SPELLINGS = ("J.R.R. Tolkien", "j. r. r. tolkien", "JRR  TOLKIEN")


def _author_of(item: int) -> str | None:
    if item % 9 == 8:  # noqa: PLR2004
        return None if item % 2 else "  "  # no author: no side information
    author = item % 7
    return SPELLINGS[item % 3] if author == 0 else f"Author-{author}"


@pytest.fixture(scope="module")
def side(spark):
    items = spark.createDataFrame(
        [(i, _author_of(i)) for i in range(N_ITEMS)],
        f"{ITEM_IDX} int, `Book-Author` string",
    )
    return side_information(items, ["Book-Author"])


def test_side_information_is_normalized_and_skips_empty_values(side):
    values = {r[ITEM_IDX]: r[SIDE] for r in side.collect()}
    assert {values[i] for i in range(0, N_ITEMS, 7) if i % 9 != 8} == {  # noqa: PLR2004
        "Book-Author=jrrtolkien"
    }
    assert all(i not in values for i in range(N_ITEMS) if i % 9 == 8)  # noqa: PLR2004
    assert len(set(values.values())) == 7  # noqa: PLR2004


def test_ease_with_side_information_serves_the_numpy_reference_lists(
    spark, frame, interactions, side
):
    x = _matrix(interactions)
    top, b = _ease(x, l2=5.0, max_items=25, beta=3.0, a=_authors())
    gram = ease_gram(frame, max_items=25, side=side)
    model = gram.model(5.0, beta=3.0)
    assert model.matrix.flags.c_contiguous  # scoring gathers its rows
    _assert_ease_serves(model, top, b, x, spark, frame)
    lists, _ = _served(model, spark, frame)
    # The author term changes what is served; beta 0 is the plain EASE exactly.
    plain = fit_ease(frame, l2=5.0, max_items=25)
    assert not np.allclose(plain.matrix, model.matrix)
    np.testing.assert_array_equal(gram.model(5.0, beta=0.0).matrix, plain.matrix)
    assert _served(plain, spark, frame)[0] != lists


def _authors() -> np.ndarray:
    """The side fixture's authors x items incidence."""
    a = np.zeros((7, N_ITEMS))
    for i in range(N_ITEMS):
        if i % 9 != 8:  # noqa: PLR2004
            a[i % 7, i] = 1.0
    return a


@pytest.mark.parametrize("kind", ["cosine", "bm25"])
def test_item_knn_with_side_information_serves_the_numpy_reference_lists(
    spark, frame, interactions, side, kind
):
    """Similarity + 0.5 x the authors two books share (books with a reader)."""
    x = _matrix(interactions)
    read = x.sum(axis=0) > 0
    a = _authors() * read[None, :]
    plain = _similarity(x, kind, N_ITEMS)  # every neighbour
    shared = 0.5 * (a.T @ a)
    np.fill_diagonal(shared, 0.0)
    full = plain + shared
    expected = np.zeros_like(full)
    for i in range(N_ITEMS):
        order = np.lexsort((np.arange(N_ITEMS), -full[i]))
        best = [j for j in order if full[i, j] > 0][:6]
        expected[i, best] = full[i, best]
    model = fit_item_knn(
        frame, kind, 6, 1000, K1, B, seed=1, side=side, side_weight=0.5
    )
    got = np.zeros((N_ITEMS, N_ITEMS))
    rows = np.repeat(np.arange(len(model.item_ids)), np.diff(model.indptr))
    got[model.item_ids[rows], model.item_ids[model.indices]] = model.data
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    scores = np.vstack([x @ expected, np.zeros((2, N_ITEMS))])
    scored = (np.vstack([x, np.zeros((2, N_ITEMS))]) @ (expected > 0)) > 0
    lists, _ = _served(model, spark, frame)
    assert lists == _reference_lists(scores, scored, x, list(range(N_USERS + 2)))
    # Weight 0 is the plain family exactly.
    zero = fit_item_knn(frame, kind, 6, 1000, K1, B, seed=1, side=side, side_weight=0)
    own = fit_item_knn(frame, kind, 6, 1000, K1, B, seed=1)
    np.testing.assert_array_equal(zero.indices, own.indices)
    np.testing.assert_array_equal(zero.data, own.data)
    assert _served(own, spark, frame)[0] != lists


def test_models_ranked_in_one_pass_serve_what_each_serves_alone(spark, frame):
    """Tuning ranks a shared-fit group in one pass: each model's rows are its
    own lists, and the metrics of the pass are those of one model at a time."""
    knn = fit_item_knn(frame, "cosine", 20, 500, K1, B, seed=1)
    models = [knn, knn.cut(5), fit_ease(frame, 10.0, N_ITEMS)]
    users = spark.range(N_USERS + 2).select(F.col("id").cast("int").alias(USER_IDX))
    together = (
        top_k_served_many(
            [_stage(m) for m in models], users, frame, popularity_scores(frame), K
        )
        .toPandas()
        .sort_values([MODEL, USER_IDX, RANK], ignore_index=True)
    )
    assert sorted(together[MODEL].unique()) == [0, 1, 2]
    for index, model in enumerate(models):
        alone = (
            top_k_served(_stage(model), users, frame, popularity_scores(frame), K)
            .toPandas()
            .sort_values([USER_IDX, RANK], ignore_index=True)
        )
        mine = together[together[MODEL] == index].drop(columns=MODEL)
        pd.testing.assert_frame_equal(mine.reset_index(drop=True), alone)


def _rp3(
    x: np.ndarray,
    alpha: float,
    beta: float,
    neighbours: int,
    min_readers: int,
    a: np.ndarray | None = None,
    weight: float = 0.0,
) -> np.ndarray:
    """RP3beta by its definition on dense matrices: the walk's transition
    probabilities over readers (and authors as readers whose edges weigh
    ``weight``), raised to ``alpha``, the popularity penalty, then each row's
    ``neighbours`` best (ties: the lower book) and each column's best row
    (ties: the lower book), so that no reachable book is pruned away."""
    read = x.sum(axis=0) > 0
    graph = x if a is None else np.vstack([x, weight * a * read[None, :]])
    out_of_reader = graph.sum(axis=1, keepdims=True)
    out_of_book = graph.sum(axis=0, keepdims=True)
    to_book = graph / np.where(out_of_reader > 0, out_of_reader, 1.0)
    to_reader = (graph / np.where(out_of_book > 0, out_of_book, 1.0)).T
    walk = to_reader**alpha @ to_book**alpha
    walk *= np.where(out_of_book > 0, out_of_book, 1.0) ** -beta
    walk[:, x.sum(axis=0) < min_readers] = 0.0
    np.fill_diagonal(walk, 0.0)
    walk = walk.astype(np.float32)  # the kept precision: equal weights tie
    kept = np.zeros_like(walk)
    for i in range(len(walk)):
        order = np.lexsort((np.arange(len(walk)), -walk[i]))
        best = [j for j in order if walk[i, j] > 0][:neighbours]
        kept[i, best] = walk[i, best]
    for j in np.flatnonzero(walk.max(axis=0) > 0):
        i = int(np.argmax(walk[:, j]))  # the first of the column's best
        kept[i, j] = walk[i, j]
    return kept


def _dense(model: NeighbourWeights) -> np.ndarray:
    got = np.zeros((N_ITEMS, N_ITEMS))
    rows = np.repeat(np.arange(len(model.item_ids)), np.diff(model.indptr))
    got[model.item_ids[rows], model.item_ids[model.indices]] = model.data
    return got


@pytest.mark.parametrize(
    ("alpha", "beta", "min_readers", "weight"),
    [(1.0, 0.0, 1, 0.0), (0.7, 0.4, 2, 0.0), (1.0, 0.2, 2, 3.0)],
)
def test_rp3beta_serves_the_numpy_reference_lists(
    spark, frame, interactions, side, alpha, beta, min_readers, weight
):
    x = _matrix(interactions)
    expected = _rp3(x, alpha, beta, 6, min_readers, _authors(), weight)
    model = fit_rp3(
        frame, alpha, beta, 6, 1000, min_readers, seed=1, side=side, side_weight=weight
    )
    np.testing.assert_allclose(_dense(model), expected, rtol=1e-5, atol=1e-7)
    scores = np.vstack([x @ expected, np.zeros((2, N_ITEMS))])
    scored = (np.vstack([x, np.zeros((2, N_ITEMS))]) @ (expected > 0)) > 0
    lists, cold = _served(model, spark, frame)
    users = list(range(N_USERS + 2))
    assert lists == _reference_lists(scores, scored, x, users)
    assert cold[N_USERS] and cold[N_USERS + 1]
    # The whole catalog: whatever K, each book with enough readers that the
    # walk reaches from another book can be recommended.
    walk = _rp3(x, alpha, beta, N_ITEMS, 1, _authors(), weight)
    enough = x.sum(axis=0) >= min_readers
    reachable = set(model.recommendable.tolist())
    assert reachable == set(np.flatnonzero(enough & walk.any(axis=0)).tolist())
    assert len(reachable) > 25  # noqa: PLR2004


def test_rp3beta_with_side_weight_zero_is_the_plain_walk(spark, frame, side):
    zero = fit_rp3(frame, 1.0, 0.3, 6, 1000, 1, seed=1, side=side, side_weight=0.0)
    plain = fit_rp3(frame, 1.0, 0.3, 6, 1000, 1, seed=1)
    np.testing.assert_array_equal(zero.indices, plain.indices)
    np.testing.assert_array_equal(zero.data, plain.data)
    authored = fit_rp3(frame, 1.0, 0.3, 6, 1000, 1, seed=1, side=side, side_weight=3)
    assert _served(authored, spark, frame)[0] != _served(plain, spark, frame)[0]


def test_rp3beta_over_many_small_blocks_keeps_the_same_weights(
    frame, side, monkeypatch
):
    """Tasks combine the column bests of their blocks: blocks of a few entries
    (many per task) give the weights of one block."""
    whole = fit_rp3(frame, 0.7, 0.2, 4, 1000, 1, seed=1, side=side, side_weight=2)
    monkeypatch.setattr(items_module, "_BLOCK_ENTRIES", 40)
    assert len(items_module._blocks(*_walk_matrix(frame, side))) > 10  # noqa: PLR2004
    small = fit_rp3(frame, 0.7, 0.2, 4, 1000, 1, seed=1, side=side, side_weight=2)
    np.testing.assert_array_equal(small.indptr, whole.indptr)
    np.testing.assert_array_equal(small.indices, whole.indices)
    np.testing.assert_array_equal(small.data, whole.data)


def test_rp3beta_reaches_the_books_its_sample_of_readers_left_out(frame, monkeypatch):
    """Two books per reader in the walk: a book read only where the sample
    dropped it still gets an in-link, so the sampled fit can recommend every
    book the whole walk reaches."""
    whole = fit_rp3(frame, 1.0, 0.0, 6, 1000, 1, seed=1)
    sampled = fit_rp3(frame, 1.0, 0.0, 6, 2, 1, seed=1)
    assert set(sampled.recommendable.tolist()) == set(whole.recommendable.tolist())
    monkeypatch.setattr(rp3_module, "_with_sampled_out_links", lambda s, f, *a: f)
    without = fit_rp3(frame, 1.0, 0.0, 6, 2, 1, seed=1)
    assert len(without.recommendable) < len(whole.recommendable)


def _walk_matrix(frame, side) -> tuple:
    """The left walk matrix ``fit_rp3`` blocks over, and the block budget."""
    pairs = frame.toPandas()
    _, left, _, _ = walk_matrices(pairs, 0.7, 0.2, 1000, 1, 1, side.toPandas(), 2.0)
    return left, items_module._BLOCK_ENTRIES
