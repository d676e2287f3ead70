"""Fetching the raw files over HTTP(S), without ever leaving a bad file behind.

Each file is streamed into a temporary file next to its target and renamed over
the target only after every check passed: the status was 200, the body is not an
HTML page, it is as long as the server announced, it starts with the expected CSV
header, and its size and SHA-256 match the configured ones (when configured).
A failure removes the temporary file and leaves any previous file untouched.

Redirects are followed only to the same host (or a configured list of hosts) and
never from https to http; the URL the file finally came from is logged. A body
larger than ``max_bytes`` is cut off and refused, announced length or not.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from book_recommender.errors import ProjectError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16
_HTML_STARTS = (b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")


class DownloadError(ProjectError, RuntimeError):
    """A file could not be downloaded; the message says what to do instead."""


class _Permanent(DownloadError):
    """A failure that retrying cannot fix (404, wrong content, checksum)."""


@dataclass(frozen=True)
class Expected:
    """What a downloaded file must look like; ``None`` skips a check."""

    header: Sequence[str] = ()  # column names the first line must contain
    size: int | None = None  # exact size in bytes
    sha256: str | None = None
    min_bytes: int = 1
    max_bytes: int | None = None  # refuse (and stop reading) a larger body


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to the same host or an allowed one, and never
    from https to http."""

    def __init__(self, allowed_hosts: Sequence[str] = ()) -> None:
        self.allowed_hosts = set(allowed_hosts)

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if old.scheme == "https" and new.scheme != "https":
            raise _Permanent(
                f"{req.full_url} redirected from https to {newurl}: refused."
            )
        if new.hostname != old.hostname and new.hostname not in self.allowed_hosts:
            raise _Permanent(
                f"{req.full_url} redirected to another host ({newurl}): refused. "
                "Allow it in data_processing.download.allowed_redirect_hosts if "
                "you trust it."
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _is_html(head: bytes, content_type: str) -> bool:
    if "html" in content_type.lower():
        return True
    return head.lstrip().lower().startswith(_HTML_STARTS)


def _check_header(head: bytes, expected: Expected, url: str) -> None:
    if not expected.header:
        return
    first_line = head.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    missing = [name for name in expected.header if name not in first_line]
    if missing:
        raise _Permanent(
            f"{url} does not look like the expected CSV: its first line "
            f"{first_line[:200]!r} lacks the column(s) {missing}."
        )


def _check_size_and_digest(
    url: str, size: int, sha256: str, expected: Expected
) -> None:
    """Refuses a body too small, of another size or digest than expected."""
    if size < expected.min_bytes:
        raise _Permanent(
            f"{url} is {size} bytes, less than the expected minimum of "
            f"{expected.min_bytes}: a truncated or empty file."
        )
    if expected.size is not None and size != expected.size:
        raise _Permanent(
            f"{url} is {size} bytes, but {expected.size} were expected: the file "
            "is truncated or a different version."
        )
    if expected.sha256 and sha256 != expected.sha256.lower():
        raise _Permanent(
            f"{url} has SHA-256 {sha256}, but {expected.sha256} was expected: the "
            "file is corrupt or a different version."
        )


def _open(url: str, timeout: float, allowed_hosts: Sequence[str]):
    """The response to a GET of ``url``; an HTTP error is transient (408, 425,
    429, 5xx: retried) or permanent."""
    request = urllib.request.Request(url, headers={"User-Agent": "book-recommender"})
    opener = urllib.request.build_opener(_SameHostRedirects(allowed_hosts))
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        message = f"{url} answered HTTP {error.code} {error.reason}"
        if error.code in {408, 425, 429} or error.code >= 500:  # noqa: PLR2004
            raise DownloadError(message) from error
        raise _Permanent(message) from error


def _fetch_once(
    url: str,
    tmp: Path,
    expected: Expected,
    timeout: float,
    allowed_hosts: Sequence[str] = (),
) -> dict:
    """One attempt: the body into ``tmp``, checked; the file's size and digest
    and the URL it finally came from."""
    with _open(url, timeout, allowed_hosts) as response:
        final_url = response.geturl()
        announced = response.headers.get("Content-Length")
        cap = expected.max_bytes
        if cap is not None and announced is not None and int(announced) > cap:
            raise _Permanent(
                f"{final_url} announces {announced} bytes, more than "
                f"data_processing.download.max_bytes ({cap})."
            )
        content_type = response.headers.get("Content-Type", "")
        digest, size, head = hashlib.sha256(), 0, b""
        with tmp.open("wb") as out:
            try:
                while chunk := response.read(_CHUNK):
                    if len(head) < 4096:  # noqa: PLR2004
                        head += chunk[: 4096 - len(head)]
                    digest.update(chunk)
                    size += len(chunk)
                    if cap is not None and size > cap:
                        raise _Permanent(
                            f"{final_url} sent more than "
                            f"data_processing.download.max_bytes ({cap} bytes): "
                            "stopped reading."
                        )
                    out.write(chunk)
            except http.client.IncompleteRead as error:
                size += len(error.partial)
                raise DownloadError(
                    f"{url} was cut off: {size} of the announced {announced} "
                    "bytes arrived."
                ) from error
    if _is_html(head, content_type):
        raise _Permanent(
            f"{url} returned an HTML page ({content_type or 'no Content-Type'}, "
            f"{size} bytes), not a CSV file: probably an error or login page."
        )
    if announced is not None and size != int(announced):
        raise DownloadError(
            f"{url} was cut off: {size} of the announced {announced} bytes arrived."
        )
    _check_header(head, expected, url)
    sha256 = digest.hexdigest()
    _check_size_and_digest(url, size, sha256, expected)
    return {"bytes": size, "sha256": sha256, "final_url": final_url}


_TRANSIENT = (
    DownloadError,
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


def _attempt(
    url: str,
    target: Path,
    expected: Expected,
    timeout: float,
    allowed_hosts: Sequence[str],
) -> dict[str, Any]:
    """One download into a temporary file beside ``target``, moved over it
    only when every check passed (atomic on one file system)."""
    handle, name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".part", dir=target.parent
    )
    os.close(handle)
    tmp = Path(name)
    try:
        result = _fetch_once(url, tmp, expected, timeout, allowed_hosts)
        os.replace(tmp, target)
        logger.info(
            "Downloaded %s to %s (%s bytes, from %s)",
            url,
            target,
            result["bytes"],
            result["final_url"],
        )
        return result
    finally:
        tmp.unlink(missing_ok=True)


def download_file(  # noqa: PLR0913
    url: str,
    target: Path,
    expected: Expected = Expected(),
    *,
    timeout: float = 60.0,
    retries: int = 3,
    backoff: float = 2.0,
    allowed_hosts: Sequence[str] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Downloads ``url`` to ``target`` atomically; retries transient failures.

    Transient failures (connection refused or reset, timeouts, a body cut short,
    HTTP 5xx/429) are retried ``retries`` times, waiting ``backoff * 2**n``
    seconds. Anything else fails at once. Raises ``DownloadError``; ``target`` is
    then exactly as it was before the call.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    attempts = retries + 1
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            result = _attempt(url, target, expected, timeout, allowed_hosts)
            return {"url": url, "path": str(target), **result}
        except _Permanent:
            raise
        except _TRANSIENT as error:
            last = error
            if attempt < attempts:
                wait = backoff * 2 ** (attempt - 1)
                logger.warning(
                    "Download of %s failed (attempt %s of %s): %s; retrying in %.1f s",
                    url,
                    attempt,
                    attempts,
                    error,
                    wait,
                )
                sleep(wait)
    reason = getattr(last, "reason", last)
    raise DownloadError(
        f"Could not download {url} after {attempts} attempt(s): {reason}"
    ) from last


def file_digest(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a local file, for the run's record of its inputs."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "sha256": digest.hexdigest(),
    }
