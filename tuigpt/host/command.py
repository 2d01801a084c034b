"""Running a program the user named (alert_command) so that nothing it does can cost the run more than bounds.

The program runs in a process group of its own (a new session), with stdout discarded and stderr read, at most
MAX_OUTPUT bytes of it and only the last TAIL_BYTES kept: a command that floods (``yes``, ``cat /dev/zero``)
is killed as soon as it passes the bound, never read into memory. When it exits, times out or floods, its whole
process group is killed, so what it started in the background (``sh -c 'sleep 779 &'``) never outlives it — the
group is killed while the leader is still unreaped, so its id cannot have passed to another process.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

MAX_OUTPUT = 64 * 1024  # bytes of stderr a command may write: more is a flood, and it is killed
TAIL_BYTES = 4096  # of which the last are kept, for the line that reports a failure
POLL = 0.05  # seconds between looks at a running command


@dataclass
class Ran:
    """How a command ended: its exit code (None when it was killed), why it was killed, the end of its stderr."""

    returncode: int | None
    killed: str | None  # "timeout", "flood", or "stopped" (by the run's end: Running.kill)
    stderr_tail: bytes
    seconds: float

    def last_line(self, limit: int = 200) -> str:
        lines = self.stderr_tail.decode(errors="replace").strip().splitlines()
        return lines[-1][:limit] if lines else ""


class Running:
    """The command being run now, so another thread (the run's end) can kill its group."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pgid: int | None = None
        self.killed = False  # by kill(): the command in flight reports "stopped"

    def set(self, pgid: int | None) -> None:
        with self._lock:
            self._pgid = pgid
            self.killed = False

    def kill(self) -> None:
        with self._lock:
            if self._pgid is not None:
                self.killed = True
                _kill_group(self._pgid)


def run_command(argv: list[str], stdin: bytes, timeout: float, running: Running | None = None) -> Ran:
    """Run ``argv`` with ``stdin`` and wait at most ``timeout`` seconds; OSError when it cannot start at all."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, close_fds=True)
    if running is not None:
        running.set(proc.pid)
    killed: str | None = None
    tail = b""
    try:
        _feed(proc, stdin)
        assert proc.stderr is not None
        fd: int | None = proc.stderr.fileno()
        os.set_blocking(fd, False)
        total = 0
        deadline = t0 + timeout
        while not _exited(proc.pid):
            if time.monotonic() > deadline:
                killed = "timeout"
                break
            if fd is None:
                time.sleep(POLL)
            elif select.select([fd], [], [], POLL)[0]:
                chunk = _read(fd)
                if not chunk:
                    fd = None  # closed: wait for the exit alone
                    continue
                total += len(chunk)
                tail = (tail + chunk)[-TAIL_BYTES:]
                if total > MAX_OUTPUT:
                    killed = "flood"
                    break
        if fd is not None and killed is None:
            tail = (tail + (_read(fd) or b""))[-TAIL_BYTES:]  # what it wrote just before it exited
    finally:
        _kill_group(proc.pid)  # the leader is not reaped yet: the group's id is still its own
        if running is not None:
            killed = killed or ("stopped" if running.killed else None)
            running.set(None)
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    return Ran(None if killed else proc.returncode, killed, tail, time.monotonic() - t0)


def _feed(proc: subprocess.Popen, data: bytes) -> None:
    """Give the command its stdin without ever waiting on it (one that never reads it is not a stall)."""
    assert proc.stdin is not None
    try:
        os.set_blocking(proc.stdin.fileno(), False)
        os.write(proc.stdin.fileno(), data)
    except (BlockingIOError, BrokenPipeError):
        pass
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass


def _read(fd: int) -> bytes | None:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _exited(pid: int) -> bool:
    """Whether the leader has exited, without reaping it (WNOWAIT)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError as exc:
        if exc.errno not in (errno.ESRCH, errno.EPERM):
            raise
