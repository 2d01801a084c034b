"""The control socket of a real run in a subprocess: two subscribers, garbage, oversized messages."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from support.live_run import Client, start_run, wait_for_socket, write_config

from tuigpt.control.wire import MAX_MESSAGE


def test_a_real_run_two_clients_garbage_and_oversized_messages(tmp_path: Path) -> None:
    """A headless run in a subprocess: two subscribers both stream, junk is refused, training goes on."""
    config = write_config(tmp_path)
    proc = start_run(config)
    run_dir = tmp_path / "runs" / "live"
    try:
        path = wait_for_socket(run_dir, proc)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        a, b = Client(path), Client(path)
        for c in (a, b):
            c.send({"cmd": "subscribe"})
            c.read_until(lambda r: r.get("type") == "reply" and r["cmd"] == "subscribe")
        first = a.read_until(lambda r: r.get("type") == "iter")["iter"]
        b.read_until(lambda r: r.get("type") == "iter")

        junk = Client(path)
        junk.send_raw(b"\x00\xffnot json at all\n")
        assert junk.read() == {"type": "reply", "ok": False, "cmd": None, "error": "not JSON"}
        junk.send_raw(b"[1, 2]\n")
        assert junk.read()["error"] == "not a JSON object"
        junk.send({"cmd": "format_disk"})
        assert "unknown command" in junk.read()["error"]
        junk.send_raw(b"x" * (MAX_MESSAGE + 10))  # no newline: over the limit, refused and hung up
        assert "over 64 KiB" in junk.read()["error"]
        assert junk.read() is None
        junk.close()

        # training went on; the rejections are in the run's own log and reached the watchers
        later = a.read_until(lambda r: r.get("type") == "iter" and r["iter"] > first + 20)["iter"]
        assert later > first
        b.read_until(lambda r: r.get("type") == "notice" and "over 64 KiB" in r["message"])

        b.send({"cmd": "stop", "save": True})
        assert b.read_until(lambda r: r.get("type") == "reply")["ok"] is True
        a.read_until(lambda r: r.get("type") == "finish")
        assert proc.wait(60) == 0
        assert not path.exists(), "the socket is removed on exit"
        assert (run_dir / "last.pt").exists()
        log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        messages = [r["message"] for r in log if r["type"] == "notice"]
        assert any("not JSON" in m for m in messages) and any("watcher 2: stop" in m for m in messages)
        a.close()
        b.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
