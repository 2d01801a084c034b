"""The control socket: a running tuigpt takes commands from `tuigpt watch` and streams its events back.

``<run_dir>/control.sock`` is a Unix domain socket (never a TCP port) created with mode 0600 (bound
under a umask, so it is never wider, even for an instant) and removed on exit. Peers are checked with
SO_PEERCRED where the OS has it: a process of another uid is refused, whatever the file's mode.

Protocol: newline-delimited JSON, one object a line, at most MAX_MESSAGE bytes.

  client → server  {"cmd": "subscribe"}            stream every event from now on, as metrics.jsonl records
                   {"cmd": "ping"}                 {"type": "reply", "ok": true, "cmd": "ping", "pid": ...}
                   {"cmd": "pause"|"resume"|"toggle_pause"|"checkpoint"}
                   {"cmd": "sample", "prompt": "...", "max_new_tokens": N, "temperature": T, "top_k": K}
                   {"cmd": "set_eval_interval", "interval": N}
                   {"cmd": "stop", "save": true}
  server → client  {"type": "reply", "ok": true|false, "cmd": ..., "error": ...}  one per message
                   {"type": "iter", ...}, {"type": "eval", ...}, ...               events, once subscribed

Commands only queue on the trainer (``send`` never blocks, and refuses when too many of a kind wait);
each is published as a Notice ("watcher 1: pause"), so it shows in every front end and in metrics.jsonl.
Training can never wait on a client: events go into a bounded per-client queue, and a client that falls
behind is dropped. Iterations are streamed at most 20 times a second. Messages are decoded by
:mod:`tuigpt.run.records`.

No same-user client can break it: every message gets a reply (a handler that fails answers with an error
and the connection goes on), a connection that has not subscribed and sends no message for IDLE_TIMEOUT is
closed, a line begun must end within LINE_DEADLINE (a deadline per line, not per byte: a client trickling one
byte every few seconds, or blank lines, resets nothing), at most MAX_CLIENTS are served (the next is told why)
and at most MAX_PENDING of them may be connections that have not subscribed: past that the oldest of those gives
its slot to the newcomer, so slow or idle clients can never lock a watcher out. The server's notices are
budgeted, so a client looping on connect or garbage cannot grow metrics.jsonl without bound.
"""

from __future__ import annotations

import atexit
import errno
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Callable

from tuigpt.control.budget import NoticeBudget
from tuigpt.control.connection import Connection
from tuigpt.control.wire import is_live, peer_uid, socket_path
from tuigpt.run.commands import Command
from tuigpt.run.events import Event, IterationStats, Notice
from tuigpt.run.interrupts import forget_leftover, track_leftover
from tuigpt.run.records import dumps, event_record

MAX_CLIENTS = 16
MAX_PENDING = 8  # connections not subscribed yet (a ping, a command, a slow or idle client): the rest are watchers'
BACKLOG = 64  # connections the kernel queues before accept
ITER_EVERY = 0.05  # seconds between streamed iterations: a tiny model runs 1000 it/s, a chart needs 20/s


