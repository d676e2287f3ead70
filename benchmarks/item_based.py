"""Item-kNN and EASE: the project's fits against independent references, and
their cost against one Spark ALS fit, on a project's own model inputs.

``reference``: on the split a `kedro run` wrote (e.g. ``--env movielens``), each
family fitted by the project (``tuning.fit``) and by a reference (the
``implicit`` library's BM25Recommender / CosineRecommender, a numpy EASE) on
the same training interactions, both evaluated as served (seen books out, cold
users and short lists on the popular fallback) by the project's metric code:
test NDCG@10 side by side, and the gap.

``cost``: the item families' whole default grid as the pipeline tunes it (each
family by Spark's TrainValidationSplit, ``tuning.tune_family``: every grid
point fitted on the fit part and judged on the validation part, the family's
best refitted on train), then each best evaluated on test,
timed against one reference fit: plain ``pyspark.ml.recommendation.ALS``
(implicit, rank 32, 15 iterations, regParam 1, alpha 1) on the same
interactions in the same run. Times are also given in units of that fit (U).
The popularity baseline is evaluated first, untimed: it warms the session up as
the pipeline's earlier nodes do. ``--parallelism 2`` fits and judges a family's
grid points two at a time, as `tuning.parallelism` does in the pipeline (which
also tunes two families at once; here they are timed one after the other).

    python benchmarks/item_based.py reference --model-input data/movielens/05_model_input
    python benchmarks/item_based.py cost --model-input <project>/data/05_model_input \\
        --label 1.15M-bx --implicit-value 0

Writes benchmarks/results/item_based.{json,md} (each run updates its own key).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from common import (
    PROJECT,
    RESULTS,
    bench_spark,
    machine,
    markdown_table,
    reference_fit_seconds,
    write_results,
)
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import sparse

from book_recommender.columns import ITEM_IDX, USER_IDX
from book_recommender.metrics import RANK, RANKING_PARTS, per_user_ranking
from book_recommender.models import Interactions, Recommender, TrainingData
from book_recommender.models.families import families, named
from book_recommender.models.items import side_information
from book_recommender.models.tuning import fit as fit_point
from book_recommender.models.tuning import judge, tune_family
from book_recommender.params import parse

K = 10
BASE = yaml.safe_load((PROJECT / "conf/base/parameters_data_science.yml").read_text())
ALS_SETTINGS = parse("als", BASE["als"])
ITEM_BASED = parse("item_based", BASE["item_based"])
EVALUATION = parse("evaluation", {**BASE["evaluation"], "k": K})
TUNING = parse("tuning", BASE["tuning"])
# Item-kNN is off in conf/base; the references compare it all the same.
KNN_ON = ITEM_BASED.model_copy(
    update={"knn": ITEM_BASED.knn.model_copy(update={"enabled": True})}
)


def load(spark, folder: Path, rating: str, implicit_value: float | None):
    """(train data, test ratings) as the data_science pipeline sees them."""
    train = spark.read.parquet(str(folder / "train_ratings.parquet")).cache()
    test = spark.read.parquet(str(folder / "test_ratings.parquet")).cache()
    everything = spark.read.parquet(str(folder / "ratings.parquet"))
    implicit = (
        everything.filter(F.col(rating) == float(implicit_value)).select(
            USER_IDX, ITEM_IDX
        )
        if implicit_value is not None
        else everything.limit(0).select(USER_IDX, ITEM_IDX)
    ).cache()
    return TrainingData(ratings=train, implicit=implicit, rating_col=rating), test


def fit(estimator: Recommender, data: TrainingData):
    interactions = Interactions(data.implicit, data.rating_col, data.side)
    return fit_point(estimator, data.ratings, interactions, EVALUATION)


def evaluate(model, data: TrainingData, target, evaluation) -> dict[str, float]:
    return judge(model, target, evaluation)


# --------------------------------------------------------------------------------------
# References


def _matrix(seen: pd.DataFrame) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    users = np.unique(seen[USER_IDX].to_numpy())
    items = np.unique(seen[ITEM_IDX].to_numpy())
    rows = np.searchsorted(users, seen[USER_IDX].to_numpy())
    cols = np.searchsorted(items, seen[ITEM_IDX].to_numpy())
    x = sparse.csr_matrix(
        (np.ones(len(seen), np.float32), (rows, cols)), shape=(len(users), len(items))
    )
    x.sum_duplicates()
    x.data[:] = 1.0
    return x, users, items


def _served_lists(
    scores_of, x: sparse.csr_matrix, users: np.ndarray, items: np.ndarray, targets
) -> pd.DataFrame:
    """(USER_IDX, ITEM_IDX, RANK): each target user's top K unseen items by the
    reference's scores (positive or, for EASE, any finite score), topped up with
    the popular unseen items; unknown users get the popular items."""
    popularity = np.asarray(x.sum(axis=0)).ravel()
    popular = np.lexsort((np.arange(len(items)), -popularity))
    rows = []
    row_of = {int(u): r for r, u in enumerate(users)}
    for user in targets:
        r = row_of.get(int(user))
        seen = set(x[r].indices) if r is not None else set()
        mine: list[int] = []
        if r is not None:
            scores = scores_of(r)
            order = np.lexsort((np.arange(len(items)), -scores))
            mine = [int(i) for i in order if np.isfinite(scores[i]) and i not in seen][
                :K
            ]
        mine += [int(i) for i in popular if i not in seen and i not in mine][
            : K - len(mine)
        ]
        rows += [(int(user), int(items[i]), rank + 1) for rank, i in enumerate(mine)]
    return pd.DataFrame(rows, columns=[USER_IDX, ITEM_IDX, RANK])


def implicit_knn(x: sparse.csr_matrix, similarity: str, neighbours: int):
    from implicit.nearest_neighbours import (  # noqa: PLC0415
        BM25Recommender,
        CosineRecommender,
    )

    knob = ITEM_BASED.knn
    model = (
        BM25Recommender(K=neighbours, K1=knob.bm25_k1, B=knob.bm25_b)
        if similarity == "bm25"
        else CosineRecommender(K=neighbours)
    )
    model.fit(x, show_progress=False)
    weights = model.similarity.tocsr()

    def scores(r: int) -> np.ndarray:
        row = np.asarray((x[r] @ weights).todense()).ravel()
        return np.where(row > 0, row, -np.inf)

    return scores


def numpy_ease(x: sparse.csr_matrix, l2: float, max_items: int):
    counts = np.asarray(x.sum(axis=0)).ravel()
    top = np.sort(np.lexsort((np.arange(len(counts)), -counts))[:max_items])
    sub = x[:, top]
    g = (sub.T @ sub).toarray().astype(np.float64) + l2 * np.eye(len(top))
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)

    def scores(r: int) -> np.ndarray:
        row = np.full(x.shape[1], -np.inf)
        if sub[r].nnz:
            row[top] = np.asarray(sub[r] @ b).ravel()
        return row

    return scores


def ndcg(spark, lists: pd.DataFrame, test: DataFrame) -> float:
    recs = spark.createDataFrame(lists, f"{USER_IDX} int, {ITEM_IDX} int, {RANK} int")
    relevant = test.select(USER_IDX, ITEM_IDX)
    per_user = per_user_ranking(recs, relevant, K)
    assert "ndcg" in RANKING_PARTS
    return float(per_user.agg(F.avg("ndcg")).first()[0])


def reference(spark, folder: Path, rating: str, implicit_value) -> dict[str, Any]:
    data, test = load(spark, folder, rating, implicit_value)
    seen = data.seen.toPandas()
    x, users, items = _matrix(seen)
    targets = sorted(r[USER_IDX] for r in test.select(USER_IDX).distinct().collect())
    knn = named("knn", ALS_SETTINGS, KNN_ON)
    ease = named("ease", ALS_SETTINGS, KNN_ON)
    points = [
        knn.at(similarity="bm25", neighbours=200),
        knn.at(similarity="cosine", neighbours=200),
        *[ease.at(l2=l2) for l2 in ITEM_BASED.ease.l2],
    ]
    rows = {}
    for point in points:
        spec = point.candidate()
        values = spec.hyperparameters
        started = time.perf_counter()
        fitted = fit(point, data)
        fit_seconds = time.perf_counter() - started
        ours = evaluate(fitted, data, test, EVALUATION)[f"ndcg_at_{K}"]
        started = time.perf_counter()
        is_knn = point.kind == knn.estimator.kind
        scores_of = (
            implicit_knn(x, values["similarity"], values["neighbours"])
            if is_knn
            else numpy_ease(x, values["l2"], ITEM_BASED.ease.max_items)
        )
        theirs = ndcg(spark, _served_lists(scores_of, x, users, items, targets), test)
        rows[spec.name] = {
            "project_ndcg_at_10": round(ours, 4),
            "reference_ndcg_at_10": round(theirs, 4),
            "relative_gap": round((ours - theirs) / theirs, 4),
            "project_fit_seconds": round(fit_seconds, 2),
            "reference": "implicit "
            + (
                "BM25Recommender"
                if values["similarity"] == "bm25"
                else "CosineRecommender"
            )
            if is_knn
            else "numpy EASE",
        }
        print(spec.name, rows[spec.name])  # noqa: T201
    return {
        "users": len(users),
        "items": len(items),
        "interactions": int(x.nnz),
        "test_users": len(targets),
        "models": rows,
    }


# --------------------------------------------------------------------------------------
# Cost


def cost(
    spark, folder: Path, rating: str, implicit_value, parallelism: int = 1
) -> dict[str, Any]:
    data, test = load(spark, folder, rating, implicit_value)
    # The books' side information, as the pipeline gives it (EASE's beta grid).
    side = side_information(
        spark.read.parquet(str(folder / "indexed_items.parquet")),
        ITEM_BASED.side_information,
    )
    data = dataclasses.replace(data, side=side.cache() if side is not None else None)
    interactions = data.seen.count()
    no_als = ALS_SETTINGS.model_copy(
        update={
            "ranking": ALS_SETTINGS.ranking.model_copy(update={"enabled": False}),
            "rating": ALS_SETTINGS.rating.model_copy(update={"enabled": False}),
        }
    )
    interactions_of = Interactions(data.implicit, data.rating_col, data.side)
    tuning = TUNING.model_copy(update={"parallelism": parallelism})
    item_families = [f for f in families(no_als, ITEM_BASED) if f.label != "popularity"]
    popularity = next(
        f for f in families(no_als, ITEM_BASED) if f.label == "popularity"
    )
    # The baseline, untimed: it also warms up the session (JVM, Python
    # workers), as the pipeline's earlier nodes do.
    results, model = tune_family(
        popularity, data.ratings, interactions_of, EVALUATION, tuning
    )
    baseline = {
        "validation_ndcg_at_10": round(results[0].validation[f"ndcg_at_{K}"], 4),
        "test_ndcg_at_10": round(judge(model, test, EVALUATION)[f"ndcg_at_{K}"], 4),
    }
    print("popularity", baseline)  # noqa: T201
    started = time.perf_counter()
    seconds = {}
    chosen = {}
    tried = []
    # The pipeline's tuning: each family by Spark's tuning class (its grid
    # ``parallelism`` at a time), its best refitted on train, then tested.
    for family in item_families:
        begun = time.perf_counter()
        results, model = tune_family(
            family, data.ratings, interactions_of, EVALUATION, tuning
        )
        seconds[family.label] = round(time.perf_counter() - begun, 1)
        tried += results
        begun = time.perf_counter()
        metrics = judge(model, test, EVALUATION)
        chosen[family.label] = {
            "name": model.name,
            "test_ndcg_at_10": round(metrics[f"ndcg_at_{K}"], 4),
            "test_seconds": round(time.perf_counter() - begun, 1),
            "model_mib": round(model.nbytes / 2**20, 1),
        }
        print(family.label, chosen[family.label], seconds[family.label])  # noqa: T201
    tuned = sum(seconds.values())
    total = time.perf_counter() - started
    unit = reference_fit_seconds(data.seen)
    return {
        "interactions": interactions,
        "parallelism": parallelism,
        "reference_fit_seconds": round(unit, 1),
        "item_families_seconds": round(total, 1),
        "item_families_units": round(total / unit, 2),
        "tuning_seconds": round(tuned, 1),
        "candidate_seconds": seconds,
        "validation_ndcg_at_10": {
            r.name: round(r.validation[f"ndcg_at_{K}"], 4) for r in tried
        },
        "champions": chosen,
        "popularity": baseline,
    }


def table(results: dict[str, Any]) -> str:
    lines = []
    for key, value in results.get("reference", {}).items():
        lines.append(f"### Reference: {key} ({value['users']:,} users x "
                     f"{value['items']:,} items, {value['test_users']:,} test users)\n")  # fmt: skip
        rows = [
            [name, m["project_ndcg_at_10"], m["reference"], m["reference_ndcg_at_10"],
             f"{100 * m['relative_gap']:+.1f}%", m["project_fit_seconds"]]
            for name, m in value["models"].items()
        ]  # fmt: skip
        lines.append(markdown_table(
            ["model", "project test NDCG@10", "reference", "reference NDCG@10",
             "gap", "project fit s"], rows))  # fmt: skip
    for key, value in results.get("cost", {}).items():
        lines.append(f"### Cost: {key} ({value['interactions']:,} interactions)\n")
        rows = [[name, s] for name, s in value["candidate_seconds"].items()]
        # Since Spark's tuning refits each family's best, only the test is
        # timed apart (``test_seconds``); older rows timed refit + test.
        rows += [[f"{'refit + test' if 'refit_and_test_seconds' in c else 'test'}: "
                  f"{c['name']} (NDCG@10 {c['test_ndcg_at_10']}, {c['model_mib']} MiB)",
                  c.get("refit_and_test_seconds", c.get("test_seconds"))]
                 for c in value["champions"].values()]  # fmt: skip
        rows += [["item families in all", value["item_families_seconds"]],
                 ["reference fit: Spark ALS r32, 15 iterations",
                  value["reference_fit_seconds"]],
                 ["item families in reference fits (U)", value["item_families_units"]]]  # fmt: skip
        lines.append(markdown_table(["step", "seconds"], rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("reference", "cost"))
    parser.add_argument("--model-input", type=Path, required=True)
    parser.add_argument("--label", default="movielens env split")
    parser.add_argument("--rating", default=None, help="the rating column")
    parser.add_argument("--implicit-value", type=float, default=None)
    parser.add_argument(
        "--parallelism", type=int, default=1, help="cost: groups tuned at once"
    )
    args = parser.parse_args(argv)
    rating = args.rating or ("rating" if args.what == "reference" else "Book-Rating")
    with tempfile.TemporaryDirectory() as scratch:
        spark = bench_spark("8g", checkpoint_dir=Path(scratch))
        if args.what == "reference":
            result = reference(spark, args.model_input, rating, args.implicit_value)
        else:
            result = cost(
                spark, args.model_input, rating, args.implicit_value, args.parallelism
            )
        spark.stop()
    path = RESULTS / "item_based.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.setdefault(args.what, {})[args.label] = {**result, "machine": machine()}
    write_results("item_based", results, table(results))
    print(table(results))  # noqa: T201


if __name__ == "__main__":
    sys.exit(main())
