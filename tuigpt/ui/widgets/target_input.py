"""A small dialog to type the loss to project towards (`T`): a number above 0, or empty for none."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

CLEAR = -1.0  # dismissed with this: no target (back to the config's target_loss, if any)


def parse_target(value: str) -> float | str:
    """The target loss, CLEAR for an empty field, or an error message for the user."""
    value = value.strip()
    if not value:
        return CLEAR
    try:
        target = float(value)
    except ValueError:
        return f"not a number: {value!r}"
    if not math.isfinite(target) or target <= 0:
        return "a loss is a number above 0"
    return target


class TargetDialog(ModalScreen[float | None]):
    """Dismisses with the target, CLEAR, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: float | None) -> None:
        super().__init__()
        self._current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="target-dialog", classes="dialog"):
            yield Static("Project when the loss reaches …", classes="dialog-title")
            yield Input(value="" if self._current is None else f"{self._current:g}", placeholder="e.g. 1.5",
                        id="target-input")
            yield Static("", id="target-error")
            yield Static("Enter sets it · empty: no target · Esc cancels", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        result = parse_target(event.value)
        if isinstance(result, str):
            self.query_one("#target-error", Static).update(result)
            self.query_one("#target-error").add_class("-error")
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)
