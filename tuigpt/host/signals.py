"""The one signal path of a running process: SIGINT, SIGTERM and SIGHUP.

The first signal calls the front end's ``on_first`` (stop at the next iteration and save, or hang up), which must
never wait on anything (an output nobody reads included: it only queues the stop and a notice). A repeat within
``grace`` seconds is ignored: under torchrun the same ctrl+c arrives from the terminal and from the launcher. A
later repeat calls ``on_repeat`` (by default: exit at once; checkpoints are atomic, so nothing tears, and what a
write had under way — a temporary file, the control socket — is removed first). Handlers are installed for the
``with`` block and the previous ones restored after it.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Callable

from tuigpt.run.interrupts import remove_leftovers

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_now(signum: int) -> None:
    """End the process at once with 128+N, leaving no temporary file or control socket behind."""
    remove_leftovers()
    os._exit(128 + signum)


class SignalStop:
    def __init__(self, on_first: Callable[[int], None], *, grace: float = 0.0,
                 on_repeat: Callable[[int], None] = exit_now) -> None:
        self.on_first = on_first
        self.on_repeat = on_repeat
        self.grace = grace
        self.received: int | None = None  # the first signal, whose number the exit code carries
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        if self.received is None:
            self.received = signum
            self._first_at = time.monotonic()
            self.on_first(signum)
        elif time.monotonic() - self._first_at >= self.grace:
            self.on_repeat(signum)

    def __enter__(self) -> SignalStop:
        self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
