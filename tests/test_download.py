"""The raw-data download against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession

from book_recommender.download import DownloadError
from book_recommender.params import parse
from book_recommender.pipelines.data_processing.nodes import fetch_raw_data
from tests.conftest import PROJECT_ROOT, data_processing_params

DEMO = PROJECT_ROOT / "data" / "01_raw"
NAMES = ("Books.csv", "Ratings.csv", "Users.csv")
COLUMNS = {
    "user_id": "User-ID",
    "item_id": "ISBN",
    "item_info": "Book-Title",
    "rating": "Book-Rating",
}


class _Handler(BaseHTTPRequestHandler):
    """``/<mode>/<file>``: serves a demo CSV, or fails the way ``mode`` says."""

    requests: list[str] = []
    failures_left: dict[str, int] = {}

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status, body, content_type="text/csv", length=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        _, mode, name = self.path.split("/", 2)
        self.requests.append(self.path)
        body = (DEMO / name).read_bytes() if (DEMO / name).exists() else b""
        if mode == "flaky" and self.failures_left.get(name, 0) > 0:
            self.failures_left[name] -= 1
            self._send(503, b"busy", "text/plain")
        elif mode in {"good", "flaky"} and body:
            self._send(200, body)
        elif mode == "cut":
            # Announces the whole file, sends half, then drops the connection.
            self._send(200, body[: len(body) // 2], length=len(body))
            self.close_connection = True
        elif mode == "html":
            self._send(200, b"<!DOCTYPE html><html><body>Not found</body></html>")
        elif mode == "moved":  # a redirect on the same host
            self._redirect(f"/good/{name}")
        elif mode == "away":  # a redirect to another host name (same server)
            port = self.server.server_address[1]
            self._redirect(f"http://localhost:{port}/good/{name}")
        elif mode == "endless":  # no Content-Length: the body streams until closed
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.end_headers()
            self.wfile.write(body * 20)
            self.close_connection = True
        elif mode == "swapped":  # Users.csv served under every name
            self._send(200, (DEMO / "Users.csv").read_bytes())
        else:
            self._send(404, b"The specified blob does not exist.", "text/plain")


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _params(folder: Path, url: str | None, **download) -> dict:
    params = data_processing_params(
        download={
            "remote_url": url,
            "timeout_seconds": 5,
            "retries": 1,
            "backoff_seconds": 0.01,
            **download,
        }
    )
    params["data"]["folder"] = str(folder)
    return parse("data_processing", params)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def previous(tmp_path):
    """A folder holding an older, good copy of the files: a download must not harm it."""
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in NAMES:
        (folder / name).write_bytes((DEMO / name).read_bytes()[:5000])
    return folder, {name: _sha(folder / name) for name in NAMES}


def _left_as_it_was(folder: Path, digests: dict[str, str]) -> None:
    assert {name: _sha(folder / name) for name in NAMES} == digests
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)  # no temp files


def test_missing_files_arrive_intact(server, tmp_path):
    folder = tmp_path / "raw"
    described = fetch_raw_data(COLUMNS, _params(folder, f"{server}/good"))
    for name in NAMES:
        assert (folder / name).read_bytes() == (DEMO / name).read_bytes()
    assert described["items_file"]["sha256"] == _sha(DEMO / "Books.csv")
    assert described["items_file"]["url"] == f"{server}/good/Books.csv"
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)


def test_present_files_are_not_downloaded_again(server, previous):
    folder, digests = previous
    _Handler.requests.clear()
    fetch_raw_data(COLUMNS, _params(folder, f"{server}/good"))
    assert _Handler.requests == []
    _left_as_it_was(folder, digests)


@pytest.mark.parametrize(
    ("mode", "download", "says"),
    [
        ("cut", {}, "was cut off"),
        ("missing", {}, "HTTP 404"),
        ("html", {}, "returned an HTML page"),
        ("swapped", {}, "does not look like the expected CSV"),
        ("good", {"expected": {"Books.csv": {"sha256": "0" * 64}}}, "has SHA-256"),
        ("good", {"expected": {"Books.csv": {"size": 123}}}, "but 123 were expected"),
        ("away", {}, "redirected to another host (http://localhost:"),
        ("endless", {"max_bytes": 100_000}, "sent more than"),
        ("good", {"max_bytes": 1000}, "more than data_processing.download.max_bytes"),
    ],
)
def test_a_bad_download_leaves_the_previous_files_untouched(
    server, previous, mode, download, says
):
    folder, digests = previous
    params = _params(folder, f"{server}/{mode}", overwrite=True, **download)
    with pytest.raises(DownloadError) as error:
        fetch_raw_data(COLUMNS, params)
    message = str(error.value)
    assert says in message
    assert f"{server}/{mode}/Books.csv" in message  # names the file it fetched
    assert "The existing file was left as it was" in message
    _left_as_it_was(folder, digests)


@pytest.mark.parametrize(
    ("mode", "says", "requests"),
    [("cut", "after 3 attempt", 3), ("missing", "HTTP 404", 1)],
)
def test_transient_failures_are_retried_and_permanent_ones_are_not(
    server, previous, mode, says, requests
):
    folder, digests = previous
    _Handler.requests.clear()
    with pytest.raises(DownloadError, match=says):
        fetch_raw_data(
            COLUMNS, _params(folder, f"{server}/{mode}", overwrite=True, retries=2)
        )
    assert _Handler.requests == [f"/{mode}/Books.csv"] * requests
    _left_as_it_was(folder, digests)


def test_a_transient_server_error_is_retried(server, tmp_path):
    _Handler.failures_left.update({"Books.csv": 1, "Users.csv": 1})
    folder = tmp_path / "raw"
    fetch_raw_data(COLUMNS, _params(folder, f"{server}/flaky", retries=1))
    assert _sha(folder / "Books.csv") == _sha(DEMO / "Books.csv")


def test_an_unreachable_host_says_how_to_place_the_files_by_hand(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tmp_path / "raw"
    with pytest.raises(DownloadError) as error:
        fetch_raw_data(COLUMNS, _params(folder, f"http://127.0.0.1:{port}/data"))
    message = str(error.value)
    assert "refused" in message.lower()
    assert f"put them in {folder}/ by hand" in message
    assert "Books.csv, Ratings.csv, Users.csv" in message
    assert not folder.exists() or not any(folder.iterdir())


def test_without_a_url_a_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="remote_url") as error:
        fetch_raw_data(COLUMNS, _params(tmp_path, None))
    assert str(tmp_path / "Books.csv") in str(error.value)


@pytest.mark.e2e
def test_bookcrossing_env_downloads_then_processes(spark, server, project_copy):
    """`kedro run --env bookcrossing --pipeline data_processing` on an empty folder."""
    raw = project_copy / "data/01_raw/book-crossing"
    assert not raw.exists() or not any(raw.iterdir())
    params = {"data_processing": {"download": {"remote_url": f"{server}/good"}}}
    with KedroSession.create(
        project_path=project_copy, env="bookcrossing", runtime_params=params
    ) as session:
        session.run(pipeline_names=["data_processing"])
    for name in NAMES:
        assert _sha(raw / name) == _sha(DEMO / name)
    stats = json.loads(
        (
            project_copy / "data/book-crossing/05_model_input/data_statistics.json"
        ).read_text()
    )
    assert stats["rows"]["ratings"]["file"]["sha256"] == _sha(DEMO / "Ratings.csv")
    assert stats["rows"]["ratings"]["read"] == 60_000
    shutil.rmtree(project_copy / "data/book-crossing")


def test_overwrite_without_a_url_is_a_config_error(previous):
    folder, digests = previous
    with pytest.raises(ValueError, match="overwrite is true but .*remote_url"):
        fetch_raw_data(COLUMNS, _params(folder, None, overwrite=True))
    _left_as_it_was(folder, digests)


def test_a_redirect_on_the_same_host_is_followed_and_the_final_url_kept(
    server, tmp_path, caplog
):
    folder = tmp_path / "raw"
    with caplog.at_level("INFO"):
        described = fetch_raw_data(COLUMNS, _params(folder, f"{server}/moved"))
    assert described["items_file"]["url"] == f"{server}/moved/Books.csv"
    assert described["items_file"]["final_url"] == f"{server}/good/Books.csv"
    assert _sha(folder / "Books.csv") == _sha(DEMO / "Books.csv")
    assert f"from {server}/good/Books.csv" in caplog.text


def test_a_redirect_to_an_allowed_host_is_followed(server, tmp_path):
    folder = tmp_path / "raw"
    params = _params(folder, f"{server}/away", allowed_redirect_hosts=["localhost"])
    described = fetch_raw_data(COLUMNS, params)
    assert described["users_file"]["final_url"].startswith("http://localhost:")
