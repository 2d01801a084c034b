"""A budget for the lines a long-running server may log on behalf of its clients."""

from __future__ import annotations

import threading
import time
from typing import Callable

NOTICE_BURST, NOTICE_REFILL, NOTICE_TOTAL = 20, 30.0, 500  # the server's notices: burst, seconds per more, cap


class NoticeBudget:
    """How many notices the server may still publish: ``burst`` at once, one more every ``refill`` seconds, at
    most ``total`` in a session. What is held back is counted and said with the next notice that goes out."""

    def __init__(self, burst: int = NOTICE_BURST, refill: float = NOTICE_REFILL, total: int = NOTICE_TOTAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.refill, self.total, self.clock = burst, refill, total, clock
        self._tokens = float(burst)
        self._at = clock()
        self._spent = 0
        self.held_back = 0
        self._lock = threading.Lock()

    def take(self, message: str) -> str | None:
        """The message to publish now (with a count of those held back before it), or None to hold it back."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) / self.refill)
            self._at = now
            if self._spent >= self.total or self._tokens < 1:
                self.held_back += 1
                return None
            self._tokens -= 1
            self._spent += 1
            if self._spent == self.total:
                message += f" (the control socket's notice limit of {self.total} is reached: later ones are not logged)"
            if self.held_back:
                message = f"{message} ({self.held_back} earlier control-socket notice(s) were not logged)"
                self.held_back = 0
            return message
