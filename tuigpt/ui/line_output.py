"""Headless lines that never hold training up: they go out on a thread of their own.

A terminal stopped with ctrl+s, an SSH link that stalls without dropping, a pipe whose reader stopped reading:
each blocks the next write, and the headless lines are written from the trainer's thread, so training would
stop there (a pipe holds 64 KiB, a few seconds of a small model's lines). Lines wait in a bounded queue
instead; past it they are counted, not kept, and one line says how many were left out where they would have
been (metrics.jsonl has every record). An output that is gone (EPIPE, EIO after a hang-up) is dropped quietly.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import TextIO

CAPACITY = 2000  # lines held while the output does not move (a few hundred KiB)
CLOSE_PATIENCE = 4.0  # seconds close() waits without a line going out before it gives the rest up: an unread
# output must not keep a stopped run from exiting (the issue 26 bar: no hang past 10 s; metrics.jsonl has every line)


class BackgroundOutput:
    """A write-only text stream for whole lines: ``write`` queues and returns at once; ``close`` waits for the
    queued lines while the output moves (at most CLOSE_PATIENCE seconds without progress)."""

    def __init__(self, stream: TextIO | None, capacity: int = CAPACITY) -> None:
        self.stream = stream
        self._fd = _fd_of(stream)
        if self._fd is not None:
            stream.flush()  # type: ignore[union-attr]  # what was printed before goes out first: the thread writes past the stream's buffer
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._missed = 0  # lines left out since the last one queued
        self.dropped = 0  # lines left out in all
        self.broken = stream is None  # the output is gone (or never was: stdout closed, `>&-`): nothing is written
        self._writing_since: float | None = None  # set while a write is under way
        self._closed = False
        self._thread = threading.Thread(target=self._drain, name="tuigpt-headless-out", daemon=True)
        self._thread.start()

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()  # type: ignore[union-attr]
        except (AttributeError, OSError, ValueError):
            return False

    def write(self, text: str) -> int:
        """Queue ``text`` (one or more whole lines); never blocks."""
        with self._lock:
            if self._closed or self.broken:
                return len(text)
            if self._missed and self._offer(self._missed_note()):
                self._missed = 0
            if self._missed or not self._offer(text):
                lines = max(1, text.count("\n"))  # a sample is one write of several lines
                self._missed += lines
                self.dropped += lines
        return len(text)

    def flush(self) -> None:
        """Nothing to do: the thread flushes after every line."""

    def close(self) -> None:
        """Send what is queued, then stop; gives the rest up once the output has not moved for CLOSE_PATIENCE."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        last = [self._missed_note()] if self._missed else []
        for item in [*last, None]:
            while self._thread.is_alive() and not self._stalled() and not self._offer_wait(item):
                pass
        while self._thread.is_alive() and not self._stalled():
            self._thread.join(0.2)

    def _missed_note(self) -> str:
        n = self._missed
        return f"... {n} line{'s' * (n != 1)} not printed: the output was not being read (metrics.jsonl has them)\n"

    def _stalled(self) -> bool:
        since = self._writing_since
        return since is not None and time.monotonic() - since > CLOSE_PATIENCE

    def _offer_wait(self, item: str | None) -> bool:
        try:
            self._queue.put(item, timeout=0.2)
            return True
        except queue.Full:
            return False

    def _offer(self, text: str) -> bool:
        try:
            self._queue.put_nowait(text)
            return True
        except queue.Full:
            return False

    def _drain(self) -> None:
        while (text := self._queue.get()) is not None:
            if self.broken:
                continue
            self._writing_since = time.monotonic()
            try:
                self._emit(text)
            except Exception:  # EPIPE, EIO after a hang-up, a closed stream: nobody will read it, training goes on
                self.broken = True
            self._writing_since = None

    def _emit(self, text: str) -> None:
        if self._fd is None:
            self.stream.write(text)  # type: ignore[union-attr]
            self.stream.flush()  # type: ignore[union-attr]
            return
        data = text.encode(getattr(self.stream, "encoding", None) or "utf-8", "replace")
        while data:  # os.write, not the stream: a thread blocked here holds no lock the interpreter's exit needs
            data = data[os.write(self._fd, data):]


def _fd_of(stream: TextIO | None) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
