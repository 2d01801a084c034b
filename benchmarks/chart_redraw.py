"""What does one loss-chart redraw cost? The monitor's braille chart vs textual-plotext vs textual-plot.

The monitor redraws its chart at most once a second (ui/app.py CHART_SECONDS) on the same cores as training,
so the CPU time of a redraw is what the chart takes from the trainer. Each variant draws the same data (a
2,000-point loss curve, its EMA, 9 evals, linear and log y alternately) in a headless Textual app at the
monitor's chart size; a redraw is timed from the draw call until the screen is painted (process CPU time,
the idle cost of an empty pause subtracted). Variants alternate in every round, so a busy machine slows all
of them alike. Prints ms of CPU per redraw (median over rounds), the share of one core at one redraw a
second, and each library's cost over the braille chart's.

    pip install -e '.[chartbench]'     # textual-plotext and textual-plot
    python benchmarks/chart_redraw.py [--rounds 7] [--redraws 10] [--points 2000] [--svg DIR]

--svg DIR also saves a screenshot of each variant (linear and log y) to DIR, and a PNG of each
(docs/svg_to_png.py), to compare the looks.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widget import Widget

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tuigpt.run.model import RunModel  # noqa: E402
from tuigpt.run.numbers import Ema  # noqa: E402
from tuigpt.ui.widgets.loss import LossChart  # noqa: E402

SIZE = (78, 24)  # the chart's box in the 120x40 monitor


def curve(n: int) -> tuple[list[float], list[float], list[float], list[tuple[float, float, float]]]:
    """Iterations, a noisy decaying loss, its debiased EMA, and evals every n/8 iterations."""
    xs = [float(i) for i in range(1, n + 1)]
    raw = [1.45 + 2.8 * math.exp(-i / (n / 6)) + 0.06 * math.sin(i * 1.7) + 0.05 * math.sin(i * 0.31) for i in xs]
    ema_f = Ema()
    ema = [ema_f.update(v) for v in raw]
    evals = [(float(i), 1.45 + 2.8 * math.exp(-i / (n / 6)) - 0.05, 1.53 + 2.8 * math.exp(-i / (n / 6)))
             for i in range(0, n + 1, n // 8)]
    return xs, raw, ema, evals


class Braille:
    name = "braille (tuigpt)"

    def __init__(self, n: int) -> None:
        from tuigpt.run.events import EvalResult, IterationStats

        model = RunModel()
        xs, raw, _, evals = curve(n)
        for i, loss in zip(xs, raw):
            model.record(IterationStats(iter=int(i), loss=loss, lr=0.0, ms_per_iter=1.0, tokens_per_sec=1.0,
                                          mfu=None, tokens_seen=int(i), train_seconds=i))
        for i, train, val in evals:
            model.record(EvalResult(iter=int(i), train_loss=train, val_loss=val, best_val_loss=val, is_best=True,
                                      seconds=1.0))
        self.view = model.snapshot().loss
        self.widget = LossChart(id="chart")

    def draw(self, log_y: bool) -> None:
        self.widget.draw(self.view, log_y=log_y, recent=False)


class Plotext:
    name = "textual-plotext"

    def __init__(self, n: int) -> None:
        from textual_plotext import PlotextPlot

        self.data = curve(n)
        self.widget = PlotextPlot(id="chart")

    def draw(self, log_y: bool) -> None:
        xs, raw, ema, evals = self.data
        plt = self.widget.plt
        plt.clear_figure()  # fresh copies every time: plotext takes log10 of its stored lists in place
        plt.plot(list(xs), list(raw), color="gray", marker="braille")
        plt.plot(list(xs), list(ema), color="cyan+", marker="braille")
        plt.scatter([e[0] for e in evals], [e[1] for e in evals], color="yellow+", marker="x")
        plt.scatter([e[0] for e in evals], [e[2] for e in evals], color="magenta+", marker="o")
        plt.yscale("log" if log_y else "linear")
        self.widget.refresh()


class TextualPlot:
    name = "textual-plot"

    def __init__(self, n: int) -> None:
        from textual_plot import HiResMode, PlotWidget

        self.mode = HiResMode.BRAILLE
        self.data = curve(n)
        self.widget = PlotWidget(id="chart", allow_pan_and_zoom=False)

    def draw(self, log_y: bool) -> None:
        xs, raw, ema, evals = self.data
        f = (lambda v: math.log10(v)) if log_y else (lambda v: v)  # no log axis of its own
        w = self.widget
        w.clear()
        w.plot(xs, [f(v) for v in raw], line_style="cyan", hires_mode=self.mode)
        w.plot(xs, [f(v) for v in ema], line_style="bold bright_white", hires_mode=self.mode)
        w.scatter([e[0] for e in evals], [f(e[1]) for e in evals], marker="×", marker_style="bold bright_yellow")
        w.scatter([e[0] for e in evals], [f(e[2]) for e in evals], marker="●", marker_style="bold bright_magenta")


class Bench(App[None]):
    CSS = "#chart { width: 1fr; height: 1fr; border: round $primary; }"

    def __init__(self, variant: Widget) -> None:
        super().__init__()
        self.variant = variant

    def compose(self) -> ComposeResult:
        yield self.variant


async def measure(variant: object, redraws: int, svg_dir: Path | None) -> float:
    """CPU ms per redraw (idle pause subtracted)."""
    app = Bench(variant.widget)  # type: ignore[attr-defined]
    async with app.run_test(size=SIZE) as pilot:
        variant.draw(False)  # type: ignore[attr-defined]
        await pilot.pause()
        await pilot.pause()
        t0 = time.process_time()
        for _ in range(redraws):
            await pilot.pause()
            await pilot.pause()
        idle = (time.process_time() - t0) / redraws
        t0 = time.process_time()
        for k in range(redraws):
            variant.draw(k % 2 == 1)  # type: ignore[attr-defined]
            await pilot.pause()
            await pilot.pause()
        cost = (time.process_time() - t0) / redraws - idle
        if svg_dir is not None:
            for log_y in (False, True):
                variant.draw(log_y)  # type: ignore[attr-defined]
                await pilot.pause()
                await pilot.pause()
                slug = variant.name.split()[0].replace("-", "_")  # type: ignore[attr-defined]
                name = f"chart-{slug}-{'log' if log_y else 'linear'}.svg"
                app.save_screenshot(filename=name, path=str(svg_dir))
                subprocess.run([sys.executable, str(REPO / "docs" / "svg_to_png.py"), str(svg_dir / name)],
                               check=True, capture_output=True)
    return cost * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--redraws", type=int, default=10)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--svg", type=Path, default=None, help="save screenshots of each variant here")
    args = parser.parse_args()
    kinds = [Braille, Plotext, TextualPlot]
    results: dict[str, list[float]] = {k.name: [] for k in kinds}
    if args.svg is not None:
        args.svg.mkdir(parents=True, exist_ok=True)
    for r in range(args.rounds):
        order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]  # every variant goes first in turn
        for kind in order:
            svg = args.svg if r == 0 else None
            results[kind.name].append(asyncio.run(measure(kind(args.points), args.redraws, svg)))
        print(f"round {r + 1}: " + " | ".join(f"{k.name} {results[k.name][-1]:.1f} ms" for k in kinds), flush=True)
    ours = statistics.median(results[Braille.name])
    print(f"{args.points} points, {SIZE[0]}x{SIZE[1]} cells, {args.rounds} rounds x {args.redraws} redraws "
          f"(linear and log y alternating)")
    for kind in kinds:
        med = statistics.median(results[kind.name])
        print(f"{kind.name:<18} {med:7.1f} ms CPU per redraw = {med / 10:5.2f}% of a core at 1 redraw/s; "
              f"{med / ours:5.2f}x the braille chart")


if __name__ == "__main__":
    main()
