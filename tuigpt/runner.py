"""BackgroundRun: a Trainer on its own thread, behind the RunController protocol front ends use."""

from __future__ import annotations

import threading
from typing import Callable

from tuigpt.events import Command, Event
from tuigpt.trainer import Outcome, Trainer


class BackgroundRun:
    """Runs ``trainer.run()`` on a daemon thread; the outcome or the exception is kept for the caller."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._target, name="tuigpt-trainer", daemon=True)

    def _target(self) -> None:
        try:
            self.outcome = self.trainer.run()
        except BaseException as exc:  # published as RunFailed by the trainer; the CLI reports it
            self.error = exc

    def subscribe(self, subscriber: Callable[[Event], None]) -> Callable[[], None]:
        return self.trainer.bus.subscribe(subscriber)

    def send(self, command: Command) -> None:
        self.trainer.send(command)

    def start(self) -> None:
        if not self._thread.is_alive() and self.outcome is None and self.error is None:
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        if not self._thread.is_alive() and self._thread.ident is None:
            return False  # never started
        self._thread.join(timeout)
        return not self._thread.is_alive()
