"""A small dialog to type an exact eval interval (a positive integer)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

MAX_INTERVAL = 1_000_000_000


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
    if n > MAX_INTERVAL:
        return f"the interval must be at most {MAX_INTERVAL:,}"
    return n


class IntervalDialog(ModalScreen[int | None]):
    """Dismisses with the new interval, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    AUTO_FOCUS = "#interval-input"  # the app focuses nothing by itself; this dialog's field must have the keys

    def __init__(self, current: int | None) -> None:
        super().__init__()
        self._current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="interval-dialog", classes="dialog"):
            yield Static("Evaluate every … iterations", classes="dialog-title")
            yield Input(value="" if self._current is None else str(self._current), placeholder="e.g. 250", id="interval-input")
            yield Static("", id="interval-error")
            yield Static("Enter sets it · Esc cancels", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        result = parse_interval(event.value)
        if isinstance(result, str):
            self.query_one("#interval-error", Static).update(result)
            self.query_one("#interval-error").add_class("-error")
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)
