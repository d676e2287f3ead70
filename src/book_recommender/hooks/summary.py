"""The few lines a run ends with: each champion against its baseline, the
Delta table's rows and where to look next."""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import mlflow
from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl

from book_recommender.models.records import Champion

logger = logging.getLogger(__name__)


def _beyond(mine: dict[str, float], theirs: dict[str, float], baseline: str) -> str:
    """A champion's test lists beyond accuracy, its baseline's in brackets
    (``beyond_accuracy``)."""
    return (
        f"beyond accuracy ({baseline} in brackets): novelty {mine['novelty']:.2f} "
        f"bits ({theirs['novelty']:.2f}), diversity {mine.get('diversity', 0):.3f} "
        f"({theirs.get('diversity', 0):.3f}), {mine['head_share']:.0%} from the 1% "
        f"most-read books ({theirs['head_share']:.0%}), popularity percentile "
        f"{mine['popularity_percentile']:.2f} "
        f"({theirs['popularity_percentile']:.2f}; what readers read next: "
        f"{mine['read_popularity_percentile']:.2f})"
    )


def without_credentials(uri: str) -> str:
    """``uri`` with any ``user:password@`` replaced by ``***@``: the summary
    is printed and kept in logs."""
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def run_summary(
    champions: dict[str, Champion] | None,
    table: str | None,
    rows: int | None,
    tracking_uri: str,
    mlflow_run: str | None,
    reports: str,
) -> str:
    """What a run produced, in a few lines: each champion's test metric against
    its baseline's, the Delta table and its rows, and where to look next."""
    lines = ["The run finished."]
    if mlflow_run:
        lines.append(f"  MLflow run: {mlflow_run}")
    for role, champion in (champions or {}).items():
        metric = champion.metric
        mine = champion.test_metrics[metric]
        theirs = champion.baseline_test_metrics[metric]
        coverage = champion.test_metrics.get("catalog_coverage")
        reach = (
            f"; its test lists cover {coverage:.1%} of the catalog"
            if role == "recommender" and coverage is not None
            else ""
        )
        lines.append(
            f"  {role} champion: {champion.name}, test {metric} {mine:.4f}, "
            f"{champion.verdict} {champion.baseline} ({theirs:.4f}){reach}"
        )
        if role == "recommender" and "novelty" in champion.test_metrics:
            lines.append(
                "    "
                + _beyond(
                    champion.test_metrics,
                    champion.baseline_test_metrics,
                    champion.baseline,
                )
            )
    if table is not None:
        lines.append(f"  recommendations: {rows:,} rows in the Delta table {table}")
    # A tracking server is opened in the browser; a local store with `mlflow ui`.
    shown = without_credentials(tracking_uri)
    ui = (
        shown
        if shown.startswith(("http://", "https://"))
        else f"mlflow ui --backend-store-uri {shown}"
    )
    lines += [f"  look further: kedro viz run | {ui} | {reports}"]
    return "\n".join(lines)


class RunSummaryHooks:
    """Ends a successful run with its summary (``run_summary``)."""

    def __init__(self) -> None:
        self._tracking_uri = ""

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        uri = context.config_loader["mlflow"]["server"]["mlflow_tracking_uri"]
        self._tracking_uri = str(uri).replace(f"{Path.cwd().as_posix()}/", "")

    @hook_impl
    def after_pipeline_run(self, pipeline: Any, catalog: Any) -> None:
        outputs = pipeline.all_outputs()
        champions = catalog.load("champions") if "champions" in outputs else None
        table = rows = None
        if "user_recommendations" in outputs:
            dataset = catalog["user_recommendations"]
            table = str(getattr(dataset, "_filepath", "user_recommendations"))
            rows = catalog.load("user_recommendations").count()
        run = mlflow.last_active_run()
        name = f"'{run.info.run_name}' ({run.info.run_id})" if run else None
        # The champions' file as the catalog has it (data.root differs by env),
        # the figures beside it in the reporting layer's folder.
        champions_file = PurePosixPath(catalog["champions"]._filepath)
        reports = f"{champions_file.parent.parent / '08_reporting'}/ | {champions_file}"
        logger.info(
            run_summary(champions, table, rows, self._tracking_uri, name, reports)
        )
