"""Following a run that lives in another process, or has ended: what `tuigpt watch` shows.

:class:`WatchController` implements :class:`tuigpt.run.controller.RunController` from outside the run:

1. it replays the run's metrics.jsonl (``load_history``: iterations thinned, so a million-line file
   loads in about a second) as events: RunStarted of the last session, HistoryLoaded with everything
   before now, then the last session's eval interval, state and iteration, the latest telemetry, and
   how it ended;
2. it connects to ``<run_dir>/control.sock`` when the run is alive: commands go there, and live events
   come back from it (every iteration, not only the logged ones);
3. otherwise it tails metrics.jsonl (torn last lines wait for their newline).

The same event can reach it twice (a record already in the file and on the socket): events are keyed
by (type, time) and each key is published once. A run that ends prints a finish/failed record; one whose
process vanished without it (SIGKILL, power cut) is reported as not running.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from tuigpt.control.wire import LineReader, LineTooLong, socket_path
from tuigpt.run.commands import Command
from tuigpt.run.events import Event, EventBus, HistoryLoaded, IterationStats, Notice, RunFailed, RunFinished
from tuigpt.run.files import complete_prefix
from tuigpt.run.metrics_log import HISTORY_TYPES, history_events, load_history, session_starts, tail_records
from tuigpt.run.records import command_message, dumps, event_from_record, loads
from tuigpt.run.rundir import RunDir

STALE_AFTER = 10.0  # no socket and no growth for this long: the run is not running


def _key(record: dict[str, Any]) -> tuple[Any, Any]:
    return record.get("type"), record.get("time")


class WatchController:
    """A RunController for a run in another process (or a finished one), from its run directory."""

    def __init__(self, run_dir: str | Path, *, poll: float = 0.25, stale_after: float = STALE_AFTER,
                 from_file: bool = False) -> None:
        self.run_dir = Path(run_dir)
        # events from metrics.jsonl alone, in its order, every logged iteration (the socket sends at most a few
        # iterations a second, for a screen): the plain lines of `tuigpt watch` without a terminal
        self.from_file = from_file
        self.metrics = RunDir(self.run_dir).metrics
        self.sock_path = socket_path(self.run_dir)
        self.poll = poll
        self.stale_after = stale_after
        self.bus = EventBus()
        self._seen: OrderedDict[tuple[Any, Any], None] = OrderedDict()
        self._seen_lock = threading.Lock()
        self._offset = 0
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._connected = threading.Event()
        self._ended = threading.Event()
        self._closed = threading.Event()
        self._last_iter = 0
        self._thread = threading.Thread(target=self._follow, name="tuigpt-watch", daemon=True)

    # ------------------------------------------------------------ RunController

    def subscribe(self, subscriber: Callable[[Event], None]) -> Callable[[], None]:
        return self.bus.subscribe(subscriber)

    def send(self, command: Command) -> None:
        """To the run's control socket; never blocks long (a dead socket drops the command with a notice)."""
        sock = self._sock
        if sock is None or not self._connected.is_set():
            self.bus.publish(Notice(level="warning", message="not connected to the run (it is not running): "
                                                             "the command went nowhere"))
            return
        try:
            with self._send_lock:
                sock.sendall(dumps(command_message(command)))
        except OSError as exc:
            self.bus.publish(Notice(level="warning", message=f"could not reach the run: {exc}"))

    def start(self) -> None:
        if self._thread.ident is None:
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        return self._ended.wait(timeout)

    def close(self) -> None:
        """Stop following (the run itself goes on)."""
        self._closed.set()
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ------------------------------------------------------------ publishing

    def _publish_record(self, record: dict[str, Any]) -> None:
        """Publish a record's event once, whichever way (file or socket) it arrives first."""
        key = _key(record)
        with self._seen_lock:
            if key in self._seen:
                return
            self._seen[key] = None
            if len(self._seen) > 50_000:
                self._seen.popitem(last=False)
        event = event_from_record(record)
        if event is not None:
            self._publish(event)

    def _publish(self, event: Event) -> None:
        if isinstance(event, IterationStats):
            self._last_iter = event.iter
        self.bus.publish(event)
        if isinstance(event, (RunFinished, RunFailed)):
            self._ended.set()

    # ------------------------------------------------------------ following

    def _follow(self) -> None:
        try:
            self._replay()
            quiet_since = time.monotonic()
            while not self._closed.is_set():
                if not self._connected.is_set() and not self._ended.is_set():
                    self._try_connect()
                grew = self._tail(publish=self.from_file or not self._connected.is_set())
                if grew or self._connected.is_set():
                    quiet_since = time.monotonic()
                elif not self._ended.is_set() and time.monotonic() - quiet_since > self.stale_after:
                    self._not_running("no control socket and metrics.jsonl has not grown for "
                                      f"{self.stale_after:.0f} s")
                self._closed.wait(self.poll)
        except Exception as exc:  # reported, never a silent dead watcher
            self.bus.publish(Notice(level="error", message=f"watcher stopped following the run: {exc!r}"))

    def _replay(self) -> None:
        try:
            end = self.metrics.stat().st_size
        except FileNotFoundError:
            end = 0
        records = load_history(self.metrics, end=end) if end else []
        self._offset = _complete_prefix(self.metrics, end)
        for record in records:  # every record of the file is now seen: the tail must not repeat it
            self._seen[_key(record)] = None
        starts = [k for k, r in enumerate(records) if r.get("type") == "start"]
        session = records[starts[-1]:] if starts else records
        if starts and (started := event_from_record(records[starts[-1]])) is not None:
            self._publish(started)
        last: dict[str, dict[str, Any]] = {}
        for record in session:
            last[record.get("type", "")] = record
        ending = [last[k] for k in ("finish", "failed") if k in last]
        past = [r for r in records if r.get("type") not in ("start", "finish", "failed", "state", "eval_interval")]
        if past:
            # with the plans where they came: the lines of a planned run read against its plan, as they did live
            self._publish(HistoryLoaded(events=history_events(past, HISTORY_TYPES + ("plan",)),
                                        sessions=session_starts(records)))
        # the session's plan too: a run that ends at a time is drawn against its plan's end (a finished one's
        # header said 692/2,000, 35%: the max_iters cap)
        now = [last[k] for k in ("plan", "eval_interval", "state", "iter") if k in last]
        now += tail_records(self.metrics, end, ("telemetry", "cluster"))
        for record in now + ending:
            if (event := event_from_record(record)) is not None:
                self._publish(event)

    def _tail(self, publish: bool) -> bool:
        """Read what was appended since the last call (complete lines only); True when the file grew."""
        try:
            size = self.metrics.stat().st_size
        except FileNotFoundError:
            return False
        if size < self._offset:  # cut by a resume: follow from its new end
            self._offset = size
            return True
        if size == self._offset:
            return False
        with open(self.metrics, "rb") as f:
            f.seek(self._offset)
            data = f.read(size - self._offset)
        cut = data.rfind(b"\n")
        if cut < 0:
            return False  # a torn line: wait for its newline
        self._offset += cut + 1
        for raw in data[:cut].split(b"\n"):
            record = loads(raw)
            if record is not None and publish:
                self._publish_record(record)
        return True

    def _try_connect(self) -> None:
        if not self.sock_path.exists():
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2.0)
        try:
            sock.connect(str(self.sock_path))
            sock.sendall(dumps({"cmd": "subscribe"}))
        except OSError:
            sock.close()
            if not self._ended.is_set():
                self._tail(publish=True)  # whatever the run wrote before it died
                self._not_running("its control socket is stale (the process is gone)")
            return
        sock.settimeout(None)
        self._sock = sock
        self._tail(publish=True)  # catch up with the file; the socket buffers meanwhile, duplicates are skipped
        self._connected.set()
        if not self.from_file:  # the plain lines have no keys: the socket only says the run is alive
            self.bus.publish(Notice(level="info", message=f"connected to the run ({self.sock_path}): keys steer it"))
        threading.Thread(target=self._read_socket, args=(sock,), name="tuigpt-watch-socket", daemon=True).start()

    def _read_socket(self, sock: socket.socket) -> None:
        reader = LineReader(sock, limit=4 * (1 << 16))
        try:
            while (lines := reader.read()) is not None:
                for line in lines:
                    self._on_line(line)
        except (OSError, LineTooLong):
            pass
        self._connected.clear()
        if self._closed.is_set() or self._ended.is_set():
            return
        deadline = time.monotonic() + 2.0  # a normal exit wrote its finish record just before closing
        while time.monotonic() < deadline and not self._ended.is_set():
            self._tail(publish=True)
            time.sleep(0.1)
        if not self._ended.is_set():
            self._not_running("the connection closed without a finish record: the process was killed or crashed")

    def _on_line(self, line: bytes) -> None:
        record = loads(line)
        if record is None:
            return
        if record.get("type") == "reply":
            if not record.get("ok"):
                self.bus.publish(Notice(level="warning", message=f"the run refused {record.get('cmd') or 'a message'}: "
                                                                 f"{record.get('error')}"))
            return
        if not self.from_file:
            self._publish_record(record)

    def _not_running(self, why: str) -> None:
        last = RunDir(self.run_dir).last
        self._publish(RunFailed(iter=self._last_iter, message=f"not running: {why}", traceback="",
                                last_checkpoint=str(last) if last.exists() else None))


def _complete_prefix(path: Path, end: int) -> int:
    """Where the last complete line of the file's first ``end`` bytes ends (a torn line is read later, whole)."""
    if end == 0:
        return 0
    with open(path, "rb") as f:
        return complete_prefix(f, end)
