"""Textual messages that carry run events from the trainer thread into the app.

The subscriber callback wraps each event in one of these and calls
``post_message`` (thread-safe). High-rate events use ``can_replace`` so an
unprocessed older one is dropped when a newer one is queued right behind it;
the loss history does not depend on these (it is appended in the callback).
"""

from __future__ import annotations

from textual.message import Message

from tuigpt.events import ClusterStats, Event, IterationStats, TelemetrySnapshot


class RunEvent(Message):
    """A run event to show (every one is delivered)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class IterationUpdate(RunEvent):
    """The newest IterationStats; a newer one supersedes it."""

    event: IterationStats

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, IterationUpdate)


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


def wrap(event: Event) -> RunEvent:
    """The message for an event."""
    if isinstance(event, IterationStats):
        return IterationUpdate(event)
    if isinstance(event, TelemetrySnapshot):
        return TelemetryUpdate(event)
    if isinstance(event, ClusterStats):
        return ClusterUpdate(event)
    return RunEvent(event)
