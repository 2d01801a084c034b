"""One dashboard (a ``log_to`` entry) fed from the event bus on a thread of its own.

The bus calls subscribers on the trainer's thread, and a dashboard package can be slow (W&B starts a service
process: ~2 s here; an online W&B waits on the network), so the subscriber only queues the events metrics.jsonl
keeps (the same :class:`~tuigpt.run.metrics_log.LogCadence`) and a thread opens the package's run on RunStarted and
writes each event's :class:`~tuigpt.run.dashboard_rows.Row`. Training never waits for it: past CAPACITY queued
events the rest are counted and left out. A package that fails to start or raises mid-run is said in one line and
detached; metrics.jsonl and training are not touched by it.

A sink added on a ``--resume`` (no run of its own to continue yet) first copies the earlier sessions from
metrics.jsonl, so the dashboard holds the whole run.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from tuigpt.host.dashboards.chatter import Chatter
from tuigpt.run.dashboard_rows import Row, RowMaker
from tuigpt.run.events import Event, Notice, RunStarted
from tuigpt.run.fmt import clip
from tuigpt.run.metrics_log import LogCadence
from tuigpt.run.records import event_from_record, loads
from tuigpt.run.rundir import METRICS_FILE

CAPACITY = 10_000  # events queued while the package is slow (W&B's start: ~200 at 100 logged iterations a second)
CLOSE_PATIENCE = 30.0  # seconds the run's end waits for a dashboard to write what is queued and finish its run
TOPIC = "dashboards"  # the topic of the sinks' own notices
_CLOSE = object()


@dataclass(frozen=True)
class Opened:
    """A dashboard run, started: the line that says where it is, and whether it continues an earlier session's."""

    line: str
    continued: bool


class Backend(Protocol):
    """One dashboard package: open a run for this run folder, write rows to it, finish it."""

    def open(self, start: RunStarted) -> Opened: ...

    def write(self, row: Row) -> None: ...

    def close(self) -> None: ...


class DashboardSink:
    """A bus subscriber that hands events to ``make_backend()``'s run on its own thread (see the module docstring).
    ``publish`` gets the sink's lines (where its run is, a failure) as Notices."""

    def __init__(self, name: str, make_backend: Callable[[], Backend], publish: Callable[[Event], None],
                 log_interval: int, chatter: Chatter | None = None, capacity: int = CAPACITY) -> None:
        self.name = name
        self._make_backend = make_backend
        self._publish = publish
        self._cadence = LogCadence(log_interval)
        self._chatter = chatter
        self._capacity = capacity
        self._queue: queue.Queue[Any] = queue.Queue()
        self._unsubscribe: Callable[[], None] = lambda: None
        self.failed = False
        self.dropped = 0  # events left out because the queue was full
        self._dropped_said = 0
        self._closed = False
        self._left_behind = False
        self._thread = threading.Thread(target=self._work, name=f"tuigpt-{name}", daemon=True)
        self._thread.start()

    def attach(self, subscribe: Callable[[Callable[[Event], None]], Callable[[], None]]) -> None:
        self._unsubscribe = subscribe(self)

    def __call__(self, event: Event) -> None:
        if self.failed or self._closed or not self._cadence.keeps(event):
            return
        if isinstance(event, Notice) and event.topic == TOPIC:
            return  # the dashboards' own lines (where a run is, a failure) are the terminal's, not a dashboard's
        if self._queue.qsize() >= self._capacity:
            self.dropped += 1
            return
        self._queue.put(event)

    def close_soon(self) -> None:
        """Take no more events; the thread writes what is queued, finishes the package's run and ends."""
        if not self._closed:
            self._closed = True
            self._unsubscribe()
            self._queue.put(_CLOSE)

    def close(self, patience: float = CLOSE_PATIENCE) -> None:
        """:meth:`close_soon`, then wait at most ``patience`` seconds for the thread to end (said when it does not)."""
        if self._thread.ident is None or not self._thread.is_alive():
            self._closed = True
            return
        self.close_soon()
        self._thread.join(patience)
        if self._thread.is_alive() and not self._left_behind:
            self._left_behind = True
            self._say("warning", f"log_to {self.name}: still writing {CLOSE_PATIENCE:.0f} s into the run's end and left "
                                 f"behind; its last records may be missing (metrics.jsonl has every one)")

    # ------------------------------------------------------------ the sink's thread

    def _work(self) -> None:
        if self._chatter is not None:
            self._chatter.this_thread()
        backend: Backend | None = None
        rows = RowMaker()
        early: list[Event] = []  # telemetry read before the run started: metrics.jsonl keeps it, so does the dashboard
        stage = "could not start"
        try:
            while (event := self._queue.get()) is not _CLOSE:
                if backend is None and not isinstance(event, RunStarted):
                    early.append(event)
                    continue
                if backend is None:
                    backend = self._make_backend()
                    opened = backend.open(event)
                    self._say("info", opened.line)
                    if event.resumed and not opened.continued:
                        self._copy_history(backend, event)
                for each in (event, *early):
                    if (row := rows(each)) is not None:
                        stage = f"failed at iter {row.step:,}"
                        backend.write(row)
                early = []
                self._say_dropped()
            stage = "could not finish its run"
            if backend is not None:
                backend.close()
        except Exception as exc:  # the package's own errors, whatever they are: one line, then detached
            self._detach(backend, stage, exc)

    def _copy_history(self, backend: Backend, start: RunStarted) -> None:
        """The earlier sessions' records, through their own row maker (their iterations, not this session's)."""
        rows = RowMaker()
        copied = 0
        for event in _earlier_events(Path(start.run_dir) / METRICS_FILE, start.time):
            if (row := rows(event)) is not None:
                backend.write(row)
                copied += 1
        if copied:
            self._say("info", f"log_to {self.name}: copied the run's earlier history from metrics.jsonl ({copied:,} "
                              f"records up to iter {rows.step:,})")

    def _detach(self, backend: Backend | None, what: str, exc: Exception) -> None:
        self.failed = True
        self._unsubscribe()
        self._say("warning", f"log_to {self.name} {what} ({type(exc).__name__}: {clip(str(exc), 200)}) and was "
                             f"detached; training goes on and metrics.jsonl has every record")
        if backend is not None:
            try:
                backend.close()
            except Exception:
                pass  # it already failed; the line above says so

    def _say_dropped(self) -> None:
        if self.dropped > self._dropped_said and not self._dropped_said:
            self._say("warning", f"log_to {self.name} is falling behind: events past {self._capacity:,} queued are "
                                 f"left out of it (metrics.jsonl has every record)")
        self._dropped_said = self.dropped

    def _say(self, level: str, message: str) -> None:
        self._publish(Notice(level=level, message=message, topic=TOPIC))


def _earlier_events(path: Path, session_start: float) -> Iterator[Event]:
    """metrics.jsonl's events up to the record of the session that started at ``session_start``."""
    try:
        f = open(path, "rb")
    except OSError:
        return
    with f:
        for raw in f:
            record = loads(raw) if raw.endswith(b"\n") else None
            if record is None:
                continue
            if record.get("type") == "start" and record.get("time") == session_start:
                return
            event = event_from_record(record)
            if event is not None:
                yield event
