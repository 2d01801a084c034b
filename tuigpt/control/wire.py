"""The control socket's framing: where it lives, who is at the other end, and reading bounded lines.

A run's control socket is ``<run_dir>/control.sock``, a Unix domain socket (never a TCP port). Messages
both ways are one JSON object a line (:func:`tuigpt.run.records.dumps`), at most MAX_MESSAGE bytes.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from tuigpt.run.records import dumps, loads
from tuigpt.run.rundir import RunDir

MAX_MESSAGE = 64 * 1024  # bytes in one line, either way


class LineTooLong(ValueError):
    """A peer sent more than MAX_MESSAGE bytes without a newline."""


def socket_path(run_dir: str | Path) -> Path:
    return RunDir(Path(run_dir)).socket


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end, or None where the OS does not say (no SO_PEERCRED)."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class LineReader:
    """Complete lines from a socket, each at most ``limit`` bytes (the one line reader of every peer)."""

    def __init__(self, sock: socket.socket, limit: int = MAX_MESSAGE) -> None:
        self.sock = sock
        self.limit = limit
        self._buf = b""

    @property
    def pending(self) -> int:
        """Bytes of a line begun but not finished (no newline yet)."""
        return len(self._buf)

    def read(self) -> list[bytes] | None:
        """The lines completed by the next chunk received ([] when none yet); None when the peer closed.

        Raises LineTooLong when a line outgrows ``limit``, and whatever ``recv`` raises (timeouts included).
        """
        chunk = self.sock.recv(65536)
        if not chunk:
            return None
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > self.limit or any(len(line) > self.limit for line in lines):
            raise LineTooLong(f"message over {self.limit // 1024} KiB")
        return lines


def is_live(path: Path, timeout: float = 0.5) -> bool:
    """True when something accepts connections on this socket (a running tuigpt)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def ping(run_dir: Path, timeout: float = 0.5) -> bool:
    """True when a tuigpt process answers a ping on the run's control socket."""
    path = socket_path(run_dir)
    if not path.exists():
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        sock.sendall(dumps({"cmd": "ping"}))
        reader = LineReader(sock)
        while True:
            lines = reader.read()
            if lines is None:
                return False
            if lines:
                reply = loads(lines[0])
                return reply is not None and reply.get("ok") is True
    except (OSError, LineTooLong):
        return False
    finally:
        sock.close()
