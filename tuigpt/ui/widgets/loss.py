"""The loss chart: raw train loss (filled braille area), its debiased EMA (line), evals, the best val, a compared run.

Drawn from the data on every render (:mod:`tuigpt.ui.braille`): ``draw`` keeps a :class:`LossData` (plain
copies in data space) and the chart is laid out for whatever size it has when painted, so resizing, log y
and zoom redraw the same picture from the same numbers every time. A log axis plots log10 of the values
with ticks labelled in loss units; a value that cannot go on it (≤ 0) is left out and counted in the title.

More lines (a dashed target-loss projection, say) go in through ``draw(..., extra=[braille.Layer("line", xs,
ys, style, dashed=True)])``, in data space: they are scaled, log-transformed and clipped with the rest.

Every series' look is one row of SERIES: the legend's swatch and the drawing use that same style, so the
legend cannot disagree with the lines. Named ANSI colours only: they survive 16-colour terminals and tmux
without COLORTERM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from tuigpt.run.fmt import count, duration
from tuigpt.run.model import LossView
from tuigpt.run.series import eval_x, evals_in_bits_per_byte, points_in_bits_per_byte, units_for, x_values
from tuigpt.ui import braille
from tuigpt.ui.compare import CompareCurve
from tuigpt.ui.isolation import guarded

# series: (legend glyph, style, legend label)
SERIES = {
    "train": ("⣿", "cyan", "train"),
    "ema": ("⠤", "bold bright_white", "EMA"),
    "eval_train": ("×", "bold bright_yellow", "eval train"),
    "val": ("●", "bold bright_magenta", "val"),
    "best": ("★", "bold bright_green", "best"),
    "compare": ("⠤", "bold bright_red", ""),  # labelled with the compared run's name
    "cooldown": ("▲", "bold bright_cyan", "cooldown"),  # on the x axis: where a WSD schedule's cooldown starts
}
AXIS_TITLES = {"iter": "iteration", "tokens": "tokens seen", "time": "wall-clock time"}
WAITING = "waiting for the first iteration…"


def swatch(name: str, label: str | None = None) -> Text:
    """One legend entry: the series' glyph in its own style, then its label."""
    glyph, style, default = SERIES[name]
    return Text.assemble((glyph, style), f" {label if label is not None else default}")


@dataclass
class LossData:
    """What the chart shows, in data space (x: iterations, tokens or seconds; y: loss)."""

    raw: tuple[list[float], list[float]] = ([], [])
    ema: tuple[list[float], list[float]] = ([], [])
    evals_train: tuple[list[float], list[float]] = ([], [])
    evals_val: tuple[list[float], list[float]] = ([], [])
    best: tuple[list[float], list[float]] = ([], [])
    compare: tuple[list[float], list[float]] = ([], [])
    compare_evals: tuple[list[float], list[float]] = ([], [])
    extra: list[braille.Layer] = field(default_factory=list)  # more layers in data space (e.g. a projection)
    x_marks: list[float] = field(default_factory=list)  # where the cooldown starts, on the x axis
    x_axis: str = "iter"
    log_y: bool = False

    def layers(self) -> list[tuple[str, tuple[list[float], list[float]]]]:
        return [("train", self.raw), ("ema", self.ema), ("compare", self.compare), ("eval_train", self.evals_train),
                ("val", self.evals_val), ("compare_marks", self.compare_evals), ("best", self.best)]


def _x_label(value: float, axis: str) -> str:
    if axis == "time":
        return duration(value)
    if axis == "tokens":
        return count(value)
    return f"{value:,.0f}"


def _log_labels(values: list[float]) -> list[str]:
    """Log-axis tick labels: within one decade with one number of decimals for all (1.6 1.8 2.0 2.2, not
    1.6 1.8 2 2.2); over several decades each its own (0.01 0.1 1 10)."""
    plain = [f"{v:.3g}" for v in values]
    if not values or max(values) >= 10 * min(values) or any("e" in p for p in plain):
        return plain
    decimals = max(len(p.partition(".")[2]) for p in plain)
    return [f"{v:,.{decimals}f}" for v in values]


