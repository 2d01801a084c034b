"""Downloads against a local HTTP server: verified, atomic, and a clear error for each way they fail."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import tuigpt.engine.data as data
from tuigpt.engine.data import download_file, load_dataset, shakespeare_path
from tuigpt.run.errors import UserError


class Server:
    """tiny Shakespeare served from 127.0.0.1: /good, /short (cut mid-body), /missing (404), /slow."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                if self.path == "/missing":
                    self.send_error(404)
                    return
                if self.path == "/slow":
                    time.sleep(2)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # /short promises the whole body, sends half, then the connection closes (HTTP/1.0)
                self.wfile.write(body[: len(body) // 2] if self.path == "/short" else body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(shakespeare: Path) -> Iterator[Server]:
    s = Server(shakespeare.read_bytes())
    yield s
    s.stop()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(cache))
    monkeypatch.delenv("TUIGPT_SHAKESPEARE_URL", raising=False)
    return cache


def refused_url() -> str:
    """A URL on a local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/input.txt"


SHA = data.SHAKESPEARE_SHA256


def test_good_download_lands_verified(server: Server, tmp_path: Path, shakespeare: Path) -> None:
    dest = tmp_path / "dl" / "input.txt"
    assert download_file(f"{server.url}/good", dest, SHA) == dest
    assert dest.read_bytes() == shakespeare.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["input.txt"]  # no temp file left over


@pytest.mark.parametrize(
    ("path", "sha", "timeout", "reason"),
    [
        ("/good", "0" * 64, 30.0, "sha256 mismatch"),
        ("/short", SHA, 30.0, r"transfer cut short \(557697 of 1115394 bytes\)"),
        ("/short", None, 30.0, "transfer cut short"),  # caught by length even without a hash
        ("/missing", SHA, 30.0, "HTTP 404 Not Found"),
        ("/slow", SHA, 0.3, "timed out"),
    ],
)
def test_failed_download_leaves_nothing(
    server: Server, tmp_path: Path, path: str, sha: str | None, timeout: float, reason: str
) -> None:
    dest = tmp_path / "dl" / "input.txt"
    with pytest.raises(UserError, match=reason) as err:
        download_file(f"{server.url}{path}", dest, sha, timeout=timeout)
    assert f"{server.url}{path}" in str(err.value) and "\n" not in str(err.value)
    assert list(dest.parent.iterdir()) == []


def test_connection_refused_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "dl" / "input.txt"
    with pytest.raises(UserError, match="could not download .*refused"):
        download_file(refused_url(), dest, SHA, timeout=5)
    assert list(dest.parent.iterdir()) == []


def test_failed_download_keeps_the_previous_file(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "input.txt"
    dest.write_text("an older copy")
    with pytest.raises(UserError):
        download_file(f"{server.url}/short", dest, SHA)
    assert dest.read_text() == "an older copy"
    assert [p.name for p in tmp_path.iterdir()] == ["input.txt"]


def test_shakespeare_downloads_once_then_works_offline(
    server: Server, cache: Path, monkeypatch: pytest.MonkeyPatch, gpt2_bpe: Path
) -> None:
    monkeypatch.setattr(data, "SHAKESPEARE_URL", f"{server.url}/good")
    first = load_dataset("shakespeare_char")
    assert first.tokenizer.vocab_size == 65
    path = cache / "data" / "tinyshakespeare.txt"
    assert shakespeare_path() == path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA
    assert str(path) in first.source
    server.stop()  # offline from here on
    again = load_dataset("shakespeare_char")
    assert len(again.train) == len(first.train)
    assert load_dataset("shakespeare").tokenizer.name == "gpt2"  # same file, other tokenizer
    assert server.requests == ["/good"]


def test_env_var_overrides_the_url(server: Server, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "SHAKESPEARE_URL", refused_url())
    monkeypatch.setenv("TUIGPT_SHAKESPEARE_URL", f"{server.url}/good")
    assert load_dataset("shakespeare_char").tokenizer.vocab_size == 65
    assert server.requests == ["/good"]


def test_offline_with_nothing_cached_says_where_to_put_the_file(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "SHAKESPEARE_URL", refused_url())
    with pytest.raises(UserError) as err:
        load_dataset("shakespeare_char")
    message = str(err.value)
    assert message.startswith("could not download tiny Shakespeare")
    assert f"put the file at {cache / 'data' / 'tinyshakespeare.txt'}" in message
    assert "data_path=FILE" in message
    assert list((cache / "data").iterdir()) == []


def test_cached_file_with_wrong_hash_is_replaced(
    server: Server, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "SHAKESPEARE_URL", f"{server.url}/good")
    path = shakespeare_path()
    path.parent.mkdir(parents=True)
    path.write_text("half a Shakespeare")
    assert load_dataset("shakespeare_char").tokenizer.vocab_size == 65
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA

    path.write_text("half a Shakespeare")
    monkeypatch.setattr(data, "SHAKESPEARE_URL", f"{server.url}/missing")
    with pytest.raises(UserError, match="HTTP 404.*has the wrong sha256"):
        load_dataset("shakespeare_char")
