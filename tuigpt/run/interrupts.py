"""A stop signal before a run's own handling is in place (:mod:`tuigpt.host.signals`): raised as an exception on
the main thread — KeyboardInterrupt for ctrl+c, :class:`Stopped` for SIGTERM and SIGHUP — so the start unwinds and
leaves no half-made run folder behind, but never where unwinding would do harm.

Two places must not be interrupted, and a signal that arrives in one is held, then raised again on the main thread
as soon as it has left it: an import (an extension module whose initialisation is interrupted cannot be loaded
again in the same process — numpy's "cannot load module more than once per process" turned a SIGTERM during
``import torch`` into exit 1), and a section marked with :func:`holding` (taking or giving back a run folder's lock,
which must happen whole). Only builtin modules: the process entry imports this before anything else.
"""

from __future__ import annotations

import _signal
import _thread
import contextlib
import sys
import time
from typing import Any, Iterator

STOPS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)
_NAMES = {_signal.SIGINT: "SIGINT", _signal.SIGTERM: "SIGTERM", _signal.SIGHUP: "SIGHUP"}
_MAIN = _thread.get_ident()  # imported on the main thread (by the entry, or the CLI), where signals are handled
_held: list[int] = []  # signals that arrived where they must wait, raised again once it is left
_watching = [False]
_sections = [0]  # holding() sections the main thread is in


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
    signal waits for it to end."""
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
