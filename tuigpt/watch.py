"""`tuigpt watch [RUN_DIR]`: the monitor on a run that lives in another process, or has ended.

:class:`WatchController` implements :class:`tuigpt.control.RunController` from outside the run:

1. it replays the run's metrics.jsonl (``load_history``: iterations thinned, so a million-line file
   loads in about a second) as events: RunStarted of the last session, HistoryLoaded, the last
   iteration, state, eval interval, sample, telemetry and the recent log-worthy records;
2. it connects to ``<run_dir>/control.sock`` when the run is alive: commands go there, and live events
   come back from it (every iteration, not only the logged ones);
3. otherwise it tails metrics.jsonl (torn last lines wait for their newline).

The same event can reach it twice (a record already in the file and on the socket): events are keyed
by (type, time) and each key is published once. A run that ends prints a finish/failed record; one whose
process vanished without it (SIGKILL, power cut) is reported as not running.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from tuigpt.control_server import MAX_MESSAGE, encode, message_from_command, socket_path
from tuigpt.errors import UserError
from tuigpt.events import (CheckpointWritten, ClusterStats, Command, EvalIntervalChanged, EvalResult, Event, EventBus,
                           HistoryLoaded, IterationStats, Notice, RunFailed, RunFinished, RunStarted, RunState,
                           SampleGenerated, StateChanged, TelemetrySnapshot)
from tuigpt.metrics_log import METRICS_FILE, load_history, parse_record

KINDS: dict[str, type[Event]] = {
    "start": RunStarted, "iter": IterationStats, "eval": EvalResult, "checkpoint": CheckpointWritten,
    "sample": SampleGenerated, "notice": Notice, "state": StateChanged, "eval_interval": EvalIntervalChanged,
    "finish": RunFinished, "failed": RunFailed, "telemetry": TelemetrySnapshot, "cluster": ClusterStats,
}
REPLAY_LOG = 30  # log-worthy records of the last session replayed into the events log
TAIL_BYTES = 512 * 1024  # read from the end for the last telemetry readings
STALE_AFTER = 10.0  # no socket and no growth for this long: the run is not running


def _snapshot(kind: Any, data: Any) -> Any:
    """Telemetry read back from JSON as the sampler's own snapshot objects (their dict fields, such as
    temperatures, stay dicts); an unknown shape becomes an attribute object the panes read defensively."""
    from tuigpt.telemetry.cpu import CpuSnapshot
    from tuigpt.telemetry.gpu import GpuReading, GpuSnapshot

    if isinstance(data, dict):
        try:
            if kind == "cpu":
                return CpuSnapshot(**data)
            if kind == "gpu":
                rest = {k: v for k, v in data.items() if k != "gpus"}
                return GpuSnapshot(gpus=[GpuReading(**g) for g in data.get("gpus") or []], **rest)
        except TypeError:  # written by another version of tuigpt
            pass
        return SimpleNamespace(**data)
    return data


def event_from_record(record: dict[str, Any]) -> Event | None:
    """The event a metrics.jsonl record (or a control-socket line) was made from; None when unreadable."""
    cls = KINDS.get(record.get("type"))  # type: ignore[arg-type]
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in record.items() if k in names}
    try:
        if cls is StateChanged:
            values["state"] = RunState(values["state"])
        elif cls is TelemetrySnapshot:
            values["data"] = _snapshot(values.get("kind"), values.get("data"))
        return cls(**values)
    except (TypeError, ValueError, KeyError):
        return None


def _key(record: dict[str, Any]) -> tuple[Any, Any]:
    return record.get("type"), record.get("time")


class WatchController:
    """A RunController for a run in another process (or a finished one), from its run directory."""

    def __init__(self, run_dir: str | Path, *, poll: float = 0.25, stale_after: float = STALE_AFTER) -> None:
        self.run_dir = Path(run_dir)
        self.metrics = self.run_dir / METRICS_FILE
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
                sock.sendall(encode(message_from_command(command)))
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
                grew = self._tail(publish=not self._connected.is_set())
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
        starts = [k for k, r in enumerate(records) if r.get("type") == "start"]
        session = records[starts[-1]:] if starts else records
        for record in records:  # every record of the file is now seen: the tail must not repeat it
            self._seen[_key(record)] = None
        if starts:
            started = event_from_record(records[starts[-1]])
            if started is not None:
                self._publish(started)
        curve = [r for r in records if r.get("type") in ("iter", "eval")]
        if curve:
            self._publish(HistoryLoaded(records=curve))
        last: dict[str, dict[str, Any]] = {}
        for record in session:
            last[record.get("type", "")] = record
        for kind in ("eval_interval", "state", "iter", "sample"):
            if kind in last and (event := event_from_record(last[kind])) is not None:
                self._publish(event)
        for kind, record in self._tail_records(end).items():
            if (event := event_from_record(record)) is not None:
                self._publish(event)
        loggable = [r for r in session if r.get("type") in ("notice", "checkpoint", "eval")][-REPLAY_LOG:]
        for record in loggable:
            event = event_from_record(record)
            if isinstance(event, EvalResult):
                # already on the chart (HistoryLoaded); logged as a notice so it is not counted twice
                self._publish(Notice(level="info", message=f"eval @{event.iter:,}: train {event.train_loss:.4f} · "
                                                           f"val {event.val_loss:.4f}", time=event.time))
            elif event is not None:
                self._publish(event)
        for kind in ("finish", "failed"):
            if kind in last and (event := event_from_record(last[kind])) is not None:
                self._publish(event)

    def _tail_records(self, end: int) -> dict[str, dict[str, Any]]:
        """The last cpu/gpu telemetry and cluster records, from the file's last TAIL_BYTES (load_history skips them)."""
        found: dict[str, dict[str, Any]] = {}
        try:
            with open(self.metrics, "rb") as f:
                start = max(0, end - TAIL_BYTES)
                f.seek(start)
                block = f.read(end - start)
        except OSError:
            return found
        lines = block.split(b"\n")
        if start:
            lines = lines[1:]  # the first may be a partial line
        for raw in lines:
            if b'"telemetry"' not in raw and b'"cluster"' not in raw:
                continue
            record = parse_record(raw)
            if record is None:
                continue
            if record.get("type") == "telemetry":
                found[f"telemetry-{record.get('kind')}"] = record
            elif record.get("type") == "cluster":
                found["cluster"] = record
        return found

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
            record = parse_record(raw)
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
            sock.sendall(encode({"cmd": "subscribe"}))
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
        self.bus.publish(Notice(level="info", message=f"connected to the run ({self.sock_path}): keys steer it"))
        threading.Thread(target=self._read_socket, args=(sock,), name="tuigpt-watch-socket", daemon=True).start()

    def _read_socket(self, sock: socket.socket) -> None:
        buf = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self._on_line(line)
                if len(buf) > 4 * MAX_MESSAGE:
                    break
        except OSError:
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
        record = parse_record(line)
        if record is None:
            return
        if record.get("type") == "reply":
            if not record.get("ok"):
                self.bus.publish(Notice(level="warning", message=f"the run refused {record.get('cmd') or 'a message'}: "
                                                                 f"{record.get('error')}"))
            return
        self._publish_record(record)

    def _not_running(self, why: str) -> None:
        last = self.run_dir / "last.pt"
        self._publish(RunFailed(iter=self._last_iter, message=f"not running: {why}", traceback="",
                                last_checkpoint=str(last) if last.exists() else None))


