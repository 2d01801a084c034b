"""Where the tests find their corpus (support/corpus.py): a checkout without ../shared/data downloads it once into a
per-user cache, checked against its sha256, and with no network says why the tests that need it skip (issue 27: the
README's test command gave 28 errors and a hang without ../shared/data)."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import Iterator

import pytest
from support import corpus


@pytest.fixture
def server(shakespeare: Path) -> Iterator[str]:
    body = {"/good": shakespeare.read_bytes(), "/bad": b"not the corpus\n"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            data = body.get(self.path)
            self.send_response(200 if data else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def no_local_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A checkout with no ../shared beside it and an empty per-user cache."""
    monkeypatch.setattr(corpus, "REPO", tmp_path / "checkout" / "repo")
    monkeypatch.delenv("TUIGPT_TEST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(corpus, "_found", {})
    monkeypatch.setattr(corpus, "_why", {})
    return tmp_path / "cache" / "tuigpt-test-data"


def test_a_checkout_without_the_data_downloads_it_once(server: str, no_local_copy: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus, "SHAKESPEARE_URL", f"{server}/good")
    path = corpus.shakespeare()
    assert path == no_local_copy / corpus.SHAKESPEARE_NAME and corpus._sha256(path) == corpus.SHAKESPEARE_SHA256
    monkeypatch.setattr(corpus, "SHAKESPEARE_URL", f"{server}/gone")  # a later session finds the cached copy
    monkeypatch.setattr(corpus, "_found", {})
    assert corpus.shakespeare() == path


def test_a_wrong_download_or_no_network_skips_saying_what_to_do(server: str, no_local_copy: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus, "SHAKESPEARE_URL", f"{server}/bad")
    with pytest.raises(pytest.skip.Exception, match="failed its sha256 check: put tinyshakespeare.txt in "
                                                    "../shared/data beside the repository or in a folder named by "
                                                    "TUIGPT_TEST_DATA"):
        corpus.shakespeare()
    assert not (no_local_copy / corpus.SHAKESPEARE_NAME).exists()  # nothing half-right is kept
    monkeypatch.setattr(corpus, "_found", {})
    monkeypatch.setattr(corpus, "SHAKESPEARE_URL", "http://127.0.0.1:9/unreachable")
    with pytest.raises(pytest.skip.Exception, match="could not be downloaded"):
        corpus.shakespeare()


def test_test_data_names_a_folder_laid_out_like_shared(shakespeare: Path, no_local_copy: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / corpus.SHAKESPEARE_NAME).write_bytes(shakespeare.read_bytes())
    monkeypatch.setenv("TUIGPT_TEST_DATA", str(mine))
    monkeypatch.setattr(corpus, "SHAKESPEARE_URL", "http://127.0.0.1:9/never-asked")
    assert corpus.shakespeare() == mine / corpus.SHAKESPEARE_NAME
