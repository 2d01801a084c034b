"""The telemetry thread publishes snapshots, survives a failing reader, and stops promptly."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tuigpt.run.events import Event, Notice, TelemetrySnapshot
from tuigpt.telemetry.poller import TelemetryPoller


class Counting:
    def __init__(self, value: Any) -> None:
        self.value, self.calls = value, 0

    def read(self) -> Any:
        self.calls += 1
        return self.value


class Broken:
    def read(self) -> Any:
        raise OSError("sensor went away")


class Collector:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, cls: type, **match: Any) -> list[Any]:
        with self.lock:
            return [e for e in self.events if isinstance(e, cls) and all(getattr(e, k) == v for k, v in match.items())]


def wait_for(predicate: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_publishes_each_kind_repeatedly_then_stops() -> None:
    out = Collector()
    telemetry = TelemetryPoller(out, {"cpu": Counting("c"), "gpu": Counting("g")}, interval=0.02)
    telemetry.start()
    try:
        wait_for(lambda: len(out.of(TelemetrySnapshot, kind="gpu")) >= 3)
    finally:
        telemetry.stop()
    assert not telemetry.running
    cpu = out.of(TelemetrySnapshot, kind="cpu")
    assert len(cpu) >= 3 and all(e.data == "c" for e in cpu)
    settled = len(out.events)
    time.sleep(0.1)
    assert len(out.events) == settled  # nothing after stop()


def test_stop_is_prompt_even_with_a_long_interval() -> None:
    out = Collector()
    telemetry = TelemetryPoller(out, {"cpu": Counting(1)}, interval=30.0)
    telemetry.start()
    wait_for(lambda: out.of(TelemetrySnapshot))  # first reading comes at once, not after 30 s
    t0 = time.monotonic()
    telemetry.stop()
    assert time.monotonic() - t0 < 0.5


def test_failing_reader_warns_once_and_others_go_on() -> None:
    out = Collector()
    good = Counting("ok")
    telemetry = TelemetryPoller(out, {"cpu": Broken(), "gpu": good}, interval=0.01)
    telemetry.start()
    try:
        wait_for(lambda: good.calls >= 5)
    finally:
        telemetry.stop()
    warnings = out.of(Notice, level="warning")
    assert len(warnings) == 1 and "cpu telemetry failed" in warnings[0].message and "sensor went away" in warnings[0].message
    assert len(out.of(TelemetrySnapshot, kind="gpu")) >= 5


def test_a_raising_sink_does_not_end_sampling() -> None:
    calls = []

    def sink(event: Event) -> None:
        calls.append(event)
        raise RuntimeError("UI gone")

    telemetry = TelemetryPoller(sink, {"cpu": Counting(1)}, interval=0.01)
    telemetry.start()
    try:
        wait_for(lambda: len(calls) >= 3)
    finally:
        telemetry.stop()


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TelemetryPoller(lambda e: None, {}, interval=0)
