"""The Health pane (`h` swaps it with the loss chart): sparklines of the gradient norm before clipping, the
clip rate, the learning rate and the update ratio, and a bar per parameter group (embeddings, each block,
the head) of its gradient norm, with its weight norm and ‖Δw‖/‖w‖ at the newest logged iteration.

Laid out for whatever size it has when painted (:func:`render_health`), so it reads at 80×24 and 120×40.
"""

from __future__ import annotations

import math
from typing import Callable

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tuigpt.run import fmt
from tuigpt.run.model import HealthPoint, HealthView
from tuigpt.ui.isolation import failure_text

TICKS = "▁▂▃▄▅▆▇█"
LABEL = 11  # "grad norm  "
VALUE = 24  # the numbers after a sparkline
STYLES = {"grad": "bold cyan", "clip": "bold yellow", "lr": "bold green", "update": "bold magenta"}


def spark(values: list[float | None], width: int, log: bool = False, reduce: Callable[[list[float]], float] = max,
          lo: float | None = None, hi: float | None = None) -> str:
    """``values`` (oldest first) bucketed into ``width`` columns of eighth-blocks, scaled to their range (log10 when
    ``log``); a column with no known value is a space."""
    if width <= 0:
        return ""
    known = [None if v is None or not math.isfinite(v) or (log and v <= 0) else (math.log10(v) if log else v)
             for v in values]
    n = len(known)
    columns: list[float | None] = []
    for c in range(min(width, n)):
        bucket = [v for v in known[c * n // min(width, n):(c + 1) * n // min(width, n)] if v is not None]
        columns.append(reduce(bucket) if bucket else None)
    present = [v for v in columns if v is not None]
    if not present:
        return " " * width
    low = min(present) if lo is None else (math.log10(lo) if log and lo > 0 else lo)
    high = max(present) if hi is None else (math.log10(hi) if log and hi > 0 else hi)
    span = high - low
    out = "".join(" " if v is None else TICKS[min(7, max(0, int((v - low) / span * 7.999)))] if span > 0 else TICKS[3]
                  for v in columns)
    return out.rjust(width)


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
    rows: list[tuple[str, str, str, str]] = [
        ("grad norm", spark([p.grad_norm for p in points], spark_w, log=True), fmt.sig(last.grad_norm) + clip_note,
         "grad"),
        ("clipped", spark([p.clip_rate for p in points], spark_w, reduce=_mean, lo=0.0, hi=1.0),
         fmt.percent(last.clip_rate, 0) + " of last 100" if last.clip_rate is not None else "clipping off",
         "clip"),
        ("lr", spark([p.lr for p in points], spark_w, reduce=_mean), f"{last.lr:.2e}", "lr"),
    ]
    if updates and height >= 10:
        rows.append(("‖Δw‖/‖w‖", spark([p.update_ratio for p in updates], spark_w, log=True, reduce=_mean),
                     fmt.sig(updates[-1].update_ratio), "update"))
    for k, (label, line, value, key) in enumerate(rows):
        if k:
            text.append("\n")
        text.append(label.ljust(LABEL), style="bold")
        text.append(line, style=STYLES[key])
        text.append(" " + value)
    layers = view.layers if view is not None else None
    left = height - len(rows) - 1  # rows under the header
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
        bar_w = max(4, width // columns - LABEL - 9)
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