class ControlServer:
    """Listens on ``<run_dir>/control.sock`` for the lifetime of a run; ``start`` then ``stop`` (idempotent).

    ``send`` queues a command on the trainer (a text says why it was refused); ``publish`` puts a Notice on the
    run's bus (within a :class:`NoticeBudget`); ``subscribe``
    adds the server's event sink to the bus and returns the unsubscribe function.
    """

    def __init__(self, run_dir: str | Path, send: Callable[[Command], str | None], publish: Callable[[Event], None],
                 subscribe: Callable[[Callable[[Event], None]], Callable[[], None]]) -> None:
        self.path = socket_path(run_dir)
        self.send = send
        self._publish = publish
        self._subscribe = subscribe
        self._unsubscribe: Callable[[], None] | None = None
        self._listener: socket.socket | None = None
        self._clients: list[Connection] = []
        self._lock = threading.Lock()
        self._count = 0
        self._stopped = threading.Event()
        self._inode: int | None = None
        self._last_iter_sent = 0.0
        self.budget = NoticeBudget()

    # ------------------------------------------------------------ life

    def start(self) -> bool:
        """Bind and listen; False (with a warning Notice) when the socket cannot be made: training goes on."""
        try:
            self._clear_stale()
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)  # the socket file is born 0600: no moment where others could connect
            try:
                listener.bind(str(self.path))
            finally:
                os.umask(old)
            os.chmod(self.path, 0o600)
            self._inode = os.stat(self.path).st_ino
            track_leftover(self.path, self._inode)  # an exit that cannot wait (a second ctrl+c) still removes it
            listener.listen(BACKLOG)
        except (OSError, RuntimeError) as exc:
            self.notice("warning", f"no control socket, `tuigpt watch` can only look: {exc}")
            return False
        self._listener = listener
        self._unsubscribe = self._subscribe(self._on_event)
        atexit.register(self.stop)
        threading.Thread(target=self._accept, name="tuigpt-control-accept", daemon=True).start()
        return True

    def stop(self) -> None:
        """Close every connection and remove the socket file (only ours: a newer run's is left alone)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept thread (a close alone leaves it blocked)
            except OSError:
                pass
            try:
                listener.close()
            except OSError:
                pass
            try:
                if os.stat(self.path).st_ino == self._inode:
                    os.unlink(self.path)
            except OSError:
                pass
            forget_leftover(self.path)
        with self._lock:
            clients = list(self._clients)
        for client in clients:  # the last events (RunFinished) go out before the hang-up
            client.close(flush=True)
        deadline = time.monotonic() + 1.0
        for client in clients:
            client.writer.join(max(0.0, deadline - time.monotonic()))
        atexit.unregister(self.stop)

    def _clear_stale(self) -> None:
        """A socket file left by a killed run answers no connect: remove it. A live one means another run."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise RuntimeError(f"{self.path} exists and is not a socket; remove it")
        if is_live(self.path):
            raise RuntimeError(f"another process is already serving {self.path}")
        os.unlink(self.path)
        self.notice("info", f"removed a stale control socket left by an earlier run ({self.path})")

    # ------------------------------------------------------------ connections

    def _accept(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            if listener is None:
                return
            try:
                conn, _ = listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EINTR, errno.ECONNABORTED):
                    continue
                return  # closed by stop()
            uid = peer_uid(conn)
            if uid is not None and uid != os.getuid():
                self._refuse(conn, f"refused a connection from uid {uid}: only uid {os.getuid()} may control this run")
                continue
            evict = self._slot_for_newcomer()
            if evict is False:
                self._refuse(conn, f"refused a connection: {MAX_CLIENTS} watchers already connected")
                continue
            if evict is not None:
                evict._reply({"ok": False, "cmd": None, "error": "closed: a newer connection needed the slot of one "
                              "that had not subscribed"})
                evict.close(f"{evict.name} dropped: it had not subscribed, and a newer connection needed its slot",
                            flush=True)
            with self._lock:
                self._count += 1
                self._clients.append(Connection(self, conn, self._count))

    def _slot_for_newcomer(self) -> Connection | None | bool:
        """None: there is room; a client: the oldest not subscribed, whose slot the newcomer takes; False: every
        slot is a watcher's."""
        with self._lock:
            pending = [c for c in self._clients if not c.subscribed and not c.closed.is_set()]
            if len(self._clients) < MAX_CLIENTS and len(pending) < MAX_PENDING:
                return None
        return min(pending, key=lambda c: c.connected_at) if pending else False

    def _refuse(self, conn: socket.socket, why: str) -> None:
        try:
            conn.settimeout(1.0)
            conn.sendall(dumps({"type": "reply", "ok": False, "cmd": None, "error": why}))
        except OSError:
            pass
        finally:
            conn.close()
        self.notice("warning", f"control socket: {why}")

    def forget(self, client: Connection, why: str | None) -> None:
        """A connection has closed: free its slot, and say why where there is something to say."""
        with self._lock:
            if client not in self._clients:
                return
            self._clients.remove(client)
        if not self._stopped.is_set() and (why or client.subscribed):  # a `tuigpt runs` ping leaves no trace
            self.notice("warning" if why else "info", why or f"{client.name} disconnected")

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    # ------------------------------------------------------------ events

    def notice(self, level: str, message: str) -> None:
        """Publish a notice of the server, within the budget (a flood of connections is not a flood of lines)."""
        text = self.budget.take(message)
        if text is not None:
            self._publish(Notice(level=level, message=text))

    def _on_event(self, event: Event) -> None:
        """A bus subscriber (the trainer's thread): encode once, queue for every subscribed client."""
        with self._lock:
            targets = [c for c in self._clients if c.subscribed]
        if not targets:
            return
        if isinstance(event, IterationStats):
            now = time.monotonic()
            if now - self._last_iter_sent < ITER_EVERY:
                return
            self._last_iter_sent = now
        record = event_record(event)
        if record is None:
            return
        try:
            line = dumps(record)
        except (TypeError, ValueError):
            return
        for client in targets:
            client.push(line)
