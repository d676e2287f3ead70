"""Speed and memory of the whole workflow on generated Book-Crossing-shaped data.

For each size: generate the data (the demo generator's tidy shape scaled by its
knobs, or ``--shape bookcrossing``, the real files' shape, for ``1.15M-bx``), run
`kedro run` end to end in a scratch project while sampling the resident memory
of the kedro process and its JVM from outside, split the run's time and peak
memory by pipeline (node timings from ``NodeTimingHooks``); then time the
pipeline's top-k alone (scored user-item pairs per second, and as a fraction of
numpy's single-precision GEMM rate measured in the same run), Spark ALS per
iteration at rank 10 and 64 on the run's interaction matrix and the
``implicit`` library's ALS on the same matrix.

    python benchmarks/scale.py                       # every size
    python benchmarks/scale.py --sizes demo,1.15M-bx # some of them

Writes benchmarks/results/scale.{json,md} (committed); results of sizes not run
this time are kept from the previous file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    PROJECT,
    RESULTS,
    MemorySampler,
    bench_spark,
    machine,
    markdown_table,
    reference_fit_seconds,
    write_results,
)

from book_recommender.columns import ITEM_IDX, USER_IDX

SIZES: dict[str, dict[str, int | str] | None] = {
    "demo": None,  # the committed demo files (60k rating rows)
    "100k": {"users": 25_000, "items": 24_000, "ratings": 100_000},
    # The demo generator's tidy shape at the real file sizes (278k users in
    # Users.csv, 271k books, 1.15M rating rows): after the join 152k x 90k.
    "1.15M": {"users": 278_000, "items": 271_000, "ratings": 1_150_000},
    # The real files' shape (`--shape bookcrossing`): after the join about
    # 97k users x 270k books, most books and users with one rating.
    "1.15M-bx": {"shape": "bookcrossing", "ratings": 1_149_780},
    "5M": {"users": 1_200_000, "items": 1_180_000, "ratings": 5_000_000},
    # The real files' shape scaled to 5M rating rows (users and books scaled
    # with it, the tails' exponents kept).
    "5M-bx": {"shape": "bookcrossing", "ratings": 5_000_000},
}
WORK = PROJECT / "data" / "benchmarks"
PIPELINES = ("data_processing", "data_science", "scoring", "reporting")
RANKS = (10, 64)
ITERATIONS = (2, 7)  # per-iteration time = (t(7) - t(2)) / 5: fixed costs cancel
# implicit's iterations take milliseconds on small data: time more of them.
IMPLICIT_ITERATIONS = (2, 22)


def generate(size: str) -> Path:
    """The size's raw files, generated once and reused (a stamp records the knobs)."""
    if SIZES[size] is None:
        return PROJECT / "data" / "01_raw"
    folder = WORK / size / "01_raw"
    stamp = folder / "knobs.json"
    if stamp.exists() and json.loads(stamp.read_text()) == SIZES[size]:
        return folder
    knobs = SIZES[size]
    started = time.monotonic()
    options = [
        f"--{knob}={value}" for knob, value in knobs.items()
    ]  # --shape, --users, --items, --ratings
    subprocess.run(  # noqa: S603
        [sys.executable, "-m", "book_recommender.demo_data", "--out", str(folder),
         *options],
        check=True,
    )  # fmt: skip
    stamp.write_text(json.dumps(knobs))
    print(f"[{size}] generated in {time.monotonic() - started:.0f} s")  # noqa: T201
    return folder


def scratch_project(size: str, raw: Path) -> Path:
    """A copy of the project's config whose `bench` env reads ``raw``."""
    project = WORK / size / "project"
    shutil.rmtree(project, ignore_errors=True)
    (project / "src").mkdir(parents=True)
    shutil.copy(PROJECT / "pyproject.toml", project)
    shutil.copytree(
        PROJECT / "conf", project / "conf", ignore=shutil.ignore_patterns("local")
    )
    (project / "conf" / "local").mkdir()
    bench = project / "conf" / "bench"
    bench.mkdir()
    (bench / "globals.yml").write_text(
        f"data:\n  root: {project / 'data'}\n  folder: {raw}\n"
        f"experiment_name: bench-{size}\n"
    )
    return project


