"""A run's status from its records: what `tuigpt runs` prints for each run directory.

Only the head (the first "start" record) and the tail of metrics.jsonl are read, so a million-line
history costs the same as a short one. Whether the process still lives is the caller's to say (it asks
the control socket).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tuigpt.run.events import EndReason, PlanUpdated
from tuigpt.run.metrics_log import load_history
from tuigpt.run.model import RunModel
from tuigpt.run.plan import short
from tuigpt.run.records import event_from_record, loads
from tuigpt.run.rundir import RunDir

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
    target: str | None = None  # when the run has a target_loss: where the loss reaches it
    plan: str | None = None  # a run that ends at a time: its cooldown and end, or when it ended against its deadline


def _records(raw: bytes, partial_first: bool) -> list[dict[str, Any]]:
    lines = raw.split(b"\n")
    if partial_first:
        lines = lines[1:]
    out = []
    for line in lines[:-1]:  # the last piece has no newline yet (or is empty)
        record = loads(line)
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


def summarize(run_dir: Path, alive: Callable[[Path], bool]) -> RunSummary:
    """The run's state, position and figures; ``alive(run_dir)`` says whether its process answers. A field of the
    wrong type in the file (a hand edit, another tool, a damaged disk) reads as unknown, never as an error."""
    path = RunDir(run_dir).metrics
    head, tail = read_ends(path)
    last: dict[str, dict[str, Any]] = {}
    start_in_tail = None
    for record in tail:
        kind = _of(record, "type", str) or ""
        if kind == "start":
            start_in_tail = record
            last.pop("finish", None), last.pop("failed", None)  # a later session: earlier endings do not count
        last[kind] = record
    start = start_in_tail or next((r for r in reversed(head) if r.get("type") == "start"), {})
    if alive(run_dir):
        state = "paused" if _of(last.get("state", {}), "state", str) == "PAUSED" else "running"
    elif "failed" in last:
        state = "failed"
    elif "finish" in last:
        state = "done" if _of(last["finish"], "reason", str) == EndReason.DONE else "stopped"
    else:
        state = "interrupted"
    iteration = _of(last.get("finish", last.get("failed", last.get("iter", {}))), "iter", int)
    best = _of(last.get("finish", {}), "best_val_loss", float)
    if best is None:
        best = _of(last.get("eval", {}), "best_val_loss", float)
    config = start.get("config")
    target_loss = _of(config, "target_loss", float) if isinstance(config, dict) else None
    planned = event_from_record(last["plan"]) if "plan" in last else None
    max_iters = planned.total_iters if isinstance(planned, PlanUpdated) else _of(start, "max_iters", int) or None
    return RunSummary(
        name=run_dir.name, path=run_dir, state=state, iteration=iteration, max_iters=max_iters,
        best_val_loss=best, tokens_per_sec=_of(last.get("iter", {}), "tokens_per_sec", float),
        device=_of(start, "device", str), updated=path.stat().st_mtime,
        target=_target(path, state == "running") if target_loss is not None else None,
        plan=_plan(planned, last, state) if isinstance(planned, PlanUpdated) else None,
    )


def _of(record: Any, key: str, kind: type) -> Any:
    """``record[key]`` when it is a ``kind`` (a float: any finite number), else None."""
    value = record.get(key) if isinstance(record, dict) else None
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok else None
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _plan(planned: PlanUpdated, last: dict[str, dict[str, Any]], state: str) -> str:
    """The plan's cooldown and end while the run goes; once it ended, when against its deadline."""
    ended = _of(last.get("finish", last.get("failed", {})), "time", float) if state not in ("running", "paused") else None
    return short(planned, time.time(), ended)


def _target(path: Path, running: bool) -> str:
    """The target-loss projection from the whole history (every eval, the iterations thinned), as the monitor
    draws it; the clock time only while the run is running."""
    model = RunModel()
    for record in load_history(path, max_iter_points=4000):
        if record.get("type") in ("start", "iter", "eval") and (event := event_from_record(record)) is not None:
            model.record(event, words=False)
    projection = model.snapshot(time.time() if running else None).target
    return projection.line
