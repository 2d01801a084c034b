"""A stop signal before a run's own handling is in place (:mod:`tuigpt.host.signals`): raised as an exception on
the main thread — KeyboardInterrupt for ctrl+c, :class:`Stopped` for SIGTERM and SIGHUP — so the start unwinds and
leaves no half-made run folder behind, but never where unwinding would do harm.

Two places must not be interrupted, and a signal that arrives in one is held, then raised again on the main thread
as soon as it has left it: an import (an extension module whose initialisation is interrupted cannot be loaded
again in the same process — numpy's "cannot load module more than once per process" turned a SIGTERM during
``import torch`` into exit 1), and a section marked with :func:`holding` (taking or giving back a run folder's lock,
which must happen whole). An import while the process holds nothing to give back (:func:`claim`) need not be
waited for: the process ends there, at once, with its one line.

The paths a write has under way (temporary files and folders, a control socket) are registered here too, so an end
that cannot wait — this one, or a second ctrl+c — removes them first (:func:`remove_leftovers`). Only builtin modules
and :mod:`tuigpt.run.console`: the process entry imports this before anything else.
"""

from __future__ import annotations

import _signal
import _thread
import contextlib
import os
import stat
import sys
import time

from tuigpt.run.console import say

TYPE_CHECKING = False  # typing itself is not imported: this module runs before signals are handled
if TYPE_CHECKING:
    from typing import Any, Iterator

STOPS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)
_NAMES = {_signal.SIGINT: "SIGINT", _signal.SIGTERM: "SIGTERM", _signal.SIGHUP: "SIGHUP"}
_MAIN = _thread.get_ident()  # imported on the main thread (by the entry, or the CLI), where signals are handled
_held: list[int] = []  # signals that arrived where they must wait, raised again once it is left
_watching = [False]
_sections = [0]  # holding() sections the main thread is in
_claims = [0]  # things a stop must unwind to give back (a run folder's lock): without any, it may end at once


class Stopped(BaseException):
    """SIGTERM or SIGHUP before a run's own signal handling is in place (set-up, dtype/compile trials): unwound
    like ctrl+c, so a start that is stopped leaves no half-made run folder behind."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def signal_name(signum: int) -> str:
    return _NAMES.get(signum, f"signal {signum}")


def stop_handler(signum: int, frame: Any) -> None:
    """Raise the stop as an exception on the main thread, unless it is in an import or a held section: then the
    signal waits for it to end — or, in an import while nothing is claimed (no run folder touched yet: the usual
    case, ``import torch`` at the start), the process ends at once, with its one line."""
    if _must_wait(frame) and not _sections[0] and not _claims[0]:
        remove_leftovers()
        say("interrupted" if signum == _signal.SIGINT else f"stopped by {signal_name(signum)}")
        os._exit(128 + signum)
    if _must_wait(frame):
        if signum not in _held:
            _held.append(signum)
        if not _watching[0]:
            _watching[0] = True
            _thread.start_new_thread(_raise_when_free, ())
        return
    if signum == _signal.SIGINT:
        raise KeyboardInterrupt
    raise Stopped(signum)


def install() -> None:
    """Handle SIGINT, SIGTERM and SIGHUP with :func:`stop_handler` (main thread only; a handler someone else set
    stays)."""
    if _thread.get_ident() != _MAIN:
        return
    for signum in STOPS:
        if _signal.getsignal(signum) in (_signal.SIG_DFL, _signal.default_int_handler):
            _signal.signal(signum, stop_handler)


@contextlib.contextmanager
def holding() -> Iterator[None]:
    """A section of the main thread a stop must not interrupt (it is raised when the section ends); elsewhere a
    no-op."""
    if _thread.get_ident() != _MAIN:
        yield
        return
    _sections[0] += 1
    try:
        yield
    finally:
        _sections[0] -= 1


def claim() -> None:
    """Something a stop must unwind to give back is now held (a run folder's lock)."""
    _claims[0] += 1


def unclaim() -> None:
    _claims[0] = max(0, _claims[0] - 1)


def _must_wait(frame: Any) -> bool:
    if _sections[0]:
        return True
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _raise_when_free() -> None:
    """(A thread.) Wait until the main thread is out of every import and held section, then deliver the held
    signals to it again."""
    while _must_wait(sys._current_frames().get(_MAIN)):
        time.sleep(0.01)
    _watching[0] = False
    while _held:
        _signal.pthread_kill(_MAIN, _held.pop(0))


# paths a write has under way (temporary files and folders, a control socket): removed by remove_leftovers when the
# process must end at once. Values: the inode to match (None: any), so a newer file at the path is left alone.
_LEFTOVERS: dict[str, int | None] = {}


def track_leftover(path: str | os.PathLike[str], inode: int | None = None) -> None:
    """``path`` is ours until :func:`forget_leftover`: an end that cannot wait removes it (see remove_leftovers)."""
    _LEFTOVERS[os.fspath(path)] = inode


def forget_leftover(path: str | os.PathLike[str]) -> None:
    _LEFTOVERS.pop(os.fspath(path), None)


def remove_leftovers() -> None:
    """Remove every tracked leftover now (the process is about to end without unwinding)."""
    for path, inode in list(_LEFTOVERS.items()):
        try:
            st = os.lstat(path)
            if inode is not None and st.st_ino != inode:
                continue
            if stat.S_ISDIR(st.st_mode):
                import shutil  # (imported long before by tempfile: a lookup)

                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass
        _LEFTOVERS.pop(path, None)
