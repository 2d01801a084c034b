"""The control socket: permissions, peer checks, garbage, slow clients, stale sockets, and a real run."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest
from support import wait_for
from support.live_run import Client

from tuigpt.control import server as control_server
from tuigpt.control.server import ControlServer
from tuigpt.run.events import EventBus, Notice


def make_server(tmp_path: Path) -> tuple[ControlServer, EventBus, list]:
    bus = EventBus()
    sent: list = []
    notices: list[str] = []
    bus.subscribe(lambda e: notices.append(e.message) if isinstance(e, Notice) else None)
    server = ControlServer(tmp_path, sent.append, bus.publish, bus.subscribe)
    server.notices = notices  # type: ignore[attr-defined]
    return server, bus, sent


def test_socket_is_0600_and_removed_on_stop(tmp_path: Path) -> None:
    server, _, _ = make_server(tmp_path)
    assert server.start()
    path = tmp_path / "control.sock"
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    server.stop()
    assert not path.exists()
    server.stop()  # idempotent (atexit calls it again)


def test_a_different_uid_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, _, sent = make_server(tmp_path)
    monkeypatch.setattr(control_server, "peer_uid", lambda conn: os.getuid() + 1)
    server.start()
    try:
        client = Client(tmp_path / "control.sock")
        reply = client.read()
        assert reply is not None and reply["ok"] is False and "refused a connection from uid" in reply["error"]
        assert client.read() is None, "the server hung up"
        client.close()
        assert sent == [] and server.clients == 0
        wait_for(lambda: any("refused a connection from uid" in n for n in server.notices), 5,  # type: ignore[attr-defined]
                 "the refusal in the run's log")
    finally:
        server.stop()


def test_the_peer_uid_is_read_from_the_kernel(tmp_path: Path) -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    try:
        assert control_server.peer_uid(a) in (os.getuid(), None)  # None only where SO_PEERCRED is missing
    finally:
        a.close()
        b.close()


def test_a_stale_socket_is_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "control.sock"))
    stale.close()  # the file stays, nobody listens: what SIGKILL leaves behind
    server, _, _ = make_server(tmp_path)
    assert server.start()
    assert any("stale control socket" in n for n in server.notices)  # type: ignore[attr-defined]
    second, _, _ = make_server(tmp_path)
    assert not second.start(), "a second server must not steal a live socket"
    assert (tmp_path / "control.sock").exists()
    server.stop()


def test_a_client_that_never_reads_is_dropped_without_blocking_the_publisher(tmp_path: Path) -> None:
    server, bus, _ = make_server(tmp_path)
    server.start()
    try:
        client = Client(tmp_path / "control.sock")
        client.send({"cmd": "subscribe"})
        wait_for(lambda: any("connected" in n for n in server.notices), 5, "subscribe")  # type: ignore[attr-defined]
        event = Notice(level="info", message="x" * 2000)  # (iterations are rate-limited; notices are not)
        t0 = time.monotonic()
        slowest = 0.0
        for _ in range(20_000):
            t = time.monotonic()
            bus.publish(event)
            slowest = max(slowest, time.monotonic() - t)
            if server.clients == 0 or any("did not keep up" in n for n in server.notices):  # type: ignore[attr-defined]
                break
        assert server.clients == 0, "the stuck client was dropped"
        assert slowest < 0.5, f"a publish waited {slowest:.2f} s on a client"
        assert time.monotonic() - t0 < 10
        assert any("did not keep up" in n for n in server.notices)  # type: ignore[attr-defined]
        client.close()
    finally:
        server.stop()
