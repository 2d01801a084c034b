"""The telemetry thread: reads each reader every ``interval`` seconds and publishes it.

Drawing only reads what this thread publishes; the UI never calls a reader itself.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Protocol

from tuigpt.run.events import Event, Notice, TelemetrySnapshot


class Reader(Protocol):
    def read(self) -> Any: ...


class TelemetryPoller:
    """Publishes ``TelemetrySnapshot(kind=name, data=reader.read())`` for each reader, periodically.

    A reader that raises is reported once as a warning Notice and tried again next
    time; the others go on. ``stop()`` returns within one sampling pass.
    """

    def __init__(self, publish: Callable[[Event], None], readers: dict[str, Reader], interval: float = 1.0) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self._publish = publish
        self._readers = dict(readers)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tuigpt-telemetry", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def sample_once(self) -> None:
        """One pass over all readers (the thread's body; also handy in tests and one-shot tools)."""
        for kind, reader in self._readers.items():
            if self._stop.is_set() and self._thread is not None:
                return
            try:
                event: Event = TelemetrySnapshot(kind=kind, data=reader.read())
            except Exception as exc:
                if kind in self._warned:
                    continue
                self._warned.add(kind)
                event = Notice(level="warning", message=f"{kind} telemetry failed, readings may be missing: {exc!r}")
            try:
                self._publish(event)
            except Exception:
                pass  # a broken sink must not end telemetry; the EventBus reports its own failures

    def _run(self) -> None:
        next_due = time.monotonic()
        while not self._stop.is_set():
            self.sample_once()
            next_due += self.interval
            now = time.monotonic()
            if next_due < now:  # fell behind (suspended, slow reader): don't burst to catch up
                next_due = now + self.interval
            self._stop.wait(next_due - now)


def default_readers(device: str = "cpu") -> dict[str, Reader]:
    """CPU and GPU: the GPU pane says "no GPU" (or why NVML is unavailable) even when training on the CPU.

    A missing NVML is detected once and remembered, so the GPU reader costs nothing on GPU-less machines.
    """
    from tuigpt.telemetry.cpu import CpuReader
    from tuigpt.telemetry.gpu import GpuReader

    return {"cpu": CpuReader(), "gpu": GpuReader()}
