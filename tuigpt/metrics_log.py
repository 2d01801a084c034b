"""metrics.jsonl: the run's history, one JSON object per line, append-only and flushed per line.

Written by :class:`MetricsWriter`, an event subscriber; read back by
:func:`read_metrics` on resume (and by watchers). A line torn by a crash is
ignored on read and cut off before the next run appends.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import threading
from pathlib import Path
from typing import IO, Any, Iterator

from tuigpt.events import (CheckpointWritten, ClusterStats, EvalIntervalChanged, EvalResult, Event, IterationStats,
                           Notice, RunFailed, RunFinished, RunStarted, SampleGenerated, StateChanged, TelemetrySnapshot)

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
        RunFinished: "finish", RunFailed: "failed", TelemetrySnapshot: "telemetry", ClusterStats: "cluster",
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


def parse_record(line: bytes) -> dict[str, Any] | None:
    """One metrics.jsonl line as a record; None for a garbled line or JSON that is not an object."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


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
            record = parse_record(raw)
            if record is not None:
                records.append(record)
    return records


TRAINING_TYPES = (b"iter", b"eval", b"checkpoint", b"sample")
_TYPE = re.compile(rb'"type":\s*"(\w+)"')
_ITER = re.compile(rb'"iter":\s*(-?\d+)')


def _record_type(line: bytes) -> bytes | None:
    match = _TYPE.search(line)
    return match.group(1) if match else None


def cut_after(path: Path, upto_iter: int) -> None:
    """On resume from ``upto_iter``: cut the records a crashed run wrote after its last checkpoint.

    Records are appended in order, so everything from the first training record past
    ``upto_iter`` on belongs to the lost stretch. The file is scanned backwards and truncated in
    place, so the cost is that stretch's length, not the file's.
    """
    repair_torn_tail(path)
    if not path.exists():
        return
    cut: int | None = None
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        for offset, line in _lines_backwards(f, end):
            if _record_type(line) in TRAINING_TYPES:
                match = _ITER.search(line)
                if match and int(match.group(1)) <= upto_iter:
                    break
                cut = offset
        if cut is not None:
            f.truncate(cut)


def _lines_backwards(f: IO[bytes], end: int, block: int = 1 << 16) -> Iterator[tuple[int, bytes]]:
    """(start offset, line without newline) from the last line of a newline-terminated file to the first."""
    pos, buf = end, b""  # buf holds file[pos:pos + len(buf)]; its lines not yet yielded end at `limit`
    limit = 0
    while True:
        if pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf[:limit]
            limit = len(buf)
        while limit > 0:
            start = buf.rfind(b"\n", 0, limit - 1) + 1  # limit - 1 is this line's own newline
            if start == 0 and pos > 0:
                break  # the line may begin in an earlier block
            yield pos + start, buf[start:limit - 1]
            limit = start
        if pos == 0 and limit == 0:
            return


def load_history(path: Path, max_iter_points: int = 10_000, recent: int = 2_000,
                 end: int | None = None) -> list[dict[str, Any]]:
    """The records a monitor needs to redraw a run: every eval, checkpoint and sample, and the
    iteration records thinned to about ``max_iter_points`` (the last ``recent`` kept in full).

    Only kept lines are parsed, so a million-line file loads in about a second. ``end``: read only the
    first ``end`` bytes (a watcher then follows the file from there, seeing no line twice).
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return []
    with f:  # two streaming passes: count the iteration lines, then parse the ones kept
        if end is not None:
            f = io.BufferedReader(_Limited(f, end))  # type: ignore[arg-type]
        iter_lines = sum(1 for line in f if line.endswith(b"\n") and _record_type(line) == b"iter")
        stride = max(1, (iter_lines - recent) // max(1, max_iter_points - recent))
        records: list[dict[str, Any]] = []
        seen_iters = 0
        f.seek(0)
        for line in f:
            if not line.endswith(b"\n"):
                break  # torn last line
            kind = _record_type(line)
            if kind == b"iter":
                seen_iters += 1
                if seen_iters % stride and seen_iters <= iter_lines - recent:
                    continue
            elif kind == b"telemetry":
                continue
            record = parse_record(line)
            if record is not None:
                records.append(record)
    return records


class _Limited(io.RawIOBase):
    """The first ``end`` bytes of a binary file, seekable back to 0 (load_history's two passes)."""

    def __init__(self, f: IO[bytes], end: int) -> None:
        self._f, self._end = f, end

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(min(offset, self._end), whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer: Any) -> int:
        left = self._end - self._f.tell()
        if left <= 0:
            return 0
        view = memoryview(buffer)[:left]
        data = self._f.read(len(view))
        view[:len(data)] = data
        return len(data)
