"""What a front end holds to watch and steer a run, wherever the run lives.

The Textual app talks to a :class:`RunController`: the in-process one wraps a
Trainer on a background thread (tuigpt.runner.BackgroundRun); a detached
watcher can implement the same protocol over a socket.
"""

from __future__ import annotations

from typing import Callable, Protocol

from tuigpt.events import Command, Event


class RunController(Protocol):
    def subscribe(self, subscriber: Callable[[Event], None]) -> Callable[[], None]:
        """Receive every event from now on (on the publishing thread); returns an unsubscribe function."""
        ...

    def send(self, command: Command) -> None:
        """Queue a command; the trainer applies it at the next iteration boundary. Never blocks."""
        ...

    def start(self) -> None:
        """Begin the run (non-blocking)."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run has ended; True if it has."""
        ...
