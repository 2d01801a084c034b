"""Helpers every test shares: waiting for a state (never for a fixed time), recording events, reading the app.

``fake_run`` holds a scripted RunController for UI tests; ``live_run`` starts a real headless run in a
subprocess and speaks to its control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterator


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition",
             poll: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (which is returned); AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def wait_for_line(stream: IO[str], needle: str, timeout: float = 60.0, seen: list[str] | None = None) -> str:
    """Read lines from a process's text stream until one contains ``needle``; every line read goes to ``seen``."""
    found: list[str] = []
    lines = seen if seen is not None else []

    def read() -> None:
        for line in stream:
            lines.append(line)
            if needle in line:
                found.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        raise AssertionError(f"{needle!r} never appeared in {timeout:g} s; the output was:\n{''.join(lines)[-3000:]}")
    return found[0]


async def until(pilot: Any, condition: Callable[[], Any], timeout: float = 30.0, what: str = "the app") -> None:
    """In a Pilot test: let the app run until ``condition()`` holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, f"timed out after {timeout:g} s waiting for {what}"
        await pilot.pause(0.05)


class Recorder:
    """An event-bus subscriber that keeps every event and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list = []
        self.cond = threading.Condition()

    def __call__(self, event: Any) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def of(self, cls: type, pred: Callable[[Any], bool] = lambda e: True) -> list:
        with self.cond:
            return [e for e in self.events if isinstance(e, cls) and pred(e)]

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 60.0) -> Any:
        """The first event (old or new) matching ``predicate``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if predicate(e):
                        return e
                left = deadline - time.monotonic()
                assert left > 0, "timed out waiting for an event"
                self.cond.wait(left)

    def wait(self, cls: type, pred: Callable[[Any], bool] = lambda e: True, timeout: float = 60.0) -> Any:
        """The newest event of ``cls`` matching ``pred``, once there is one."""
        return wait_for(lambda: self.of(cls, pred), timeout, cls.__name__)[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    """Kill a test's subprocess if it is still running (a failed test must not leave one behind)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def start_local(trainer: Any, *commands: Any) -> tuple[Any, Recorder]:
    """Queue ``commands`` on a Trainer and run it on its own thread: (the LocalRun, a Recorder of its events)."""
    from tuigpt.host.local import LocalRun

    rec = Recorder()
    trainer.bus.subscribe(rec)
    for command in commands:
        trainer.send(command)
    run = LocalRun(trainer)
    run.start()
    return run, rec


class PoisonFrom:
    """Wraps a model for Stepper.model: training calls number ``at`` .. ``at + times - 1`` return a NaN loss."""

    def __init__(self, model: Any, at: int, times: int = 1) -> None:
        self.model, self.at, self.times, self.calls = model, at, times, 0

    def __call__(self, x: Any, y: Any) -> Any:
        logits, loss = self.model(x, y)
        if self.model.training:
            self.calls += 1
            if self.at <= self.calls < self.at + self.times:
                loss = loss * float("nan")
        return logits, loss


@contextlib.contextmanager
def mounted(target: Path, *args: str) -> Iterator[Path]:
    """A real mount for the test (a read-only or small tmpfs), unmounted after; skips, saying why, where mounts are
    not allowed (root in a namespace that allows them)."""
    import pytest

    if not target.exists():
        target.mkdir(parents=True)
    done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount here (needs root where mounts are allowed): {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)
