"""metrics.jsonl: the run's history, one JSON object per line, append-only and flushed per line.

Written by :class:`MetricsWriter`, an event subscriber; read back by
:func:`read_metrics` on resume (and by watchers). A line torn by a crash is
ignored on read and cut off before the next run appends.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import IO, Any

from tuigpt.events import (CheckpointWritten, EvalIntervalChanged, EvalResult, Event, IterationStats, Notice,
                           RunFailed, RunFinished, RunStarted, SampleGenerated, StateChanged, TelemetrySnapshot)

METRICS_FILE = "metrics.jsonl"


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def event_record(event: Event) -> dict[str, Any] | None:
    """The metrics.jsonl record for an event, or None for events not kept."""
    kinds = {
        RunStarted: "start", IterationStats: "iter", EvalResult: "eval", CheckpointWritten: "checkpoint",
        SampleGenerated: "sample", Notice: "notice", StateChanged: "state", EvalIntervalChanged: "eval_interval",
        RunFinished: "finish", RunFailed: "failed", TelemetrySnapshot: "telemetry",
    }
    kind = kinds.get(type(event))
    if kind is None:
        return None
    record = {"type": kind}
    record.update(_jsonable(event))
    return record


class MetricsWriter:
    """Appends event records to metrics.jsonl; iterations every ``log_interval``, telemetry every ``telemetry_every`` s."""

    def __init__(self, path: Path, log_interval: int, telemetry_every: float = 10.0) -> None:
        self.path = path
        self.log_interval = log_interval
        self.telemetry_every = telemetry_every
        self._last_telemetry: dict[str, float] = {}
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        repair_torn_tail(path)
        self._file: IO[str] | None = open(path, "a", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        if isinstance(event, IterationStats) and event.iter % self.log_interval:
            return
        if isinstance(event, TelemetrySnapshot):
            last = self._last_telemetry.get(event.kind)
            if last is not None and event.time - last < self.telemetry_every:
                return
            self._last_telemetry[event.kind] = event.time
        record = event_record(event)
        if record is None:
            return
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        with self._lock:
            if self._file is None:
                return
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None


def repair_torn_tail(path: Path) -> None:
    """Cut a last line that a crash left without its newline, so appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        pos = size
        chunk = 4096
        while pos > 0:
            step = min(chunk, pos)
            f.seek(pos - step)
            block = f.read(step)
            if pos == size and block.endswith(b"\n"):
                return
            newline = block.rfind(b"\n")
            if newline >= 0:
                f.truncate(pos - step + newline + 1)
                return
            pos -= step
        f.truncate(0)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every complete, parseable record in a metrics.jsonl (torn or garbled lines are skipped)."""
    records: list[dict[str, Any]] = []
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return records
    with f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # torn last line
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def truncate_history(path: Path, upto_iter: int) -> list[dict[str, Any]]:
    """On resume from ``upto_iter``: drop training records past it (they will be recomputed) and return the rest.

    The file is rewritten atomically only when something must go.
    """
    records = read_metrics(path)
    keep = [r for r in records if not (r.get("type") in ("iter", "eval", "checkpoint", "sample")
                                        and isinstance(r.get("iter"), int) and r["iter"] > upto_iter)]
    if len(keep) != len(records):
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in keep:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return keep
