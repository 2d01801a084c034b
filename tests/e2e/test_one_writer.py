"""One writer per run directory and a control socket no client can break, against a real run in a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import torch
from support import stop_process
from support.live_run import Client, start_run, wait_for, wait_for_socket, write_config

from tuigpt.control.connection import IDLE_TIMEOUT
from tuigpt.control.server import MAX_CLIENTS
from tuigpt.run.lock import holder
from tuigpt.run.metrics_log import read_metrics
from tuigpt.run.status import summarize

from conftest import REPO


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "tuigpt", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def _snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    """What a refused start must not change: every file but the ones the live run itself appends to."""
    return {p.name: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in run_dir.iterdir()
            if p.name not in ("metrics.jsonl", "control.sock")}


def test_a_second_start_and_a_resume_of_a_live_run_are_refused_and_a_kill_leaves_no_lock(tmp_path: Path) -> None:
    config = write_config(tmp_path, eval_interval=20)
    proc = start_run(config)
    run_dir = tmp_path / "runs" / "live"
    try:
        path = wait_for_socket(run_dir, proc)
        wait_for(lambda: (run_dir / "last.pt").exists(), 120, "the first checkpoint")
        steer = Client(path)  # no more checkpoints: what is in the folder now must stay as it is
        steer.send({"cmd": "subscribe"})
        steer.send({"cmd": "set_eval_interval", "interval": 1_000_000_000})
        steer.read_until(lambda r: r.get("type") == "eval_interval")
        steer.close()
        assert holder(run_dir) == proc.pid
        stale = run_dir / ".last.pt.abc123.tmp"  # what a checkpoint write in progress looks like
        stale.write_bytes(b"in progress")
        before = _snapshot(run_dir)
        size = (run_dir / "metrics.jsonl").stat().st_size

        for extra in ([], ["--resume"]):
            done = _cli(str(config), "--headless", *extra)
            assert done.returncode == 2, done.stderr
            line = done.stderr.strip()
            assert line.count("\n") == 0 and f"PID {proc.pid}" in line and f"tuigpt watch {run_dir}" in line, line
            assert "tuigpt training" not in done.stdout
        assert _snapshot(run_dir) == before, "the refused starts touched nothing (the temp file included)"
        assert (run_dir / "metrics.jsonl").stat().st_size >= size, "metrics.jsonl was not cut under the live run"
        assert sum(r["type"] == "start" for r in read_metrics(run_dir / "metrics.jsonl")) == 1
        assert summarize(run_dir, lambda d: holder(d) is not None).state == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert holder(run_dir) is None, "the kernel released the lock with the process"
    saved = int(torch.load(run_dir / "last.pt", weights_only=True)["iter_num"])
    resumed = _cli(str(config), "--headless", "--resume", f"--max_iters={saved + 5}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not stale.exists(), "the resume cleaned what the killed run left"
    assert not (run_dir / "run.lock").exists()


def test_malformed_and_idle_connections_never_lock_watchers_out(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    proc = start_run(config)
    run_dir = tmp_path / "runs" / "live"
    try:
        path = wait_for_socket(run_dir, proc)
        for k in range(2 * MAX_CLIENTS):  # one-shot malformed messages: each answered, each slot freed
            c = Client(path)
            c.send_raw([b'{"cmd": []}\n', b'{"cmd": {}}\n', b"[" * 30_000 + b"]" * 30_000 + b"\n"][k % 3])
            reply = c.read()
            assert reply is not None and reply["ok"] is False
            c.close()
        idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(MAX_CLIENTS)]
        for s in idle:
            s.connect(str(path))
        early = Client(path)  # while every idle connection is still open: a watcher gets in at once
        early.send({"cmd": "subscribe"})
        assert early.read_until(lambda r: r.get("type") == "reply")["ok"] is True
        early.close()  # (one that stops reading is dropped: it is not read while the idle ones are below)
        for s in idle:  # each idle connection is closed by the run (idle, or its slot given up), never by the test
            s.settimeout(IDLE_TIMEOUT * 3 + 30)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            assert b"idle" in data or b"needed the slot" in data
            s.close()
        watcher = Client(path)
        watcher.send({"cmd": "subscribe"})
        watcher.read_until(lambda r: r.get("type") == "iter")
        watcher.send({"cmd": "sample", "prompt": "\n", "max_new_tokens": 20, "temperature": 1e-300})
        watcher.read_until(lambda r: r.get("type") == "sample")
        first = watcher.read_until(lambda r: r.get("type") == "iter")["iter"]
        watcher.read_until(lambda r: r.get("type") == "iter" and r["iter"] > first)  # training went on
        watcher.send({"cmd": "stop", "save": False})
        watcher.read_until(lambda r: r.get("type") == "finish")
        assert proc.wait(60) == 0
        output = proc.output()
        assert "Traceback" not in output
        notices = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "notice"]
        assert len(notices) < 60, "the refusals did not flood the run's log"
    finally:
        stop_process(proc)
