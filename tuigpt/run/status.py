"""A run's status from its records: what `tuigpt runs` prints for each run directory.

Only the head (the first "start" record) and the tail of metrics.jsonl are read, so a million-line
history costs the same as a short one; the evals are read back from the end to the last new best (at most
EVAL_SCAN_BYTES). Position, speed, ETA and the evals come from a :class:`~tuigpt.run.model.RunModel` fed those
records, the one every view reads. Whether the process still lives is the caller's to say (it asks the control
socket).
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tuigpt.run.events import EndReason, HistoryLoaded, PlanUpdated, RunStarted
from tuigpt.run.metrics_log import HISTORY_TYPES, history_events, load_history
from tuigpt.run.model import RunModel
from tuigpt.run.plan import short
from tuigpt.run.records import event_from_record, loads
from tuigpt.run.rundir import RunDir

HEAD_BYTES = 64 * 1024
TAIL_BYTES = 256 * 1024
EVAL_SCAN_BYTES = 64 * 1024 * 1024  # how far back the evals are read to find the last new best
_EVAL = re.compile(rb'"type":\s*"eval"')


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
    eta_seconds: float | None = None  # training and evals left, from the newest iteration (running or paused runs)
    eta_at: float | None = None  # when it will be done: the newest iteration's time plus eta_seconds (running only)
    val_loss: float | None = None  # the newest eval's
    val_iter: int | None = None
    val_change: float | None = None  # the newest eval's val loss minus the one before it
    best_iter: int | None = None  # the eval of best_val_loss (None: further back than EVAL_SCAN_BYTES)
    evals_since_best: int | None = None  # evals after the best one: "not improved in N evals"


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
    if "failed" in last:  # (this session's ending: a monitor left open after it is no running run)
        state = "failed"
    elif "finish" in last:
        state = "done" if _of(last["finish"], "reason", str) == EndReason.DONE else "stopped"
    elif alive(run_dir):
        state = "paused" if _of(last.get("state", {}), "state", str) == "PAUSED" else "running"
    else:
        state = "interrupted"
    iteration = _of(last.get("finish", last.get("failed", last.get("iter", {}))), "iter", int)
    best = _of(last.get("finish", {}), "best_val_loss", float)
    if best is None:
        best = _of(last.get("eval", {}), "best_val_loss", float)
    # (a run that ended saying it has no best val loss had no eval: nothing to read back for)
    evals_read = _evals_back_to_best(path) if best is not None or "finish" not in last else []
    snap = _model(start, tail, evals_read, last).snapshot()
    evals = snap.loss.evals
    best_eval = snap.loss.best_eval
    if best_eval is not None and best is not None and best_eval[2] > best:
        best_eval = None  # the best is further back than the evals read: its value is known, not its iteration
    live = state in ("running", "paused")
    last_iter = snap.progress.last
    eta = snap.progress.eta_seconds if live else None
    config = start.get("config")
    target_loss = _of(config, "target_loss", float) if isinstance(config, dict) else None
    planned = event_from_record(last["plan"]) if "plan" in last else None
    # the run model's: the plan's end, or where a finished planned run ended (the start record's when unread)
    max_iters = snap.progress.max_iters or _of(start, "max_iters", int) or None
    return RunSummary(
        name=run_dir.name, path=run_dir, state=state, iteration=iteration, max_iters=max_iters,
        best_val_loss=best, tokens_per_sec=_of(last.get("iter", {}), "tokens_per_sec", float),
        device=_of(start, "device", str), updated=path.stat().st_mtime,
        target=_target(path, state == "running") if target_loss is not None else None,
        plan=_plan(planned, last, state) if isinstance(planned, PlanUpdated) else None,
        eta_seconds=eta, eta_at=last_iter.time + eta if eta is not None and last_iter is not None and
        state == "running" else None,  # (paused: no clock time, the pause moves it)
        val_loss=evals[-1][2] if evals else None, val_iter=evals[-1][0] if evals else None,
        val_change=snap.loss.val_change, best_iter=best_eval[0] if best_eval is not None else None,
        evals_since_best=snap.loss.evals_since_best if best_eval is not None else None,
    )


def _model(start: dict[str, Any], tail: list[dict[str, Any]], evals: list[dict[str, Any]],
           last: dict[str, dict[str, Any]]) -> RunModel:
    """The run model of what was read, fed as a watcher feeds it: the session's start, the earlier records as
    history (the evals from their own read), then the newest plan, eval interval, iteration and ending."""
    model = RunModel()
    started = event_from_record(start) if start else None
    if isinstance(started, RunStarted):
        model.record(started, words=False)
    past = [r for r in tail if r.get("type") in HISTORY_TYPES and r.get("type") != "eval"]
    model.record(HistoryLoaded(events=history_events(evals + past)), words=False)
    for kind in ("plan", "eval_interval", "iter", "finish", "failed"):
        if kind in last and (event := event_from_record(last[kind])) is not None:
            model.record(event, words=False)
    return model


def _evals_back_to_best(path: Path) -> list[dict[str, Any]]:
    """The eval records of the file's end back to (at least) the last new best (``is_best``), oldest first, read
    back from the end in growing blocks (only the eval lines are parsed); those of the last EVAL_SCAN_BYTES when
    the best is further back. (The mean eval time the ETA counts is theirs: all of a short run's.)"""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        span = TAIL_BYTES
        while True:
            start = max(0, size - span)
            f.seek(start)
            block = f.read(size - start)
            evals = []
            for match in _EVAL.finditer(block):
                begin = block.rfind(b"\n", 0, match.start()) + 1
                end = block.find(b"\n", match.end())
                if (begin == 0 and start > 0) or end < 0:
                    continue  # a line cut by the block's start, or not finished yet
                record = loads(block[begin:end])
                if record is not None and record.get("type") == "eval":
                    evals.append(record)
            bests = [k for k, r in enumerate(evals) if r.get("is_best") is True]
            if bests or start == 0 or span >= EVAL_SCAN_BYTES:
                return evals
            span *= 4


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
