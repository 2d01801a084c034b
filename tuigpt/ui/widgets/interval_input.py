"""A small dialog to type an exact eval interval (a positive integer)."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from tuigpt.run.commands import MAX_EVAL_INTERVAL


def parse_interval(value: str) -> int | str:
    """The interval, or an error message for the user."""
    value = value.strip().replace(",", "").replace("_", "")
    if not value:
        return "type a number of iterations"
    try:
        n = int(value)
    except ValueError:
        return f"not a whole number: {value!r}"
    if n < 1:
        return "the interval must be at least 1"
    if n > MAX_EVAL_INTERVAL:
        return f"the interval must be at most {MAX_EVAL_INTERVAL:,}"
    return n


class InputDialog(ModalScreen[Any]):
    """A one-field dialog: Enter dismisses with ``parse(value)`` unless that is an error message (shown in
    place), Esc with None. Subclasses set the texts, the ids' prefix and ``parse``."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    PREFIX = "interval"
    PROMPT = ""
    PLACEHOLDER = ""
    HINT = "Enter sets it · Esc cancels"
    AUTO_FOCUS = "#interval-input"  # the app focuses nothing by itself; this dialog's field must have the keys
    # (a subclass with another PREFIX sets its own)

    def __init__(self, current: str) -> None:
        super().__init__()
        self._current = current

    def parse(self, value: str) -> Any:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        with Vertical(id=f"{self.PREFIX}-dialog", classes="dialog"):
            yield Static(self.PROMPT, classes="dialog-title")
            yield Input(value=self._current, placeholder=self.PLACEHOLDER, id=f"{self.PREFIX}-input")
            yield Static("", id=f"{self.PREFIX}-error")
            yield Static(self.HINT, classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        result = self.parse(event.value)
        if isinstance(result, str):
            self.query_one(f"#{self.PREFIX}-error", Static).update(result)
            self.query_one(f"#{self.PREFIX}-error").add_class("-error")
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)


class IntervalDialog(InputDialog):
    """Dismisses with the new interval, or None when cancelled."""

    PROMPT = "Evaluate every … iterations"
    PLACEHOLDER = "e.g. 250"

    def __init__(self, current: int | None) -> None:
        super().__init__("" if current is None else str(current))

    def parse(self, value: str) -> int | str:
        return parse_interval(value)
