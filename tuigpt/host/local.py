"""LocalRun: a Trainer on its own thread, behind the RunController protocol front ends use."""

from __future__ import annotations

import threading
from typing import Callable, Sequence

from tuigpt.engine.trainer import Outcome, Trainer
from tuigpt.run.commands import Command
from tuigpt.run.events import Event, HistoryLoaded, Notice, RunFailed, RunFinished


class LocalRun:
    """Runs ``trainer.run()`` on a daemon thread; keeps its outcome, the exception if it raised, and its last
    event. ``history`` (earlier sessions of a resumed run) is published on start, once every front end has
    subscribed, with its sessions' starts (``sessions``: HistoryLoaded.sessions)."""

    def __init__(self, trainer: Trainer, history: Sequence[Event] = (),
                 sessions: tuple[tuple[float, float | None], ...] = ()) -> None:
        self.trainer = trainer
        self.history = list(history)
        self.sessions = sessions
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.ending: RunFinished | RunFailed | None = None
        self._thread = threading.Thread(target=self._target, name="tuigpt-trainer", daemon=True)
        trainer.bus.subscribe(self._watch_ending)

    def _watch_ending(self, event: Event) -> None:
        if isinstance(event, (RunFinished, RunFailed)):
            self.ending = event

    def _target(self) -> None:
        try:
            self.outcome = self.trainer.run()
        except BaseException as exc:  # published as RunFailed by the trainer; the host reports it
            self.error = exc

    def subscribe(self, subscriber: Callable[[Event], None]) -> Callable[[], None]:
        return self.trainer.bus.subscribe(subscriber)

    def send(self, command: Command) -> None:
        refused = self.trainer.send(command)
        if refused:  # a key pressed again before the trainer took the first: said, not queued twice
            self.trainer.bus.publish(Notice(level="warning", message=f"not queued: {refused}"))

    def start(self) -> None:
        if self._thread.ident is not None:
            return
        if self.history:
            self.trainer.bus.publish(HistoryLoaded(events=self.history, sessions=self.sessions))
            self.history = []  # the front ends have it; don't hold it for the whole run
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread.ident is None:
            return False  # never started
        self._thread.join(timeout)
        return not self._thread.is_alive()
