"""`tuigpt runs [--out_dir DIR]`: the runs under checkpoints/, so a user on a remote box finds theirs.

Each run's metrics.jsonl is read only at its head (the first "start" record) and its tail (seek from the
end), so a million-line history costs the same as a short one. A run is "running" when its control
socket answers a ping.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tuigpt.control_server import encode, socket_path
from tuigpt.metrics_log import METRICS_FILE, parse_record

HEAD_BYTES = 64 * 1024
TAIL_BYTES = 256 * 1024


@dataclass(frozen=True)
class RunSummary:
    """One line of `tuigpt runs`; None where the file does not say."""

    name: str
    path: Path
    state: str  # running, paused, done, stopped, failed, interrupted
    iteration: int | None
    max_iters: int | None
    best_val_loss: float | None
    tokens_per_sec: float | None
    device: str | None
    updated: float


def _records(raw: bytes, partial_first: bool) -> list[dict[str, Any]]:
    lines = raw.split(b"\n")
    if partial_first:
        lines = lines[1:]
    out = []
    for line in lines[:-1]:  # the last piece has no newline yet (or is empty)
        record = parse_record(line)
        if record is not None:
            out.append(record)
    return out


def read_ends(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Records from the first HEAD_BYTES and the last TAIL_BYTES of a metrics.jsonl."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        head = f.read(min(size, HEAD_BYTES))
        start = max(0, size - TAIL_BYTES)
        f.seek(start)
        tail = f.read(size - start)
    return _records(head, False), _records(tail, start > 0)


def ping(run_dir: Path, timeout: float = 0.5) -> bool:
    """True when a tuigpt process answers on the run's control socket."""
    path = socket_path(run_dir)
    if not path.exists():
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        sock.sendall(encode({"cmd": "ping"}))
        buf = b""
        while b"\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            buf += chunk
        return json.loads(buf.split(b"\n", 1)[0]).get("ok") is True
    except (OSError, ValueError):
        return False
    finally:
        sock.close()


def summarize(run_dir: Path) -> RunSummary:
    path = run_dir / METRICS_FILE
    head, tail = read_ends(path)
    last: dict[str, dict[str, Any]] = {}
    start_in_tail = None
    for record in tail:
        kind = record.get("type", "")
        if kind == "start":
            start_in_tail = record
            last.pop("finish", None), last.pop("failed", None)  # a later session: earlier endings do not count
        last[kind] = record
    start = start_in_tail or next((r for r in reversed(head) if r.get("type") == "start"), {})
    if ping(run_dir):
        state = "paused" if last.get("state", {}).get("state") == "PAUSED" else "running"
    elif "failed" in last:
        state = "failed"
    elif "finish" in last:
        state = "done" if last["finish"].get("reason") == "done" else "stopped"
    else:
        state = "interrupted"
    iteration = last.get("finish", last.get("failed", last.get("iter", {}))).get("iter")
    best = last.get("finish", {}).get("best_val_loss")
    if best is None:
        best = last.get("eval", {}).get("best_val_loss")
    return RunSummary(
        name=run_dir.name, path=run_dir, state=state, iteration=iteration, max_iters=start.get("max_iters"),
        best_val_loss=best, tokens_per_sec=last.get("iter", {}).get("tokens_per_sec"), device=start.get("device"),
        updated=path.stat().st_mtime,
    )


def ago(seconds: float) -> str:
    """A relative time: "12 s ago", "5 min ago", "3 h ago", "2 d ago"."""
    seconds = max(0.0, seconds)
    for limit, div, unit in ((90, 1, "s"), (90 * 60, 60, "min"), (36 * 3600, 3600, "h")):
        if seconds < limit:
            return f"{seconds / div:.0f} {unit} ago"
    return f"{seconds / 86400:.0f} d ago"


def _fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k" if value >= 1e3 else f"{value:.0f}"


def format_table(runs: list[RunSummary], now: float | None = None) -> str:
    now = time.time() if now is None else now
    header = ("RUN", "STATE", "ITER", "BEST VAL", "TOK/S", "DEVICE", "UPDATED")
    rows = [header]
    for r in runs:
        it = "-" if r.iteration is None else f"{r.iteration:,}" + ("" if r.max_iters is None else f"/{r.max_iters:,}")
        rows.append((r.name, r.state, it, "-" if r.best_val_loss is None else f"{r.best_val_loss:.4f}",
                     _fmt_rate(r.tokens_per_sec), r.device or "-", ago(now - r.updated)))
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def cmd_runs(args: list[str], out: TextIO | None = None) -> int:
    from tuigpt.cli import _Parser
    from tuigpt.errors import UserError
    from tuigpt.watch import run_dirs

    parser = _Parser(prog="tuigpt runs", description="List the runs under --out_dir, newest first.")
    parser.add_argument("--out_dir", default="checkpoints", help="where runs live (default: checkpoints)")
    ns = parser.parse_args(args)
    out = out or sys.stdout
    if not Path(ns.out_dir).is_dir():
        raise UserError(f"{ns.out_dir}/ does not exist: no runs yet (or pick another --out_dir)")
    runs = []
    for run_dir in run_dirs(ns.out_dir):
        try:
            runs.append(summarize(run_dir))
        except OSError:
            continue  # removed while we looked
    if not runs:
        print(f"no runs under {ns.out_dir}/", file=out)
        return 0
    print(format_table(runs), file=out)
    print(f"\nwatch one: tuigpt watch {runs[0].path}", file=out)
    return 0