def build_plot(data: LossData, width: int, height: int) -> braille.Plot:
    """The braille plot for a size (the ticks depend on it)."""
    ylog = (lambda v: math.log10(v)) if data.log_y else (lambda v: v)
    layers: list[braille.Layer] = []
    named = [(name, xs, ys) for name, (xs, ys) in data.layers()]
    named += [("extra", layer.xs, layer.ys) for layer in data.extra]
    all_x: list[float] = []
    all_y: list[float] = []
    extra = iter(data.extra)
    for name, xs, ys in named:
        if data.log_y:
            kept = [(x, y) for x, y in zip(xs, ys) if y > 0]
            xs, ys = [x for x, _ in kept], [y for _, y in kept]
        ty = [ylog(y) for y in ys]
        all_x += xs
        all_y += ty
        if name == "extra":
            src = next(extra)
            layers.append(braille.Layer(src.kind, xs, ty, src.style, src.glyph, src.dashed))
        elif name == "compare_marks":
            layers.append(braille.Layer("marks", xs, ty, SERIES["compare"][1], "+"))
        else:
            kind = {"train": "area", "ema": "line", "compare": "line"}.get(name, "marks")
            glyph, style, _ = SERIES[name]
            layers.append(braille.Layer(kind, xs, ty, style, glyph))
    x_lo, x_hi = (min(all_x), max(all_x)) if all_x else (0.0, 1.0)
    y_lo, y_hi = (min(all_y), max(all_y)) if all_y else (0.0, 1.0)
    if x_hi <= x_lo:
        x_hi = x_lo + 1.0
    pad = (y_hi - y_lo) * 0.04 or 0.05
    y_lo, y_hi = y_lo - pad, y_hi + pad
    n_y = max(2, (height - 1) // 3)
    if data.log_y:
        values = braille.log_ticks(10 ** y_lo, 10 ** y_hi, n_y)
        y_ticks = [(math.log10(v), label) for v, label in zip(values, _log_labels(values))]
    else:
        values = braille.linear_ticks(y_lo, y_hi, n_y)
        step = values[1] - values[0] if len(values) > 1 else 1.0
        y_ticks = [(v, braille.number_label(v, step)) for v in values]
    label_w = max((len(t) for _, t in y_ticks), default=1)
    n_x = max(2, (width - label_w - 1) // 12)
    if data.x_axis == "iter":
        xs_t = [t for t in braille.linear_ticks(x_lo, x_hi, n_x) if t == int(t)]
    else:
        xs_t = braille.linear_ticks(x_lo, x_hi, n_x)
    x_ticks = [(t, _x_label(t, data.x_axis)) for t in xs_t]
    return braille.Plot((x_lo, x_hi), (y_lo, y_hi), layers, x_ticks, y_ticks,
                        x_marks=[(x, SERIES["cooldown"][0]) for x in data.x_marks])


class LossChart(Widget):
    """Redrawn from a snapshot's LossView; never reads the run model itself."""

    DEFAULT_CSS = "LossChart { height: 1fr; }"

    drawn_range: tuple[int, int] | None = None
    """First and last iteration on the chart (None when empty)."""
    drawn_compare: int = 0
    """Points of the compared run on the chart (0: none)."""
    units: str = "loss"
    """What the y axis shows: "loss" (per token) or "bpb" (bits per byte, when a compared run's tokenizer differs)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.data: LossData | None = None
        self.waiting = WAITING
        self._rows: list[Strip] = []
        self._rows_key: tuple[object, ...] | None = None
        self._version = 0
        self._failure: Text | None = None  # shown instead of the chart after draw() failed
        self._legend: list[Text] = []  # one entry a series: in the bottom border when it fits, else in the chart
        self._legend_rows: list[Text] = []  # the legend's lines inside the chart, under the x labels (none: it fits)

    def on_mount(self) -> None:
        self.draw(None, log_y=False, recent=False)

    def set_waiting(self, text: str) -> None:
        """What the empty chart says (e.g. the first eval's progress)."""
        if text != self.waiting:
            self.waiting = text
            if self.data is None:
                self._changed()

    @guarded("loss")
    def draw(self, view: LossView | None, *, log_y: bool, recent: bool, x_axis: str = "iter",
             compare: CompareCurve | None = None, extra: list[braille.Layer] | None = None,
             cooldown_from: int | None = None, tokenizer: str | None = None,
             bytes_per_token: float | None = None, legend_extra: Text | None = None) -> None:
        """Keep what to draw (copies); the picture is made at paint time, for the size the chart has then.
        ``cooldown_from``: the iteration a WSD schedule's cooldown starts after, marked on the x axis.
        ``tokenizer``, ``bytes_per_token``: this run's; a compared run of another tokenizer puts both in bits per
        byte (losses per token of different tokenizers do not compare). ``legend_extra``: one more legend entry
        (the extra layers' swatch)."""
        self._failure = None
        scope = "recent" if recent else "whole run"
        x_note = "" if x_axis == "iter" else f" · x: {AXIS_TITLES[x_axis]}"
        self.units, why = units_for(tokenizer, bytes_per_token, compare.tokenizer if compare else None,
                                    compare.bytes_per_token if compare else None)
        unit_note = f"bits per byte ({why})" if self.units == "bpb" else f"loss{f' ({why})' if why else ''}"
        self.border_title = f"{unit_note} · {scope} · {'log' if log_y else 'linear'} y{x_note}"
        self.drawn_compare = 0
        if view is not None and self.units == "bpb":
            view = LossView(view.version, points_in_bits_per_byte(view.recent, bytes_per_token),
                            points_in_bits_per_byte(view.whole, bytes_per_token),
                            evals_in_bits_per_byte(view.evals, bytes_per_token),
                            evals_in_bits_per_byte([view.best_eval], bytes_per_token)[0] if view.best_eval else None)
            extra = [braille.Layer(layer.kind, layer.xs, [y / (math.log(2) * bytes_per_token) for y in layer.ys],
                                   layer.style, layer.glyph, layer.dashed) for layer in extra or []]
        if compare is not None and self.units == "bpb":
            compare = CompareCurve(compare.name, points_in_bits_per_byte(compare.points, compare.bytes_per_token),
                                   evals_in_bits_per_byte(compare.evals, compare.bytes_per_token), compare.tokenizer,
                                   compare.bytes_per_token)
        points = [] if view is None else (view.recent if recent else view.whole)
        if view is None or not points:
            self.drawn_range = None
            self._legend = []
            self.data = None
            self._place_legend()
            self._changed()
            return
        iters = [p[0] for p in points]
        self.drawn_range = (iters[0], iters[-1])
        t0 = view.whole[0][4] if view.whole else None
        xs_all = x_values(points, x_axis, t0)
        if not any(x is not None for x in xs_all):  # an old metrics file without tokens/time: iterations
            x_axis, xs_all = "iter", x_values(points, "iter")
        data = LossData(x_axis=x_axis, log_y=log_y, extra=list(extra or []))
        data.raw = braille.finite_pairs(xs_all, [p[1] for p in points])
        data.ema = braille.finite_pairs(xs_all, [p[2] for p in points])
        if log_y:  # a loss of 0 or below has no place on a log axis: say how many are left out
            hidden = sum(1 for y in data.raw[1] if y <= 0)
            if hidden:
                self.border_title = f"{self.border_title} · {hidden:,} values ≤ 0 not shown"
        # the untrained eval at iteration 0 comes before the first iteration: the whole-run view starts there
        lo = iters[0] if recent else min([iters[0]] + [e[0] for e in view.evals[:1]])
        evals = [e for e in view.evals if e[0] >= lo]
        ex = eval_x(evals, view.whole, x_axis, t0)
        data.evals_train = braille.finite_pairs(ex, [e[1] for e in evals])
        data.evals_val = braille.finite_pairs(ex, [e[2] for e in evals])
        legend = [swatch("train"), swatch("ema"), swatch("eval_train"), swatch("val")]
        best = view.best_eval
        if best is not None:
            if best[0] >= lo:
                data.best = braille.finite_pairs(eval_x([best], view.whole, x_axis, t0), [best[2]])
            value = f"{best[2]:.3f} bpb" if self.units == "bpb" else f"{best[2]:.4f}"
            legend.append(swatch("best", f"best val {value} @{best[0]:,}"))
        if cooldown_from is not None:
            legend.append(swatch("cooldown", f"cooldown @{cooldown_from:,}"))
            # placed as an eval at that iteration would be: on tokens or time its x is known once it was trained
            if x_axis == "iter" or cooldown_from <= iters[-1]:
                at = eval_x([(cooldown_from, math.nan, math.nan, None, None)], view.whole, x_axis, t0)
                data.x_marks = [x for x in at if x is not None]
        if compare is not None:
            x_lo, x_hi = (data.raw[0][0], data.raw[0][-1]) if recent and data.raw[0] else (None, None)
            self._add_compare(data, compare, x_axis, x_lo, x_hi)
            if self.drawn_compare:
                legend.append(swatch("compare", f"{compare.name} (+ val)"))
        if legend_extra is not None:
            legend.append(legend_extra)
        self._legend = legend
        self.data = data
        self._place_legend()
        self._changed()

    def _add_compare(self, data: LossData, compare: CompareCurve, x_axis: str, lo: float | None,
                     hi: float | None) -> None:
        """The other run's EMA (line) and val losses (+), clipped to [lo, hi] when zoomed."""
        def inside(x: float | None) -> bool:
            return x is not None and (lo is None or x >= lo) and (hi is None or x <= hi)

        xs_all = x_values(compare.points, x_axis, compare.t0)
        xs, ys = braille.finite_pairs([x if inside(x) else None for x in xs_all], [p[2] for p in compare.points])
        if not xs:
            return
        data.compare = (xs, ys)
        ex = eval_x(compare.evals, compare.points, x_axis, compare.t0)
        data.compare_evals = braille.finite_pairs([x if inside(x) else None for x in ex],
                                                  [e[2] for e in compare.evals])
        self.drawn_compare = len(xs) + len(data.compare_evals[0])

    @property
    def legend(self) -> Text:
        """The whole legend, every entry (wherever it is drawn)."""
        return Text(" ").join(self._legend)

    @property
    def legend_lines(self) -> int:
        """Lines the legend takes at the chart's foot (0: it is in the bottom border)."""
        return len(self._legend_rows)

    def on_resize(self) -> None:
        self._place_legend()

    def _place_legend(self) -> None:
        """The legend in the bottom border when it fits there; otherwise (a long best-val, cooldown, projection or
        compared run's name on a narrow chart) on its own lines at the chart's foot, entries never cut."""
        width = self.size.width
        legend = self.legend
        if not self._legend or width <= 0 or legend.cell_len <= width - 4:  # the border's corners and margins
            rows: list[Text] = []
            self.border_subtitle = legend
        else:
            rows = [Text()]
            for entry in self._legend:
                if rows[-1].cell_len and rows[-1].cell_len + 2 + entry.cell_len > width:
                    rows.append(Text())
                if rows[-1].cell_len:
                    rows[-1].append("  ")
                rows[-1].append_text(entry)
            self.border_subtitle = ""
        if [r.plain for r in rows] != [r.plain for r in self._legend_rows]:
            self._legend_rows = rows
            self._changed()

    def show_failure(self, text: Text) -> None:
        self._failure = text
        self._changed()

    def _changed(self) -> None:
        self._version += 1
        self.refresh()

    # ------------------------------------------------------------ painting

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        key = (self._version, width, height)
        if key != self._rows_key:
            self._rows = self._paint(width, height)
            self._rows_key = key
        return self._rows[y] if 0 <= y < len(self._rows) else Strip.blank(width)

    def _paint(self, width: int, height: int) -> list[Strip]:
        try:
            if self._failure is not None:
                lines = self._failure.wrap(self.app.console, max(1, width))
                rows = [list(line.render(self.app.console)) for line in lines][:height]
                rows += [[Segment(" " * width)] for _ in range(height - len(rows))]
            elif self.data is None:
                rows = [[Segment(" " * width)] for _ in range(height)]
                if height:
                    rows[height // 2] = [Segment(self.waiting.center(width)[:width], Style(italic=True))]
            else:
                legend = self._legend_rows[:max(0, height - 4)]  # a chart too short for its legend: the chart first
                rows = braille.render(build_plot(self.data, width, height - len(legend)), width, height - len(legend))
                rows += [list(line.render(self.app.console)) for line in legend]
        except Exception as exc:  # a chart that cannot be drawn says so in place; the monitor goes on
            rows = [[Segment(f"chart failed: {type(exc).__name__}: {exc}"[:width], Style(color="yellow"))]]
            rows += [[Segment(" " * width)] for _ in range(height - 1)]
            report = getattr(self.app, "report_failure", None)
            if report is not None:  # not from inside a paint: the log is another widget
                self.app.call_later(report, "loss chart", exc)
        base = self.rich_style  # the pane's own background under every cell, drawn or not
        return [Strip(row).adjust_cell_length(width).apply_style(base) for row in rows]
