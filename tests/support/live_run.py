"""A real headless tuigpt run in a subprocess, for the watch / control socket / runs tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import yaml
from conftest import REPO, TINY
from support import corpus


def write_config(dir: Path, **overrides: Any) -> Path:
    values = dict(TINY, out_dir=str(dir / "runs"), data_path=str(corpus.shakespeare()), run_name="live", max_iters=1_000_000,
                  log_interval=10, eval_interval=200)
    values.update(overrides)
    path = dir / "live.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


class RunProcess(subprocess.Popen[str]):
    """A headless run whose output is read all along (as a terminal would), kept for ``output()``."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        super().__init__(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.stdout is not None
        for line in self.stdout:
            self._lines.append(line)

    def output(self) -> str:
        """Everything printed so far; all of it once the process has ended."""
        if self.poll() is not None:
            self._reader.join(30)
        return "".join(self._lines)


def start_run(config: Path, *extra: str) -> RunProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    return RunProcess([sys.executable, "-m", "tuigpt", str(config), "--headless", *extra], env)


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_socket(run_dir: Path, proc: RunProcess, timeout: float = 90.0) -> Path:
    sock = run_dir / "control.sock"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the run exited early ({proc.returncode}):\n{proc.output()}")
        return sock.exists() and (run_dir / "metrics.jsonl").exists() and b'"type":"iter"' in (run_dir / "metrics.jsonl").read_bytes()

    wait_for(ready, timeout, "the run's control socket and first iterations")
    return sock


class Client:
    """A raw control-socket client: send lines, read JSON lines."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(str(path))
        self.buf = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, obj: dict[str, Any]) -> None:
        self.send_raw(json.dumps(obj).encode() + b"\n")

    def read(self) -> dict[str, Any] | None:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def read_until(self, predicate: Callable[[dict[str, Any]], bool], limit: int = 100_000) -> dict[str, Any]:
        for _ in range(limit):
            record = self.read()
            assert record is not None, "the server closed the connection"
            if predicate(record):
                return record
        raise AssertionError("no matching record")

    def close(self) -> None:
        self.sock.close()
