"""The loss chart: raw train loss (faint), its EMA, eval points, best val."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from tuigpt.ui.history import HistoryView

# Plotext's named colours are the 16 ANSI ones ("+" = bright), so the series stay
# distinguishable on 16-colour terminals; the eval markers differ in shape too.
RAW_COLOR = "gray"
EMA_COLOR = "cyan+"
EVAL_TRAIN_COLOR = "blue+"
EVAL_VAL_COLOR = "magenta+"
BEST_COLOR = "green+"
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


class LossChart(PlotextPlot):
    """Redrawn from a HistoryView; never reads the live history itself."""

    drawn_range: tuple[int, int] | None = None
    """First and last iteration on the chart (None when empty)."""

    def on_mount(self) -> None:
        super().on_mount()
        self.draw(None, log_y=False, recent=False)

    def draw(self, view: HistoryView | None, *, log_y: bool, recent: bool) -> None:
        scope = "recent" if recent else "whole run"
        self.border_title = f"loss · {scope} · {'log' if log_y else 'linear'} y"
        plt = self.plt
        plt.clear_figure()
        points = [] if view is None else (view.recent if recent else view.whole)
        if view is None or not points:
            self.drawn_range = None
            self.border_subtitle = ""
            plt.title("waiting for the first iteration…")
            self.refresh()
            return
        xs = [p[0] for p in points]
        self.drawn_range = (xs[0], xs[-1])
        plt.plot(xs, [p[1] for p in points], color=RAW_COLOR, marker="braille")
        plt.plot(xs, [p[2] for p in points], color=EMA_COLOR, marker="braille")
        lo = xs[0]
        evals = [e for e in view.evals if e[0] >= lo]
        if evals:
            ex = [e[0] for e in evals]
            plt.scatter(ex, [e[1] for e in evals], color=EVAL_TRAIN_COLOR, marker="x")
            plt.scatter(ex, [e[2] for e in evals], color=EVAL_VAL_COLOR, marker="o")
        legend = LEGEND
        best = view.best_eval
        if best is not None:
            if best[0] >= lo:
                plt.scatter([best[0]], [best[2]], color=BEST_COLOR, marker="*")
            legend += f" [bold green]* best val {best[2]:.4f} @{best[0]:,}[/]"
        self.border_subtitle = legend
        plt.xticks(int_ticks(xs[0], xs[-1]))
        plt.yscale("log" if log_y else "linear")
        self.refresh()
