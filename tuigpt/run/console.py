"""The last lines a process writes (an error, "stopped by SIGTERM") and its end never hold it: each goes out within
EXIT_PATIENCE or is given up, so an output nobody reads (``| less`` left open, a terminal stopped with ctrl+s, a
stalled SSH link) cannot keep a process from ending. Only builtin modules: the process entry imports this first.
"""

from __future__ import annotations

import _signal
import _thread
import os
import sys
import time

TYPE_CHECKING = False  # typing itself is not imported: this module runs before signals are handled
if TYPE_CHECKING:
    from typing import Callable, TextIO

EXIT_PATIENCE = 3.0  # seconds a last line may take to go out before it is given up


def say(text: str, stream: TextIO | None = None) -> None:
    """Write one line to stderr (or ``stream``), waiting on it at most EXIT_PATIENCE."""
    out = stream if stream is not None else sys.stderr
    bounded(lambda: (out.write(text if text.endswith("\n") else text + "\n"), out.flush()))


def bounded(write: Callable[[], object]) -> bool:
    """Run ``write`` on a thread of its own; whether it finished within EXIT_PATIENCE (a failure counts as done:
    the output is gone)."""
    done: list[bool] = []

    def attempt() -> None:
        try:
            write()
        except (OSError, ValueError):
            pass
        done.append(True)

    _thread.start_new_thread(attempt, ())
    deadline = time.monotonic() + EXIT_PATIENCE
    while not done and time.monotonic() < deadline:
        time.sleep(0.002)
    return bool(done)


def finish(code: int, teardown: bool = True) -> None:
    """End the process with ``code``; what stdout/stderr still hold goes out within EXIT_PATIENCE, or is given up.
    A stop signal meanwhile ends it at once, with the same code (there is nothing left to stop). ``teardown=False``
    skips the interpreter's own teardown once the output is out: a training run has closed and flushed everything
    it wrote (checkpoints, metrics.jsonl, the socket, the lock), and tearing torch's modules and thread pools down
    took 1.1-1.5 s more on the 2-core VM (4 s under load), which a run planned to end on time would overrun."""
    if _thread.get_ident() == _MAIN:
        for signum in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
            _signal.signal(signum, lambda *_: os._exit(code))
    if bounded(lambda: (sys.stdout.flush(), sys.stderr.flush())) and teardown:
        sys.exit(code)
    os._exit(code)  # no teardown, or a flush is blocked on an unread output (the interpreter's would block too)


_MAIN = _thread.get_ident()  # this module is imported on the main thread
