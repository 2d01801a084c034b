"""The Health pane (`h` swaps it with the loss chart): sparklines of the gradient norm before clipping, the
clip rate, the learning rate and the update ratio, and a bar per parameter group (embeddings, each block,
the head) of its gradient norm, with its weight norm and ‖Δw‖/‖w‖ at the newest logged iteration.

Laid out for whatever size it has when painted (:func:`render_health`), so it reads at 80×24 and 120×40: the
room the groups leave goes to the sparklines, each up to MAX_SPARK_ROWS rows tall with its scale (top and
bottom) beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tuigpt.run import fmt
from tuigpt.run.model import HealthPoint, HealthView
from tuigpt.ui.isolation import failure_text
from tuigpt.ui.sparkline import spark, spark_rows, spark_scale

LABEL = 11  # "grad norm  "
VALUE = 24  # the numbers after a sparkline
STYLES = {"grad": "bold cyan", "clip": "bold yellow", "lr": "bold green", "update": "bold magenta"}
MAX_SPARK_ROWS = 6  # a taller pane draws each sparkline up to this many rows tall (8 levels a row)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _bar(fraction: float, width: int) -> str:
    eighths = int(round(max(0.0, min(1.0, fraction)) * width * 8))
    full, part = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(width)


def render_health(view: HealthView | None, width: int, height: int) -> Text:
    """The pane's content for a ``width`` × ``height`` region."""
    text = Text(no_wrap=True, overflow="crop")
    if view is not None and view.error:
        text.append(f"health numbers incomplete: {view.error}"[:width] + "\n", style="bold yellow")
        height -= 1
    points = view.points if view is not None else []
    if not points:
        text.append("waiting for the first iteration with a gradient norm…", style="dim")
        return text
    spark_w = max(8, width - LABEL - VALUE)
    last = points[-1]
    clip_note = f" (clip {view.grad_clip:g})" if view and view.grad_clip else ""
    updates = [p for p in points if p.update_ratio is not None]
    # (label, values, how they are drawn, the newest value, how a value reads, style)
    rows: list[tuple[str, list[float | None], dict, str, Callable[[float], str], str]] = [
        ("grad norm", [p.grad_norm for p in points], {"log": True}, fmt.sig(last.grad_norm) + clip_note, fmt.sig,
         "grad"),
        ("clipped", [p.clip_rate for p in points], {"reduce": _mean, "lo": 0.0, "hi": 1.0},
         fmt.percent(last.clip_rate, 0) + " of last 100" if last.clip_rate is not None else "clipping off",
         lambda v: fmt.percent(v, 0), "clip"),
        ("lr", [p.lr for p in points], {"reduce": _mean}, f"{last.lr:.2e}", lambda v: f"{v:.2e}", "lr"),
    ]
    if updates and height >= 10:
        rows.append(("‖Δw‖/‖w‖", [p.update_ratio for p in updates], {"log": True, "reduce": _mean},
                     fmt.sig(updates[-1].update_ratio), fmt.sig, "update"))
    layers = view.layers if view is not None else None
    # the sparklines get the rows the groups leave: the groups one a row (every column), or side by side (their
    # gradient norms only) when that is what lets the sparklines be two rows tall or more
    one_column = 1 + len(layers) if layers else 0
    side_by_side = 1 + math.ceil(len(layers) / max(1, min(3, width // 36))) if layers else 0
    tall = max(1, min(MAX_SPARK_ROWS, (height - one_column) // len(rows)))
    if tall == 1:
        tall = max(1, min(MAX_SPARK_ROWS, (height - side_by_side) // len(rows)))
    for k, (label, values, how, value, reads, key) in enumerate(rows):
        lines = spark_rows(values, spark_w, tall, **how)
        scale = spark_scale(values, how.get("log", False), how.get("lo"), how.get("hi"))
        notes = [" " + value] + [""] * (tall - 1)
        if scale is not None and tall >= 2:  # what the sparkline's bottom and top stand for, beside them
            low, high = reads(scale[0]), reads(scale[1])
            if low == high:
                notes[-1] = f" all {low}"
            elif tall == 2:
                notes[-1] = f" {low}–{high}"
            else:
                notes[1], notes[-1] = f" max {high}", f" min {low}"
        for r, line in enumerate(lines):
            if k or r:
                text.append("\n")
            text.append((label if r == 0 else "").ljust(LABEL), style="bold")
            text.append(line, style=STYLES[key])
            text.append(notes[r], style="" if r == 0 else "dim")
    rows_drawn = len(rows) * tall
    left = height - rows_drawn - 1  # rows under the header
    if not layers or left < 1:
        return text
    text.append("\n")
    at = f"@{view.layers_iter:,}" if view is not None and view.layers_iter is not None else ""
    text.append(at.ljust(LABEL), style="dim")
    columns = 1 if len(layers) <= left else max(1, min(3, width // 36))
    if columns == 1:
        bar_w = max(6, width - LABEL - 30)
        text.append("gradient norm".ljust(bar_w + 9) + "weight  ‖Δw‖/‖w‖", style="dim")
    else:  # a short pane: groups side by side, gradient norms only
        bar_w = max(4, width // columns - LABEL - 10)  # the name, the bar, " 0.123", two spaces between
        text.append("gradient norm per group (a taller pane adds weight, ‖Δw‖/‖w‖)",
                    style="dim")
    grads = [g.get("grad") for g in layers]
    top = max((g for g in grads if g is not None and math.isfinite(g)), default=0.0)
    capacity = left * columns
    shown = layers if len(layers) <= capacity else layers[:capacity - 1]
    per_column = math.ceil(len(shown) / columns) if columns > 1 else len(shown)
    for row in range(per_column):
        text.append("\n")
        for col in range(columns):
            k = col * per_column + row
            if k >= len(shown):
                break
            group = shown[k]
            grad = group.get("grad")
            fraction = grad / top if grad is not None and top > 0 and math.isfinite(grad) else 0.0
            text.append(str(group.get("name", "?"))[:LABEL - 1].ljust(LABEL))
            text.append(_bar(fraction, bar_w), style=STYLES["grad"])
            text.append(f" {fmt.sig(grad):>7}")
            if columns == 1:
                text.append(f" {fmt.sig(group.get('weight')):>7} {fmt.sig(group.get('update')):>9}")
            else:
                text.append("  ")
    if len(shown) < len(layers):
        text.append(f"\n… {len(layers) - len(shown)} more groups (a taller terminal shows them)", style="dim")
    return text


class HealthPane(Widget):
    """Draws the HealthView it is given (a snapshot's); never reads the run model itself."""

    DEFAULT_CSS = "HealthPane { height: 1fr; text-wrap: nowrap; text-overflow: clip; }"

    view: reactive[HealthView | None] = reactive(None, always_update=True)
    failure: reactive[Text | None] = reactive(None)  # shown instead of the view once drawing it failed

    def on_mount(self) -> None:
        self.border_title = "health · h: back to the loss chart"

    def watch_view(self) -> None:
        self.failure = None
        self.refresh()

    def show_failure(self, text: Text) -> None:
        self.failure = text
        self.refresh()

    def render(self) -> Text:
        if self.failure is not None:
            return self.failure
        size = self.content_size
        try:
            return render_health(self.view, size.width, size.height)
        except Exception as exc:  # a pane that cannot draw says so in place; the monitor goes on
            return failure_text("health", exc)


__all__ = ["HealthPane", "HealthPoint", "render_health", "spark"]
