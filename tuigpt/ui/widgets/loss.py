"""The loss chart: raw train loss (faint), its EMA, eval points, best val."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from tuigpt.ui.compare import CompareCurve
from tuigpt.ui.history import HistoryView, eval_x, x_values
from tuigpt.run.fmt import count, duration

# Plotext's named colours are the 16 ANSI ones ("+" = bright), so the series stay
# distinguishable on 16-colour terminals; the eval markers differ in shape too.
RAW_COLOR = "gray"
EMA_COLOR = "cyan+"
EVAL_TRAIN_COLOR = "blue+"
EVAL_VAL_COLOR = "magenta+"
BEST_COLOR = "green+"
COMPARE_COLOR = "yellow+"
AXIS_TITLES = {"iter": "iteration", "tokens": "tokens seen", "time": "wall-clock time"}
# The legend lives in the border (plotext's own legend would cover the start of the curve).
LEGEND = "[dim]⣀ train[/] [bold cyan]⣀ EMA[/] [bold blue]x eval train[/] [bold magenta]o val[/]"


def int_ticks(lo: int, hi: int, n: int = 5) -> list[int]:
    """About n evenly spaced whole iteration numbers from lo to hi."""
    if hi <= lo:
        return [lo]
    step = max(1, round((hi - lo) / (n - 1)))
    ticks = list(range(lo, hi, step))
    if hi - ticks[-1] < step / 2 and len(ticks) > 1:
        ticks.pop()
    return ticks + [hi]


def _tick_label(value: float, axis: str) -> str:
    if axis == "time":
        return duration(value)
    if axis == "tokens":
        return count(value)
    return f"{value:,.0f}"


def _pairs(xs: list[float | None], ys: list[float]) -> tuple[list[float], list[float]]:
    kept = [(x, y) for x, y in zip(xs, ys) if x is not None]
    return [x for x, _ in kept], [y for _, y in kept]


class LossChart(PlotextPlot):
    """Redrawn from a HistoryView; never reads the live history itself."""

    drawn_range: tuple[int, int] | None = None
    """First and last iteration on the chart (None when empty)."""
    drawn_compare: int = 0
    """Points of the compared run on the chart (0: none)."""

    def on_mount(self) -> None:
        super().on_mount()
        self.draw(None, log_y=False, recent=False)

    def draw(self, view: HistoryView | None, *, log_y: bool, recent: bool, x_axis: str = "iter",
             compare: CompareCurve | None = None) -> None:
        scope = "recent" if recent else "whole run"
        x_note = "" if x_axis == "iter" else f" · x: {AXIS_TITLES[x_axis]}"
        self.border_title = f"loss · {scope} · {'log' if log_y else 'linear'} y{x_note}"
        self.drawn_compare = 0
        plt = self.plt
        plt.clear_figure()
        points = [] if view is None else (view.recent if recent else view.whole)
        if view is None or not points:
            self.drawn_range = None
            self.border_subtitle = ""
            plt.title("waiting for the first iteration…")
            self.refresh()
            return
        iters = [p[0] for p in points]
        self.drawn_range = (iters[0], iters[-1])
        # x of the whole run's points (time counts from the run's first point), then the drawn slice
        t0 = view.whole[0][4] if view.whole else None
        xs_all = x_values(points, x_axis, t0)
        xs, raw = _pairs(xs_all, [p[1] for p in points])
        _, ema = _pairs(xs_all, [p[2] for p in points])
        if not xs:  # an old metrics file without tokens/time: fall back to iterations
            x_axis, xs, raw, ema = "iter", [float(i) for i in iters], [p[1] for p in points], [p[2] for p in points]
        plt.plot(xs, raw, color=RAW_COLOR, marker="braille")
        plt.plot(xs, ema, color=EMA_COLOR, marker="braille")
        lo = iters[0]
        evals = [e for e in view.evals if e[0] >= lo]
        if evals:
            ex = eval_x(evals, view.whole, x_axis, t0)
            ex1, ey1 = _pairs(ex, [e[1] for e in evals])
            ex2, ey2 = _pairs(ex, [e[2] for e in evals])
            plt.scatter(ex1, ey1, color=EVAL_TRAIN_COLOR, marker="x")
            plt.scatter(ex2, ey2, color=EVAL_VAL_COLOR, marker="o")
        legend = LEGEND
        best = view.best_eval
        if best is not None:
            if best[0] >= lo:
                bx = eval_x([best], view.whole, x_axis, t0)[0]
                if bx is not None:
                    plt.scatter([bx], [best[2]], color=BEST_COLOR, marker="*")
            legend += f" [bold green]* best val {best[2]:.4f} @{best[0]:,}[/]"
        x_lo, x_hi = xs[0], xs[-1]
        if compare is not None:
            x_hi = max(x_hi, self._draw_compare(compare, x_axis, x_lo if recent else None, x_hi if recent else None))
            legend += f" [bold yellow]⣀+ {compare.name}[/]"
        self.border_subtitle = legend
        if x_axis == "iter":
            plt.xticks(int_ticks(int(x_lo), int(x_hi)))
        else:
            ticks = [x_lo + (x_hi - x_lo) * k / 4 for k in range(5)] if x_hi > x_lo else [x_lo]
            plt.xticks(ticks, [_tick_label(t, x_axis) for t in ticks])
        plt.yscale("log" if log_y else "linear")
        self.refresh()

    def _draw_compare(self, compare: CompareCurve, x_axis: str, lo: float | None, hi: float | None) -> float:
        """The other run's EMA (line) and val losses (+), clipped to [lo, hi] when zoomed; returns its last x."""
        xs_all = x_values(compare.points, x_axis, compare.t0)
        pts = [(x, p[2]) for x, p in zip(xs_all, compare.points)
               if x is not None and (lo is None or x >= lo) and (hi is None or x <= hi)]
        if not pts:
            return float("-inf")
        self.plt.plot([x for x, _ in pts], [y for _, y in pts], color=COMPARE_COLOR, marker="braille")
        ex = eval_x(compare.evals, compare.points, x_axis, compare.t0)
        evals = [(x, e[2]) for x, e in zip(ex, compare.evals)
                 if x is not None and (lo is None or x >= lo) and (hi is None or x <= hi)]
        if evals:
            self.plt.scatter([x for x, _ in evals], [y for _, y in evals], color=COMPARE_COLOR, marker="+")
        self.drawn_compare = len(pts) + len(evals)
        return pts[-1][0]
