"""Textual messages that carry run events from the publishing thread into the app.

The subscriber folds each event into the run model, then wraps it, with the lines the model worded it in, in
one of these and calls ``post_message`` (thread-safe). Telemetry and cluster readings use ``can_replace``, so an
unprocessed older one is dropped when a newer one of the same kind is queued behind it. Iterations never become
messages: the redraw timer reads them from the model's snapshot.
"""

from __future__ import annotations

from textual.message import Message

from tuigpt.run.events import ClusterStats, Event, TelemetrySnapshot
from tuigpt.run.wording import Line


class RunEvent(Message):
    """A run event to show, and its lines for the events log (every one is delivered)."""

    def __init__(self, event: Event, lines: list[Line] | None = None) -> None:
        super().__init__()
        self.event = event
        self.lines = lines or []


class TelemetryUpdate(RunEvent):
    """The newest TelemetrySnapshot of one kind; a newer one of the same kind supersedes it."""

    event: TelemetrySnapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TelemetryUpdate) and message.event.kind == self.event.kind


class ClusterUpdate(RunEvent):
    """The newest ClusterStats; a newer one supersedes it."""

    event: ClusterStats

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ClusterUpdate)


class RunEnded(Message):
    """controller.wait() returned: the run's thread is over."""


def wrap(event: Event, lines: list[Line] | None = None) -> RunEvent:
    """The message for an event."""
    if isinstance(event, TelemetrySnapshot):
        return TelemetryUpdate(event)
    if isinstance(event, ClusterStats):
        return ClusterUpdate(event)
    return RunEvent(event, lines)
