"""metrics.jsonl: a run's history, one record a line, append-only and flushed per line.

:class:`MetricsWriter` is the event sink that owns the file: on a resume it first cuts what a crashed
session wrote after the checkpoint it resumes from. Readers: :func:`read_metrics` (everything),
:func:`load_history` (what a monitor draws, thinned, for million-line files), :func:`tail_records`
(the last records of some types, from the end of the file). A line torn by a crash is skipped on read
and cut off before the next session appends.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable

from tuigpt.run.events import EvalProgress, Event, IterationStats, RunFailed, RunFinished, TelemetrySnapshot
from tuigpt.run.files import atomic_write, lines_backwards, repair_torn_tail
from tuigpt.run.records import dumps, event_from_record, event_record, loads

TRAINING_TYPES = (b"iter", b"eval", b"checkpoint", b"sample")
_TYPE = re.compile(rb'"type":\s*"(\w+)"')
_ITER = re.compile(rb'"iter":\s*(-?\d+)')


class LogCadence:
    """Which events a run's history keeps: iterations every ``log_interval``, telemetry every ``telemetry_every``
    seconds per kind until the run has ended (a finished monitor left open for the night still shows its readings,
    but they are not the run's: 66 records in 6 minutes went to the file), no eval progress, every other event. metrics.jsonl and every dashboard (log_to) keep the
    same ones, so their series are the same points. One instance per consumer (it remembers telemetry times)."""

    def __init__(self, log_interval: int, telemetry_every: float = 10.0) -> None:
        self.log_interval = log_interval
        self.telemetry_every = telemetry_every
        self._last_telemetry: dict[str, float] = {}
        self._ended = False

    def keeps(self, event: Event) -> bool:
        if isinstance(event, IterationStats):
            return not event.iter % self.log_interval
        if isinstance(event, EvalProgress):  # live progress only: the eval's result is what is kept
            return False
        if isinstance(event, (RunFinished, RunFailed)):
            self._ended = True
        if isinstance(event, TelemetrySnapshot):
            if self._ended:
                return False
            last = self._last_telemetry.get(event.kind)
            if last is not None and event.time - last < self.telemetry_every:
                return False
            self._last_telemetry[event.kind] = event.time
        return True


class MetricsWriter:
    """Appends the event records a :class:`LogCadence` keeps.

    ``resume_at``: this session resumes from a checkpoint at that iteration, so records a crashed session
    wrote after it are cut before anything is appended. ``mode``: permission bits of a file made here.

    A record is one ``write`` of its whole line; a write that fails part-way (the disk filled mid-line) is cut
    back to where the line began, so a reader never sees half a record. A write that fails (disk full, I/O error)
    is reported once and ends the writing: ``on_failure`` gets one line (the host makes it the run's trouble: exit
    4, or a pause in the monitor); without it the error is raised once, and the event bus detaches the writer.
    :meth:`close` never raises; ``error`` keeps the failure.
    """

    def __init__(self, path: Path, log_interval: int, telemetry_every: float = 10.0,
                 resume_at: int | None = None, mode: int = 0o600,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.cadence = LogCadence(log_interval, telemetry_every)
        self.on_failure = on_failure
        self.error: OSError | None = None
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        repair_torn_tail(path)
        if resume_at is not None:
            cut_after(path, resume_at)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
        self._end = os.fstat(self._fd).st_size  # where the next line begins (this process is the one writer)
        self._made = (self._end == 0, os.fstat(self._fd).st_ino)  # (an empty file: made here, or nothing to lose)

    def __call__(self, event: Event) -> None:
        if not self.cadence.keeps(event):
            return
        record = event_record(event)
        if record is None:
            return
        line = dumps(record)
        with self._lock:
            if self._fd is None:
                return
            try:
                self._write_line(line)
                return
            except OSError as exc:
                message = self._fail(exc)
        if self.on_failure is None:
            raise OSError(self.error.errno if self.error else None, message)
        self.on_failure(message)

    def _write_line(self, line: bytes) -> None:
        """Append one whole line; on any failure the file is cut back to where it began."""
        assert self._fd is not None
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(self._fd, view):]  # a short write (a filling disk) goes on, or raises
        except BaseException:
            try:
                os.ftruncate(self._fd, self._end)  # no torn line: the reader's last line stays a whole record
            except OSError:
                pass
            raise
        self._end += len(line)

    def _fail(self, exc: OSError) -> str:
        """Stop writing (under the lock); the one line that says so."""
        self.error = exc
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        return (f"could not write {self.path} ({exc.strerror or exc}): the run's history stops here; free disk "
                f"space or fix the folder, then --resume")

    def discard(self) -> None:
        """Close, and remove the file when it was empty when this writer opened it: a start stopped before its
        run began leaves no half-made run folder (records a telemetry reading wrote meanwhile go with it)."""
        self.close()
        empty, inode = self._made
        try:
            if empty and os.stat(self.path, follow_symlinks=False).st_ino == inode:
                os.unlink(self.path)
        except OSError:
            pass

    def close(self) -> None:
        """Flush, fsync and close; a failure here is kept in ``error`` (the records already flushed are safe)."""
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            try:
                os.fsync(fd)
            except OSError as exc:
                self.error = exc
            finally:
                os.close(fd)


def set_aside(path: Path) -> Path | None:
    """Move a history that no checkpoint continues out of the way (``metrics.unfinished-<time>.jsonl``), so a fresh
    start over it does not log its iterations twice; the new path, or None when there was nothing to move."""
    try:
        if path.stat().st_size == 0:
            return None
    except FileNotFoundError:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"metrics.unfinished-{stamp}.jsonl")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"metrics.unfinished-{stamp}-{n}.jsonl")
    os.replace(path, target)
    return target


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
            record = loads(raw)
            if record is not None:
                records.append(record)
    return records


def record_type(line: bytes) -> bytes | None:
    """A line's ``type`` without parsing the whole line."""
    match = _TYPE.search(line)
    return match.group(1) if match else None


def cut_after(path: Path, upto_iter: int, keep: Path | None = None) -> None:
    """Cut the records written after ``upto_iter`` (the checkpoint a resume continues from).

    Records are appended in order, so everything from the first training record past ``upto_iter`` on
    belongs to the lost stretch. The file is scanned backwards and truncated in place, so the cost is that
    stretch's length, not the file's. ``keep``: the cut records are first written to this file (a finished
    plan's cooldown, when a resume goes on from stable.pt).
    """
    repair_torn_tail(path)
    if not path.exists():
        return
    cut: int | None = None
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        for offset, line in lines_backwards(f, end):
            if record_type(line) in TRAINING_TYPES:
                match = _ITER.search(line)
                if match and int(match.group(1)) <= upto_iter:
                    break
                cut = offset
        if cut is not None:
            if keep is not None:
                f.seek(cut)
                atomic_write(keep, f.read(end - cut))
            f.truncate(cut)


# what a monitor redraws from, beyond the thinned iterations and evals: the last records of each kind
KEEP_LAST: dict[bytes, int] = {b"notice": 500, b"checkpoint": 500, b"sample": 20, b"start": 20, b"state": 50,
                               b"eval_interval": 50, b"finish": 20, b"failed": 20, b"plan": 50}


def load_history(path: Path, max_iter_points: int = 10_000, recent: int = 2_000, max_eval_points: int = 2_000,
                 end: int | None = None) -> list[dict[str, Any]]:
    """The records a monitor needs to redraw a run, in file order, bounded in memory for any mix of records:
    iterations thinned to about ``max_iter_points`` (the last ``recent`` kept in full), evals thinned to about
    ``max_eval_points`` (the last ones, and the best, kept), and the last KEEP_LAST of every other kind a pane
    shows (notices, checkpoints, samples, session starts and endings, states). Telemetry and cluster records
    are left out (the follower reads the latest from the tail).

    Only kept lines are parsed, so a million-line file loads in about a second. ``end``: read only the
    first ``end`` bytes (a watcher then follows the file from there, seeing no line twice).
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return []
    with f:  # two streaming passes: count the lines of each kind, then parse the ones kept
        if end is not None:
            f = io.BufferedReader(_Limited(f, end))  # type: ignore[arg-type]
        counts: dict[bytes | None, int] = {}
        last_best = -1  # the index, among eval lines, of the last new best (its point must stay on the chart)
        for line in f:
            if line.endswith(b"\n"):
                kind = record_type(line)
                counts[kind] = counts.get(kind, 0) + 1
                if kind == b"eval" and b'"is_best":true' in line:
                    last_best = counts[kind] - 1
        iter_stride = max(1, (counts.get(b"iter", 0) - recent) // max(1, max_iter_points - recent))
        eval_recent = max_eval_points // 5
        eval_stride = max(1, (counts.get(b"eval", 0) - eval_recent) // max(1, max_eval_points - eval_recent))
        records: list[dict[str, Any]] = []
        seen: dict[bytes | None, int] = {}
        f.seek(0)
        for line in f:
            if not line.endswith(b"\n"):
                break  # torn last line
            kind = record_type(line)
            k = seen.get(kind, 0)
            seen[kind] = k + 1
            total = counts.get(kind, 0)
            if kind == b"iter":
                if (k + 1) % iter_stride and k + 1 <= total - recent:
                    continue
            elif kind == b"eval":
                if (k + 1) % eval_stride and k < total - eval_recent and k != last_best:
                    continue
            elif kind not in KEEP_LAST or k < total - KEEP_LAST[kind]:
                continue
            record = loads(line)
            if record is not None:
                records.append(record)
    return records


HISTORY_TYPES = ("iter", "eval", "checkpoint", "sample", "notice", "nan", "rewind", "stall", "diverging")


def history_events(records: list[dict[str, Any]], kinds: tuple[str, ...] = HISTORY_TYPES) -> list[Event]:
    """What happened in earlier sessions, as events: iterations, evals, checkpoints, samples, notices and health
    events (the chart, the speed and ETA, the events log and the sample pane redraw from them); ``kinds``: the
    record types wanted (a watcher replaying a run's lines wants its plans too)."""
    events = []
    for record in records:
        if record.get("type") in kinds:
            event = event_from_record(record)
            if event is not None:
                events.append(event)
    return events


def session_starts(records: list[dict[str, Any]]) -> tuple[tuple[float, float | None], ...]:
    """(time, elapsed_before) of each session start among ``records`` (HistoryLoaded.sessions: where the run's
    elapsed time picks up after a gap); elapsed_before None in records written before it."""
    starts = []
    for record in records:
        if record.get("type") == "start" and isinstance(when := record.get("time"), (int, float)):
            before = record.get("elapsed_before")
            starts.append((float(when), float(before) if isinstance(before, (int, float)) else None))
    return tuple(starts)


def tail_records(path: Path, end: int, types: tuple[str, ...], tail_bytes: int = 512 * 1024) -> list[dict[str, Any]]:
    """The records of these types among the last ``tail_bytes`` before ``end`` (load_history skips telemetry)."""
    try:
        with open(path, "rb") as f:
            start = max(0, end - tail_bytes)
            f.seek(start)
            block = f.read(end - start)
    except OSError:
        return []
    lines = block.split(b"\n")
    if start:
        lines = lines[1:]  # the first may be a partial line
    wanted = {t.encode() for t in types}
    out = []
    for raw in lines:
        if record_type(raw) in wanted and (record := loads(raw)) is not None:
            out.append(record)
    return out


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