def _complete_prefix(path: Path, end: int) -> int:
    """Where the last complete line before ``end`` ends (a torn last line is read later, whole)."""
    if end == 0:
        return 0
    with open(path, "rb") as f:
        pos = end
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            block = f.read(step)
            k = block.rfind(b"\n")
            if k >= 0:
                return pos - step + k + 1
            pos -= step
    return 0


# ---------------------------------------------------------------- finding runs


def run_dirs(out_dir: str | Path) -> list[Path]:
    """Directories under out_dir holding a metrics.jsonl, most recently updated first."""
    root = Path(out_dir)
    found = [p.parent for p in root.glob(f"*/{METRICS_FILE}")] if root.is_dir() else []
    return sorted(found, key=lambda d: _mtime(d / METRICS_FILE), reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def resolve_run_dir(run_dir: str | None, out_dir: str) -> Path:
    """The run to watch: the one named, or the most recently updated under out_dir; UserError otherwise."""
    if run_dir is None:
        runs = run_dirs(out_dir)
        if not runs:
            raise UserError(f"no runs under {out_dir}/ (no */{METRICS_FILE}): name one, `tuigpt watch RUN_DIR`, "
                            f"or pick another --out_dir")
        return runs[0]
    path = Path(run_dir)
    if path.is_file() and path.name == METRICS_FILE:
        path = path.parent
    if not path.is_dir():
        candidate = Path(out_dir) / run_dir  # `tuigpt watch tiny` for checkpoints/tiny
        if candidate.is_dir():
            path = candidate
        else:
            raise UserError(f"{run_dir} is not a run directory (see `tuigpt runs` for the runs under {out_dir}/)")
    if not (path / METRICS_FILE).is_file():
        raise UserError(f"{path} has no {METRICS_FILE}: not a tuigpt run directory (see `tuigpt runs`)")
    return path


def cmd_watch(args: list[str]) -> int:
    """`tuigpt watch [RUN_DIR] [--out_dir DIR] [--compare RUN_DIR]`."""
    from tuigpt.cli import _Parser

    parser = _Parser(prog="tuigpt watch", description="Open the monitor on a run in another process (or ended): "
                     "follow its metrics.jsonl and steer it through its control socket.")
    parser.add_argument("run_dir", nargs="?", default=None, help="the run's directory (default: the most recently "
                        "updated run under --out_dir)")
    parser.add_argument("--out_dir", default="checkpoints", help="where runs live (default: checkpoints)")
    parser.add_argument("--compare", default=None, metavar="RUN_DIR", help="overlay another run's loss curves")
    ns = parser.parse_args(args)
    path = resolve_run_dir(ns.run_dir, ns.out_dir)
    compare = resolve_run_dir(ns.compare, ns.out_dir) if ns.compare else None
    from tuigpt.ui.app import TuiGptApp

    controller = WatchController(path)
    app = TuiGptApp(controller, config_path=str(path), watching=True, compare=compare)
    try:
        app.run()
    finally:
        controller.close()
    return 0