def run_kedro(
    project: Path, params: str | None = None, pipeline: str | None = None
) -> dict[str, Any]:
    """`kedro run --env bench`: wall time, peak memory, and both per pipeline."""
    timings = project / "node_timings.jsonl"
    env = os.environ | {
        "BOOK_RECOMMENDER_NODE_TIMINGS": str(timings),
        "KEDRO_DISABLE_TELEMETRY": "1",
    }
    log = (project / "run.log").open("w")
    started = time.time()
    process = subprocess.Popen(  # noqa: S603
        [str(Path(sys.executable).with_name("kedro")), "run", "--env", "bench"]
        + (["--params", params] if params else [])
        + (["--pipeline", pipeline] if pipeline else []),
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    with MemorySampler(process.pid) as memory:
        code = process.wait()
    ended = time.time()
    log.close()
    if code != 0:
        raise SystemExit(f"kedro run failed ({code}); see {project / 'run.log'}")
    events = [json.loads(line) for line in timings.read_text().splitlines()]
    run_started = events[0]["at"]
    result: dict[str, Any] = {
        "wall_s": round(ended - started, 1),
        "startup_s": round(run_started - started, 1),
        "peak_gib": memory.peak_gib(),
        "peak_python_gib": round(max(p for _, p, _ in memory.samples) / 2**30, 2),
        "peak_jvm_gib": round(max(c for _, _, c in memory.samples) / 2**30, 2),
        "pipelines": {},
        "slowest_nodes": [],
    }
    # A node's span: from the previous node's last event to its own last event.
    last: dict[str, dict] = {}
    for event in events[1:]:
        last[event["node"]] = event  # in order; later events win
    spans, previous = [], run_started
    for event in sorted(last.values(), key=lambda e: e["at"]):
        spans.append((event, previous, event["at"]))
        previous = event["at"]
    for name in PIPELINES:
        mine = [(s, e) for node, s, e in spans if name in node["tags"]]
        result["pipelines"][name] = {
            "seconds": round(sum(e - s for s, e in mine), 1),
            "peak_gib": max((memory.peak_gib(s, e) for s, e in mine), default=0.0),
        }
    slowest = sorted(spans, key=lambda span: span[2] - span[1], reverse=True)[:5]
    result["slowest_nodes"] = [
        {"node": node["node"].split("__")[0], "seconds": round(e - s, 1)}
        for node, s, e in slowest
    ]
    result["largest_nodes"] = largest_nodes(spans, memory.samples, memory.workers)
    return result


def largest_nodes(
    spans: list[tuple[dict, float, float]],
    samples: list[tuple[float, int, int]],
    workers: list[int],
) -> list[dict[str, Any]]:
    """The five nodes with the highest peak, each with its peak's split into the
    kedro process (driver Python), the JVM and Spark's Python workers, in GiB:
    where the run's peak memory comes from."""
    peaks = []
    gib = 2**30
    for node, start, end in spans:
        inside = [
            (p + c, p, c - w, w)
            for (t, p, c), w in zip(samples, workers, strict=True)
            if start <= t <= end
        ]
        if inside:
            total, python, jvm, python_workers = max(inside)
            peaks.append({
                "node": node["node"].split("__")[0],
                "peak_gib": round(total / gib, 2),
                "driver_python_gib": round(python / gib, 2),
                "jvm_gib": round(jvm / gib, 2),
                "python_workers_gib": round(python_workers / gib, 2),
            })  # fmt: skip
    return sorted(peaks, key=lambda p: p["peak_gib"], reverse=True)[:5]


def _model_input(project: Path) -> Path:
    return project / "data" / "05_model_input" / "ratings.parquet"


def interactions(project: Path):
    """The run's model input as (user, item, strength) arrays, strength = rating + 1."""
    import pandas as pd  # noqa: PLC0415

    frame = pd.read_parquet(
        _model_input(project), columns=[USER_IDX, ITEM_IDX, "Book-Rating"]
    )
    return (
        frame[USER_IDX].to_numpy(np.int32),
        frame[ITEM_IDX].to_numpy(np.int32),
        (frame["Book-Rating"].to_numpy(np.float32) + 1.0),
    )


def champion_reach(project: Path) -> dict[str, Any]:
    """The recommender champion on test against popularity, the books with at
    least two training readers (what a whole-catalog model should reach) and
    the share of them the champion can recommend and its lists cover."""
    import pandas as pd  # noqa: PLC0415

    models = project / "data" / "06_models"
    champion = json.loads((models / "champions.json").read_text())["recommender"]
    folder = project / "data" / "05_model_input"
    train = pd.read_parquet(
        folder / "train_ratings.parquet", columns=[USER_IDX, ITEM_IDX]
    )
    every = pd.read_parquet(
        _model_input(project), columns=[USER_IDX, ITEM_IDX, "Book-Rating"]
    )
    implicit = every[every["Book-Rating"] == 0][[USER_IDX, ITEM_IDX]]
    seen = pd.concat([train, implicit]).drop_duplicates()
    readers = seen.groupby(ITEM_IDX).size()
    test = champion["test_metrics"]
    return {
        "name": champion["candidate"]["name"],
        "ndcg_at_10": test["ndcg_at_10"],
        "popularity_ndcg_at_10": champion["baseline_test_metrics"]["ndcg_at_10"],
        "books": int(every[ITEM_IDX].nunique()),
        "books_2plus_training_readers": int((readers >= 2).sum()),  # noqa: PLR2004
        "reach_2plus": test.get("reach_2plus"),
        "served_books": test.get("served_books"),
        "catalog_coverage": test.get("catalog_coverage"),
    }


def _seconds_per_iteration(
    fit_seconds: Callable[[int, int], float], iterations: tuple[int, int], digits: int
) -> dict[str, float]:
    """``fit_seconds(rank, n)`` at both iteration counts, per rank: the difference
    divided by the difference of the counts, so fixed costs cancel."""
    per_iteration = {}
    for rank in RANKS:
        few, many = (fit_seconds(rank, n) for n in iterations)
        per_iteration[f"rank{rank}"] = round(
            (many - few) / (iterations[1] - iterations[0]), digits
        )
    return per_iteration


def time_spark_als(project: Path) -> dict[str, float]:
    """Seconds per iteration of Spark's implicit ALS at each rank (local[2]), on
    the same (user, item, rating + 1) triples as ``interactions``."""
    from pyspark.ml.recommendation import ALS  # noqa: PLC0415

    spark = bench_spark("8g", checkpoint_dir=project / "data" / "als_checkpoints")
    from pyspark.sql import functions as F  # noqa: PLC0415

    frame = (
        spark.read.parquet(str(_model_input(project)))
        .select(
            F.col(USER_IDX).alias("user"),
            F.col(ITEM_IDX).alias("item"),
            (F.col("Book-Rating") + 1.0).cast("float").alias("strength"),
        )
        .cache()
    )
    frame.count()

    def fit_seconds(rank: int, iterations: int) -> float:
        als = ALS(
            userCol="user", itemCol="item", ratingCol="strength",
            implicitPrefs=True, rank=rank, maxIter=iterations, regParam=0.1,
            alpha=1.0, seed=42,
        )  # fmt: skip
        started = time.perf_counter()
        model = als.fit(frame)
        model.userFactors.count()  # the factors are computed lazily
        return time.perf_counter() - started

    per_iteration = _seconds_per_iteration(fit_seconds, ITERATIONS, digits=3)
    spark.stop()
    return per_iteration


def time_reference_fit(project: Path) -> float:
    """Seconds of the reference fit on the run's interactions (its model
    input), in a session with the project's driver memory (conf/base)."""
    spark = bench_spark(checkpoint_dir=project / "data" / "als_checkpoints")
    seconds = reference_fit_seconds(spark.read.parquet(str(_model_input(project))))
    spark.stop()
    return seconds


def units(run: dict[str, Any], unit: float) -> dict[str, Any]:
    """The run's times in reference fits: end to end, start-up, each pipeline."""
    return {
        "wall": round(run["wall_s"] / unit, 2),
        "startup": round(run["startup_s"] / unit, 2),
        "pipelines": {
            name: round(value["seconds"] / unit, 2)
            for name, value in run["pipelines"].items()
        },
    }


TOPK_RANK = 32  # the ranking family's default rank


def _gemm_flops(rank: int) -> float:
    """The machine's single-precision GEMM rate (FLOP/s, numpy's BLAS, all
    cores): a (4096 x rank) x (rank x 65536) product into a reused output."""
    rng = np.random.default_rng(0)
    users = rng.normal(size=(4096, rank)).astype(np.float32)
    items = rng.normal(size=(65536, rank)).astype(np.float32)
    out = np.empty((4096, 65536), np.float32)
    np.matmul(users, items.T, out=out)  # warm-up: page in the output
    repeats, started = 5, time.perf_counter()
    for _ in range(repeats):
        np.matmul(users, items.T, out=out)
    return repeats * 2.0 * rank * out.size / (time.perf_counter() - started)


def _champion_factors(project: Path, size: str):
    """The registered recommender champion's (user ids, user factors, item
    table), from the run's MLflow registry."""
    import mlflow  # noqa: PLC0415

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/bench-{size}-recommender@champion")
    bundle = model.unwrap_python_model().bundle
    if bundle.user_factors is None or not len(bundle.user_factors):
        return None  # an item-based champion (EASE, item-kNN): no factors
    rows = bundle.users["factor_row"].to_numpy(np.int64)
    warm = rows >= 0
    return (
        bundle.users["user_idx"].to_numpy(np.int64)[warm],
        bundle.user_factors[rows[warm]],
        bundle.table,
    )


def time_top_k(project: Path, size: str, *, champion: bool = True) -> dict[str, Any]:
    """Scored user-item pairs per second of the pipeline's top-k
    (``ranking.top_k_from_factors``, k 10, seen items out, Spark local[2]) for
    the run's users against its items: with the registered champion's factors
    (what evaluation and scoring rank) and with random normal rank-32 factors
    (the worst case for its bounds: no item stands out); and those rates as a
    fraction of numpy's single-precision GEMM rate at the same rank, measured
    after them."""
    import pandas as pd  # noqa: PLC0415

    from book_recommender.ranking import top_k_from_factors  # noqa: PLC0415
    from book_recommender.topk import ItemTable  # noqa: PLC0415

    spark = bench_spark("4g")
    pairs = spark.read.parquet(str(_model_input(project))).select(USER_IDX, ITEM_IDX)
    seen = pairs.cache()
    users = pairs.select(USER_IDX).distinct().cache()
    user_ids = np.sort(users.toPandas()[USER_IDX].to_numpy(np.int64))
    item_ids = np.sort(
        pairs.select(ITEM_IDX).distinct().toPandas()[ITEM_IDX].to_numpy(np.int64)
    )
    rng = np.random.default_rng(0)
    cases = {
        "random": (
            user_ids,
            rng.normal(size=(len(user_ids), TOPK_RANK)).astype(np.float32),
            ItemTable.build(
                item_ids,
                rng.normal(size=(len(item_ids), TOPK_RANK)).astype(np.float32),
                item_ids,
                np.zeros(len(item_ids), np.float32),
            ),
        )
    }
    factors = _champion_factors(project, size) if champion else None
    if factors is not None:
        cases["champion"] = factors
    measured = {}
    for case, (ids, factors, table) in cases.items():
        frame = spark.createDataFrame(
            pd.DataFrame({"id": ids.astype(np.int32), "features": list(factors)})
        ).cache()
        frame.count()
        started = time.perf_counter()
        rows = top_k_from_factors(frame, table, users, seen, 10).count()
        seconds = time.perf_counter() - started
        frame.unpersist()
        measured[case] = {
            "rank": int(factors.shape[1]),
            "warm_users": len(ids),
            "items": len(table.ids),
            "rows": rows,
            "seconds": round(seconds, 1),
            "pairs_per_s": float(f"{len(ids) * len(table.ids) / seconds:.3g}"),
        }
    spark.stop()
    gemm_at = {
        rank: _gemm_flops(rank) for rank in {r["rank"] for r in measured.values()}
    }
    for result in measured.values():
        gemm = gemm_at[result["rank"]]
        result["gemm_gflops"] = round(gemm / 1e9, 1)
        result["gemm_fraction"] = round(
            result["pairs_per_s"] * 2 * result["rank"] / gemm, 3
        )
    return measured


def time_implicit_library(users, items, strength) -> dict[str, float]:
    """Seconds per iteration of ``implicit``'s CPU ALS on the same matrix, 2 threads."""
    from implicit.cpu.als import AlternatingLeastSquares  # noqa: PLC0415
    from scipy.sparse import csr_matrix  # noqa: PLC0415

    matrix = csr_matrix((strength, (users, items)))

    def fit_seconds(rank: int, iterations: int) -> float:
        model = AlternatingLeastSquares(
            factors=rank, iterations=iterations, regularization=0.1,
            alpha=1.0, num_threads=2, random_state=42,
        )  # fmt: skip
        started = time.perf_counter()
        model.fit(matrix, show_progress=False)
        return time.perf_counter() - started

    return _seconds_per_iteration(fit_seconds, IMPLICIT_ITERATIONS, digits=4)


def retime_implicit(key: str, result: dict[str, Any]) -> None:
    """Times ``implicit`` again on the model input a previous run left behind."""
    project = WORK / result["size"] / "project"
    users, items, strength = interactions(project)
    result["implicit_als_s_per_iteration"] = time_implicit_library(
        users, items, strength
    )
    result["spark_over_implicit"] = _ratios(
        result["spark_als_s_per_iteration"], result["implicit_als_s_per_iteration"]
    )
    print(key, result["implicit_als_s_per_iteration"], flush=True)  # noqa: T201


def _ratios(spark_als: dict, implicit_als: dict) -> dict[str, float | None]:
    return {
        r: round(spark_als[r] / implicit_als[r], 1)
        if spark_als[r] and implicit_als[r] and implicit_als[r] > 0
        else None
        for r in spark_als
    }


def measure(
    size: str,
    params: str | None = None,
    pipeline: str | None = None,
    *,
    timings: bool = True,
) -> dict[str, Any]:
    raw = generate(size)
    project = scratch_project(size, raw)
    print(f"[{size}] kedro run {params or ''} {pipeline or ''}...", flush=True)  # noqa: T201
    run = run_kedro(project, params, pipeline)
    stats = json.loads(
        (project / "data" / "05_model_input" / "data_statistics.json").read_text()
    )
    # Each grid point's fit and test evaluation (mostly the top-k ranking), timed
    # by train_candidates.
    refitted = project / "data" / "06_models" / "candidate_metrics.json"
    submodels = [
        {
            "name": m["candidate"]["name"],
            **{f"{k}_s": v for k, v in m["seconds"].items()},
        }
        for m in (json.loads(refitted.read_text()) if refitted.exists() else [])
    ]
    spark_als = implicit_als = dict.fromkeys(f"rank{r}" for r in RANKS)
    champion = champion_reach(project) if pipeline is None else None
    unit = time_reference_fit(project)
    print(f"[{size}] reference fit: {unit:.1f} s", flush=True)  # noqa: T201
    top_k = None
    if timings:
        top_k = time_top_k(project, size, champion=pipeline is None)
        print(f"[{size}] top-k: {top_k}", flush=True)  # noqa: T201
        users, items, strength = interactions(project)
        spark_als = time_spark_als(project)
        implicit_als = time_implicit_library(users, items, strength)
    result = {
        "size": size,
        "kedro_params": params,
        "kedro_pipeline": pipeline or "__default__",
        "machine": machine(),
        "rating_rows": stats["rows"]["ratings"]["read"],
        "model_input": {
            k: stats["model_input"][k] for k in ("interactions", "users", "items")
        },
        "train_rows": stats["split"]["train_rows"],
        "run": run,
        "reference_fit_s": round(unit, 1),
        "units": units(run, unit),
        "submodels": submodels,
        "champion": champion,
        "top_k": top_k,
        "spark_als_s_per_iteration": spark_als,
        "implicit_als_s_per_iteration": implicit_als,
        "spark_over_implicit": _ratios(spark_als, implicit_als),
    }
    print(json.dumps(result, indent=2), flush=True)  # noqa: T201
    return result


def _grid_point_seconds(submodels: list[dict[str, Any]] | None) -> str:
    """Mean fit and evaluation seconds of the grid points ('' for older results)."""
    if not submodels:
        return ""
    fit = sum(m["fit_s"] for m in submodels) / len(submodels)
    evaluation = sum(m["evaluation_s"] for m in submodels) / len(submodels)
    return f"{fit:.0f} / {evaluation:.0f}"


def _unit_cells(result: dict[str, Any]) -> list[Any]:
    """Reference fit, end to end and per pipeline in U ('' for older results)."""
    if "units" not in result:
        return ["", "", ""]
    per = result["units"]["pipelines"]
    return [
        result["reference_fit_s"],
        result["units"]["wall"],
        " / ".join(f"{per[name]:.2f}" for name in PIPELINES),
    ]


def _top_k_cell(result: dict[str, Any], key: str) -> str:
    """'champion / random' figures of the top-k timing ('' for older results)."""
    cases = result.get("top_k") or {}
    return " / ".join(
        f"{cases[case][key]:.2g}" for case in ("champion", "random") if case in cases
    )


def _champion_cell(champion: dict[str, Any] | None) -> str:
    """'' for results older than the champion's record."""
    if not champion:
        return ""
    reach = champion["reach_2plus"]
    return (
        f"{champion['name']} {champion['ndcg_at_10']:.4f} "
        f"({champion['popularity_ndcg_at_10']:.4f}), "
        f"{champion['served_books']:.0f} of {champion['books']:,}, "
        f"{reach:.1%} of {champion['books_2plus_training_readers']:,}"
    )


def table(results: dict[str, Any]) -> str:
    header = [
        "size", "rating rows", "interactions", "users", "items", "end to end (s)",
        "peak (GiB)", "data_processing (s)", "data_science (s)", "scoring (s)",
        "reporting (s)", "reference fit (s)", "end to end (U)",
        "data_processing / data_science / scoring / reporting (U)",
        "grid point fit / evaluation (s)",
        "champion: test NDCG@10 (popularity), books served, reach of the books with >= 2 training readers",
        "top-k pairs/s champion / random", "top-k / GEMM champion / random", "ALS s/iter r10", "ALS s/iter r64",
        "implicit s/iter r10", "implicit s/iter r64", "Spark/implicit r64",
    ]  # fmt: skip
    rows = []
    order = {size: i for i, size in enumerate(SIZES)}
    keys = sorted(results["sizes"], key=lambda k: (order[k.split()[0]], k))
    for size in keys:
        r = results["sizes"][size]
        p = r["run"]["pipelines"]
        rows.append(
            [size, r["rating_rows"], r["model_input"]["interactions"],
             r["model_input"]["users"], r["model_input"]["items"], r["run"]["wall_s"],
             r["run"]["peak_gib"], *(p[name]["seconds"] for name in PIPELINES),
             *_unit_cells(r), _grid_point_seconds(r.get("submodels")),
             _champion_cell(r.get("champion")),
             _top_k_cell(r, "pairs_per_s"), _top_k_cell(r, "gemm_fraction"),
             r["spark_als_s_per_iteration"]["rank10"],
             r["spark_als_s_per_iteration"]["rank64"],
             r["implicit_als_s_per_iteration"]["rank10"],
             r["implicit_als_s_per_iteration"]["rank64"],
             r["spark_over_implicit"]["rank64"]]
        )  # fmt: skip
    m = results["machine"]
    caption = (
        f"Measured {m['date']} on {m['cpus']} CPUs, {m['memory_gib']} GiB "
        f"({m['platform']}, {m['java']}); Spark local[2].\n\n"
    )
    return caption + markdown_table(header, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument(
        "--params",
        default=None,
        help="passed to `kedro run --params` (e.g. als.num_blocks=10)",
    )
    parser.add_argument(
        "--pipeline",
        default=None,
        help="passed to `kedro run --pipeline` (e.g. data_processing: then only "
        "the top-k and ALS timings follow, on its model input)",
    )
    parser.add_argument(
        "--label",
        default="",
        help="stored as '<size> <label>', beside the plain results (e.g. 'before')",
    )
    parser.add_argument(
        "--retime-implicit",
        action="store_true",
        help="only time `implicit` again on the sizes' previous runs",
    )
    parser.add_argument(
        "--retime-top-k",
        action="store_true",
        help="only time the top-k again on the sizes' previous runs",
    )
    parser.add_argument(
        "--skip-als",
        action="store_true",
        help="only the kedro run and the reference fit (no top-k, ALS or "
        "implicit per-iteration timings)",
    )
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose from {list(SIZES)}")
    previous = RESULTS / "scale.json"
    results = json.loads(previous.read_text()) if previous.exists() else {"sizes": {}}
    results["machine"] = machine()
    if args.retime_top_k:
        for key, result in results["sizes"].items():
            if result["size"] in sizes:
                project = WORK / result["size"] / "project"
                champion = result.get("kedro_pipeline", "__default__") == "__default__"
                result["top_k"] = time_top_k(project, result["size"], champion=champion)
                print(key, result["top_k"], flush=True)  # noqa: T201
        write_results("scale", results, table(results))
        print(table(results))  # noqa: T201
        return
    if args.retime_implicit:
        for key, result in results["sizes"].items():
            if (
                result["size"] in sizes
                and result["spark_als_s_per_iteration"]["rank10"]
            ):
                retime_implicit(key, result)
        write_results("scale", results, table(results))
        print(table(results))  # noqa: T201
        return
    for size in sizes:
        key = f"{size} {args.label}".strip()
        results["sizes"][key] = measure(
            size, args.params, args.pipeline, timings=not args.skip_als
        )
        write_results("scale", results, table(results))
    print(table(results))  # noqa: T201


if __name__ == "__main__":
    main()
