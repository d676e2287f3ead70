"""Whole-catalog item models against dense EASE on its most read books, in
numpy alone (an implementation independent of the project's Spark code), on a
project's split: which method to build, decided by measurement.

Reads a run's ``05_model_input`` (train, test, the implicit interactions and
the items' authors), carves validation from train (a seeded 80/20 draw, as
TrainValidationSplit does) or judges on test, and prints NDCG@10 (every user
with a held-out rating counts; users a model cannot rank get the popular
books, short lists are topped up with them), the distinct books of the top-10
lists, and the seconds per fit.

    python benchmarks/whole_catalog.py --model-input <project>/data/05_model_input \\
        ease:1000:10 rp3:0.5:0:100:30:2 rp3:1:0,0.3:100:10:2 [--test]

Specs: ``ease:L2:AUTHOR_WEIGHT`` (dense EASE over ``--max-items`` books);
``rp3:ALPHA:BETA[,BETA...]:K:AUTHOR_WEIGHT:MIN_READERS`` (the betas share one
product). ``--max-user-items`` samples a prolific reader's books into RP3beta's
walk as the project does (0: all). Writes nothing; docs/benchmarks.md keeps the
figures.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.item_topk import top_of_rows

K = 10
Scorer = Callable[[sparse.csr_matrix], sparse.csr_matrix | np.ndarray]


class Data:
    def __init__(self, folder: Path, author_column: str) -> None:
        self.train = pd.read_parquet(folder / "train_ratings.parquet")
        self.test = pd.read_parquet(folder / "test_ratings.parquet")
        everything = pd.read_parquet(folder / "ratings.parquet")
        items = pd.read_parquet(folder / "indexed_items.parquet")
        rating = next(
            c for c in self.train.columns if c not in (USER_IDX, ITEM_IDX, "id")
        )
        self.implicit = everything[everything[rating] == 0][[USER_IDX, ITEM_IDX]]
        self.n_users = int(everything[USER_IDX].max()) + 1
        self.n_items = int(items[ITEM_IDX].max()) + 1
        self.authors = sparse.csr_matrix((1, self.n_items))
        if not author_column:  # e.g. MovieLens: no author weight on the grid
            return
        authors = items[[ITEM_IDX, author_column]].dropna()
        names = authors[author_column].str.lower().str.replace(r"[^\w]", "", regex=True)
        authors = authors[names != ""]
        _, row = np.unique(names[names != ""].to_numpy(str), return_inverse=True)
        self.authors = sparse.csr_matrix(
            (np.ones(len(row)), (row, authors[ITEM_IDX].to_numpy())),
            shape=(int(row.max()) + 1, self.n_items),
        )

    def seen(self, train: pd.DataFrame) -> sparse.csr_matrix:
        pairs = pd.concat(
            [train[[USER_IDX, ITEM_IDX]], self.implicit]
        ).drop_duplicates()
        return sparse.csr_matrix(
            (np.ones(len(pairs), np.float32), (pairs[USER_IDX], pairs[ITEM_IDX])),
            shape=(self.n_users, self.n_items),
        )


def _top(scores: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
    order = np.lexsort((cols, -scores))[:k]
    return cols[order]


def ndcg(
    x: sparse.csr_matrix, score: Scorer | None, target: pd.DataFrame
) -> tuple[float, int]:
    """Mean NDCG@10 over the users of ``target`` and the distinct books served."""
    relevant = target.groupby(USER_IDX)[ITEM_IDX].apply(np.array)
    users = relevant.index.to_numpy()
    popularity = np.asarray(x.sum(axis=0)).ravel()
    popular = np.lexsort((np.arange(len(popularity)), -popularity))[:10_000]
    discount = 1 / np.log2(np.arange(2, K + 2))
    total, served = 0.0, set()
    for start in range(0, len(users), 2000):
        block = users[start : start + 2000]
        history = x[block]
        scores = None if score is None else sparse.csr_matrix(score(history))
        for row, user in enumerate(block):
            seen = history[row].indices
            mine = np.zeros(0, np.int64)
            if scores is not None:
                a, b = scores.indptr[row], scores.indptr[row + 1]
                cols, values = scores.indices[a:b], scores.data[a:b]
                keep = (values > 0) & ~np.isin(cols, seen)
                mine = _top(values[keep], cols[keep], K)
            if len(mine) < K:
                extra = popular[~np.isin(popular, seen) & ~np.isin(popular, mine)]
                mine = np.concatenate([mine, extra[: K - len(mine)]])
            served.update(mine.tolist())
            hits = np.isin(mine, relevant[user])
            ideal = discount[: min(len(relevant[user]), K)].sum()
            total += (hits * discount[: len(mine)]).sum() / ideal
    return total / len(users), len(served)


def dense_ease(
    data: Data, x: sparse.csr_matrix, l2: float, weight: float, m: int
) -> Scorer:
    popularity = np.asarray(x.sum(axis=0)).ravel()
    top = np.sort(np.lexsort((np.arange(len(popularity)), -popularity))[:m])
    gram = (x[:, top].T @ x[:, top]).toarray().astype(np.float64)
    if weight:
        a = data.authors[:, top]
        gram += weight * (a.T @ a).toarray()
    gram[np.diag_indices(len(top))] += l2
    p = np.linalg.inv(gram)
    b = (-p / np.diag(p)[None, :]).astype(np.float32)
    np.fill_diagonal(b, 0.0)

    def score(history: sparse.csr_matrix) -> sparse.csr_matrix:
        dense = history[:, top] @ b
        dense[dense <= 0] = 0
        rows, cols = np.nonzero(dense)
        return sparse.csr_matrix(
            (dense[rows, cols], (rows, top[cols])),
            shape=(history.shape[0], data.n_items),
        )

    return score


def _sampled(x: sparse.csr_matrix, most: int, seed: int = 1) -> sparse.csr_matrix:
    if not most or np.diff(x.indptr).max() <= most:
        return x
    coo = x.tocoo()
    order = np.lexsort((np.random.default_rng(seed).random(coo.nnz), coo.row))
    starts = np.searchsorted(coo.row[order], np.arange(x.shape[0]))
    place = np.empty(coo.nnz, np.int64)
    place[order] = np.arange(coo.nnz) - starts[coo.row[order]]
    keep = place < most
    return sparse.csr_matrix(
        (coo.data[keep], (coo.row[keep], coo.col[keep])), shape=x.shape
    )


def rp3beta(
    data: Data,
    x: sparse.csr_matrix,
    alpha: float,
    betas: list[float],
    k: int,
    weight: float,
    min_readers: int,
    max_user_items: int,
) -> dict[float, Scorer]:
    """RP3beta per beta, one product: W = P_iu^alpha P_ui^alpha / d_j^beta."""
    graph = _sampled(x, max_user_items)
    graph.data[:] = 1.0
    if weight:
        graph = sparse.vstack([graph, data.authors * weight]).tocsr()
    out_of_reader = np.asarray(graph.sum(axis=1)).ravel()
    out_of_book = np.asarray(graph.sum(axis=0)).ravel()
    readers = np.asarray((x > 0).sum(axis=0)).ravel()
    coo = graph.tocoo()
    to_reader = sparse.csr_matrix(
        ((coo.data / out_of_book[coo.col]) ** alpha, (coo.col, coo.row)),
        shape=(data.n_items, graph.shape[0]),
    )
    to_book = sparse.csr_matrix(
        ((coo.data / out_of_reader[coo.row]) ** alpha, (coo.row, coo.col)),
        shape=graph.shape,
    )
    parts: dict[float, list[tuple[np.ndarray, ...]]] = {b: [] for b in betas}
    for start in range(0, data.n_items, 8000):
        block = (to_reader[start : start + 8000] @ to_book).tocoo()
        keep = (block.row + start != block.col) & (readers[block.col] >= min_readers)
        rows, cols, values = block.row[keep], block.col[keep], block.data[keep]
        for beta in betas:
            penalty = np.where(out_of_book > 0, out_of_book, 1.0) ** -beta
            weighted = (values * penalty[cols]).astype(np.float32)
            best = top_of_rows(rows, cols, weighted, block.shape[0], k)
            parts[beta].append((rows[best] + start, cols[best], weighted[best]))
    scorers = {}
    for beta, found in parts.items():
        rows, cols, values = (np.concatenate(p) for p in zip(*found, strict=True))
        w = sparse.csr_matrix((values, (rows, cols)), shape=(data.n_items,) * 2)
        scorers[beta] = lambda history, w=w: history @ w
    return scorers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-input", type=Path, required=True)
    parser.add_argument("--author-column", default="Book-Author", help="'' for none")
    parser.add_argument("--max-items", type=int, default=5000)
    parser.add_argument("--max-user-items", type=int, default=300)
    parser.add_argument("--test", action="store_true", help="judge on test")
    parser.add_argument("specs", nargs="+")
    args = parser.parse_args()
    data = Data(args.model_input, args.author_column)
    train, target = data.train, data.test
    if not args.test:
        mask = np.random.default_rng(42).random(len(train)) < 0.8  # noqa: PLR2004
        train, target = train[mask], train[~mask]
    label = "test" if args.test else "validation"
    x = data.seen(train)
    value, books = ndcg(x, None, target)
    print(f"{label} popularity: NDCG@10 {value:.4f}, {books} books served")  # noqa: T201
    for spec in args.specs:
        kind, *fields = spec.split(":")
        started = time.perf_counter()
        if kind == "ease":
            l2, weight = (float(v) for v in fields)
            scorers = {None: dense_ease(data, x, l2, weight, args.max_items)}
        else:
            alpha, betas, k, weight, min_readers = fields
            scorers = rp3beta(
                data,
                x,
                float(alpha),
                [float(b) for b in betas.split(",")],
                int(k),
                float(weight),
                int(min_readers),
                args.max_user_items,
            )
        fitted = time.perf_counter() - started
        for beta, score in scorers.items():
            value, books = ndcg(x, score, target)
            name = spec if beta is None else f"{spec} beta {beta:g}"
            print(  # noqa: T201
                f"{label} {name}: NDCG@10 {value:.4f}, {books} books served, "
                f"fit {fitted:.1f} s"
            )


if __name__ == "__main__":
    main()
