"""What a front end holds to watch and steer a run, wherever the run lives.

The monitor talks to a :class:`RunController`: the in-process one runs a Trainer on a background thread
(:class:`tuigpt.host.LocalRun`); a watcher follows a run in another process through its metrics.jsonl
and control socket (:class:`tuigpt.control.follower.WatchController`).
"""

from __future__ import annotations

from typing import Callable, Protocol

from tuigpt.run.commands import Command
from tuigpt.run.events import Event


class RunController(Protocol):
    def subscribe(self, subscriber: Callable[[Event], None]) -> Callable[[], None]:
        """Receive every event from now on (on the publishing thread); returns an unsubscribe function."""
        ...

    def send(self, command: Command) -> None:
        """Queue a command; the trainer applies it at the next iteration boundary. Never blocks."""
        ...

    def start(self) -> None:
        """Begin the run, or following it (non-blocking)."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run has ended; True if it has."""
        ...
