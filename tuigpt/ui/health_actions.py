"""The monitor's health views: the Health pane (`h`, in the loss chart's place), a target loss typed with `T`
(the status line's projection and the dashed line on the chart), and the sample timeline (`[` / `]`).

A mixin of :class:`tuigpt.ui.app.TuiGptApp`, like :mod:`tuigpt.ui.actions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.content import Content

from tuigpt.ui import braille
from tuigpt.ui.guard import guarded
from tuigpt.ui.health_history import HealthView
from tuigpt.ui.history import HistoryView
from tuigpt.ui.widgets.projection import projection_layers
from tuigpt.ui.widgets.target_input import CLEAR, TargetDialog

if TYPE_CHECKING:
    from tuigpt.ui.app import TuiGptApp

    _Base = TuiGptApp
else:
    _Base = object


class MonitorHealth(_Base):
    _show_health = False
    _timeline_shown = False
    _health_drawn = -1
    _projection_legend: Text | None = None
    _projection_title = ""

    @guarded("health")
    def action_toggle_health(self) -> None:
        self._show_health = not self._show_health
        self._body.set_class(self._show_health, "-health")
        self._health_drawn = -1
        self.redraw()

    @guarded("target")
    def action_set_target(self) -> None:
        def chosen(target: float | None) -> None:
            if target is None:
                return
            self.health.set_target(None if target == CLEAR else target)
            what = "no target" if self.health.target is None else f"target loss → {self.health.target:g}"
            self._events_log.add(self.clock(), f"you: {what}", "user")
            self._drawn_version = -1  # the chart draws the projection
            self.redraw()

        self.push_screen(TargetDialog(self.health.target), chosen)

    @guarded("timeline")
    def action_older_sample(self) -> None:
        self._step_timeline(-1)

    @guarded("timeline")
    def action_newer_sample(self) -> None:
        self._step_timeline(+1)

    def _step_timeline(self, delta: int) -> None:
        self._timeline.update_samples(self.health.snapshot().timeline)
        if not self._timeline.samples:
            self.notify("No timeline samples: set sample_every_eval: true to get one at every eval.",
                        severity="warning")
            return
        shown = self._timeline.step(delta) if self._timeline_shown else True
        self._timeline_shown = shown
        self._body.set_class(shown, "-timeline")
        if shown and self.compact:
            self._select_pane("samples")

    @guarded("projection")
    def _projection_layers(self, view: HistoryView) -> list[braille.Layer]:
        """The target projection's layers for the loss chart about to be drawn (none without a target)."""
        health = self.health.snapshot(self.clock())
        layers, self._projection_legend = projection_layers(
            health.projection, view, self._x_axis, self.health.tokens_per_iter(), self.health.ms_per_iter(),
            self._recent)
        self._projection_title = health.target_text
        return layers

    @guarded("projection")
    def _label_projection(self) -> None:
        """After the chart is drawn: the projection's words in its title, its swatch in the legend."""
        if self._projection_legend is None or self._loss.data is None:
            return
        self._loss.border_title = f"{self._loss.border_title} · {self._projection_title}"
        legend = str(self._loss.border_subtitle or "")  # Textual keeps it as its own markup
        self._loss.border_subtitle = f"{legend} {Content.from_rich_text(self._projection_legend).markup}"

    @guarded("health")
    def _draw_health(self) -> HealthView:
        """On every redraw: the Health pane when shown and changed, and the timeline's samples."""
        health = self.health.snapshot(self.clock())
        if self._show_health and health.version != self._health_drawn:
            self._health_drawn = health.version
            self._health_pane.show(health)
        self._timeline.update_samples(health.timeline)
        return health
