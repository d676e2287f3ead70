"""The raw files: fetched when missing (or asked to), described by size and
digest for the run's records."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from book_recommender.download import (
    DownloadError,
    Expected,
    download_file,
    file_digest,
)
from book_recommender.params import (
    DataProcessingParams,
    Download,
    FileCheck,
)
from book_recommender.pipelines.data_processing.reading import (
    PARAMS_FILE,
    DataValidationError,
    column_name,
    source_path,
)

logger = logging.getLogger(__name__)

_FILES = {
    "items_file": ["item_id", "item_info"],
    "ratings_file": ["user_id", "item_id", "rating"],
    "users_file": ["user_id"],
}


def _fetch(
    key: str,
    source: str,
    files: dict[str, Path],
    columns: dict[str, str],
    download: Download,
    folder: str,
) -> dict[str, Any]:
    """``download_file`` of one input file, checked against what it must be."""
    name = files[key].name
    check = download.expected.get(name, FileCheck())
    spec = Expected(
        header=[column_name(columns, c) for c in _FILES[key]],
        size=check.size,
        sha256=check.sha256,
        min_bytes=download.min_bytes,
        max_bytes=download.max_bytes,
    )
    try:
        return download_file(
            source,
            files[key],
            spec,
            timeout=download.timeout_seconds,
            retries=download.retries,
            backoff=download.backoff_seconds,
            allowed_hosts=download.allowed_redirect_hosts,
        )
    except DownloadError as error:
        kept = "The existing file was left as it was. " if files[key].exists() else ""
        raise DownloadError(
            f"{error}. {kept}Without network access to {download.remote_url}, "
            f"download {', '.join(p.name for p in files.values())} elsewhere and "
            f"put them in {folder}/ by hand; the run then uses them as they are."
        ) from error


def fetch_raw_data(
    columns: dict[str, str], params: DataProcessingParams
) -> dict[str, Any]:
    """The three input files: downloaded if absent (or asked to), then described.

    With ``download.remote_url`` set, a file missing from ``data.folder`` is
    fetched from ``<remote_url>/<file name>`` (``download.overwrite: true``
    fetches them all again); see ``book_recommender.download`` for the checks
    that keep a bad download from replacing a good file. Returns, per file key,
    the local path, size and SHA-256, which the validation reports carry.
    Folders on object storage (``s3a://...``) are read by Spark as they are.
    """
    folder = params.data.folder
    if "://" in folder:
        return {key: {"path": source_path(params, key)} for key in _FILES}
    download = params.download
    url = download.remote_url
    files = {key: Path(folder) / getattr(params.data, key) for key in _FILES}
    wanted = [k for k, path in files.items() if download.overwrite or not path.exists()]
    if wanted and not url:
        missing = ", ".join(str(files[k]) for k in wanted)
        raise DataValidationError(
            f"Input file(s) not found: {missing}. Put them there, point "
            f"data.folder (conf/<env>/globals.yml) at their folder, or set "
            f"data_processing.download.remote_url to fetch them ({PARAMS_FILE})."
        )
    sources = {key: f"{str(url).rstrip('/')}/{files[key].name}" for key in wanted}
    fetched = {
        key: _fetch(key, sources[key], files, columns, download, folder)
        for key in wanted
    }
    described = {}
    for key, path in files.items():
        described[key] = file_digest(path)
        if key in wanted:
            described[key]["url"] = sources[key]
            described[key]["final_url"] = fetched[key]["final_url"]
    return described
