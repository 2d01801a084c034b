"""One connection to a run's control socket: a reader thread takes its commands, a writer thread drains its bounded
queue of replies and events; the deadlines and limits that keep any client from costing the run anything.

A connection that has not subscribed and sends no message for IDLE_TIMEOUT is closed; a line begun must end within
LINE_DEADLINE (a deadline per line, not per byte: trickling one byte every few seconds, or blank lines, keeps
nothing alive); a client that does not read its events within SEND_TIMEOUT, or sends MAX_REJECTS bad messages, is
dropped. Every message gets a reply. The server (:mod:`tuigpt.control.server`) decides who gets a slot.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
from typing import Any

from tuigpt.control.wire import LineReader, LineTooLong
from tuigpt.run.commands import describe
from tuigpt.run.records import command_from_message, dumps, loads

CLIENT_QUEUE = 4096  # event lines held for a client before it counts as dead
SEND_TIMEOUT = 5.0  # seconds a client may take to read one line (and the reader's poll)
MAX_REJECTS = 20  # bad messages before a client is dropped (bounds what garbage can write into the log)
IDLE_TIMEOUT = 10.0  # seconds a connection may stay without subscribing or sending a message
LINE_DEADLINE = 10.0  # seconds from a line's first byte to its newline


class Connection:
    """One connection: a reader thread takes commands, a writer thread drains its bounded queue."""

    def __init__(self, server: Any, conn: socket.socket, number: int) -> None:
        self.server = server
        self.conn = conn
        self.name = f"watcher {number}"
        self.subscribed = False
        self.closed = threading.Event()
        self.out: queue.Queue[bytes | None] = queue.Queue(maxsize=CLIENT_QUEUE)
        self.rejects = 0
        self.connected_at = self.active_at = time.monotonic()  # active: the last message, or the connection
        self.line_since: float | None = None  # when the line being received began
        conn.settimeout(SEND_TIMEOUT)
        threading.Thread(target=self._read, name=f"tuigpt-control-{number}-in", daemon=True).start()
        self.writer = threading.Thread(target=self._write, name=f"tuigpt-control-{number}-out", daemon=True)
        self.writer.start()

    def push(self, line: bytes) -> None:
        """From any thread, never blocks: a client whose queue is full is dropped."""
        if self.closed.is_set():
            return
        try:
            self.out.put_nowait(line)
        except queue.Full:
            self.close(f"{self.name} dropped: it did not keep up with the event stream")

    def close(self, why: str | None = None, flush: bool = False) -> None:
        """Hang up; with ``flush`` the replies already queued go out first (the writer hangs up after them)."""
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            self.out.put_nowait(None)  # wakes the writer; after the queued lines when flushing
        except queue.Full:
            flush = False
        if not flush:
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server.forget(self, why)

    def _write(self) -> None:
        try:
            while True:
                line = self.out.get()
                if line is None:
                    break
                self.conn.sendall(line)
        except socket.timeout:  # SEND_TIMEOUT without reading: a stuck client
            self.close(f"{self.name} dropped: it did not keep up with the event stream")
        except OSError:  # gone
            self.close()
        finally:
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self.conn.close()
            except OSError:
                pass

    def _read(self) -> None:
        reader = LineReader(self.conn)
        try:
            while not self.closed.is_set():
                try:
                    lines = reader.read()
                except socket.timeout:
                    lines = []
                except LineTooLong as exc:
                    self._reject(str(exc))
                    self.close(f"{self.name} dropped: it sent a {exc}", flush=True)
                    return
                if lines is None:
                    break
                for line in lines:
                    if not line.strip():
                        continue  # a blank line is no message: it keeps nothing alive
                    self.active_at = time.monotonic()
                    try:
                        self._handle(line)
                    except Exception as exc:  # a handler's bug must cost this message, never the slot
                        self._reject(f"the run could not handle this message ({type(exc).__name__})")
                    if self.closed.is_set():
                        return
                if self._overstayed(reader.pending):
                    return
        except OSError:
            pass
        finally:
            self.close()

    def _overstayed(self, pending: int) -> bool:
        """Drop a client whose line has been arriving for LINE_DEADLINE, or that has not subscribed and sent no
        message for IDLE_TIMEOUT (bytes alone never count as activity); True when it was dropped."""
        now = time.monotonic()
        self.line_since = (self.line_since or now) if pending else None
        if self.line_since is not None and now - self.line_since > LINE_DEADLINE:
            why = f"a line begun {LINE_DEADLINE:g} s ago never ended"
        elif not self.subscribed and now - self.active_at > IDLE_TIMEOUT:
            why = f"idle for {IDLE_TIMEOUT:g} s without subscribing"
        else:
            return False
        self._reply({"ok": False, "cmd": None, "error": f"{why}: closed (send {{\"cmd\": \"subscribe\"}} to stay "
                     f"connected)"})
        self.close(f"{self.name} dropped: {why}", flush=True)
        return True

    def _reply(self, obj: dict[str, Any]) -> None:
        self.push(dumps({"type": "reply", **obj}))

    def _reject(self, error: str, cmd: Any = None) -> None:
        self.rejects += 1
        self._reply({"ok": False, "cmd": cmd, "error": error})
        self.server.notice("warning", f"control socket: rejected a message from {self.name}: {error}")
        if self.rejects >= MAX_REJECTS:
            self.close(f"{self.name} dropped after {MAX_REJECTS} bad messages", flush=True)

    def _handle(self, line: bytes) -> None:
        if not line.strip():
            return
        message = loads(line)
        if message is None:
            self._reject("not a JSON object" if _is_json(line) else "not JSON")
            return
        cmd = message.get("cmd")
        if cmd == "ping":
            self._reply({"ok": True, "cmd": "ping", "pid": os.getpid()})
            return
        if cmd == "subscribe":
            if not self.subscribed:
                self.subscribed = True
                self.server.notice("info", f"{self.name} connected")
            self._reply({"ok": True, "cmd": "subscribe"})
            return
        try:
            command = command_from_message(message)
        except ValueError as exc:
            self._reject(str(exc), cmd=cmd[:40] if isinstance(cmd, str) else None)
            return
        refused = self.server.send(command)
        if refused:
            self._reply({"ok": False, "cmd": cmd, "error": refused})
            return
        self._reply({"ok": True, "cmd": cmd})
        self.server.notice("info", f"{self.name}: {describe(command)}")


def _is_json(line: bytes) -> bool:
    """Whether a line is JSON at all (a refused message then says "not a JSON object", not "not JSON")."""
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return False
    return True
