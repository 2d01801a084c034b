"""A small dialog to type the loss to project towards (`T`): a number above 0, or empty for none."""

from __future__ import annotations

import math

from tuigpt.ui.widgets.interval_input import InputDialog

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


class TargetDialog(InputDialog):
    """Dismisses with the target, CLEAR, or None when cancelled."""

    PREFIX = "target"
    AUTO_FOCUS = "#target-input"
    PROMPT = "Project when the loss reaches …"
    PLACEHOLDER = "e.g. 1.5"
    HINT = "Enter sets it · empty: no target · Esc cancels"

    def __init__(self, current: float | None) -> None:
        super().__init__("" if current is None else f"{current:g}")

    def parse(self, value: str) -> float | str:
        return parse_target(value)
