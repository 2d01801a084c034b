"""The target-loss projection on the loss chart: the fitted curve from now to where it reaches the target, dashed,
and the target as a line across the chart. Computed in data space (iterations, tokens or seconds on x) as extra
layers of the braille chart, which fits its ranges to them like to any other series."""

from __future__ import annotations

from rich.text import Text

from tuigpt.run.model import LossView
from tuigpt.run.projection import TargetProjection
from tuigpt.run.series import x_values
from tuigpt.ui import braille

PROJECTION_STYLE = "bold bright_green"
TARGET_STYLE = "green"
POINTS = 48  # points along the projected curve
MAX_STRETCH = 1.0  # the projection may add at most this much of the drawn x range to the chart


def projection_curve(projection: TargetProjection | None, view: LossView, x_axis: str, tokens_per_iter: int | None,
                     ms_per_iter: float | None, x_lo: float, x_hi: float) -> tuple[list[float], list[float], bool]:
    """(xs, ys, cut) of the projected curve on the chart's x axis, from the newest point on; ``cut`` when it had
    to stop before the crossing (it would have squashed the chart). Empty when there is nothing to draw."""
    if projection is None or projection.fit is None or projection.tokens is None or not view.whole:
        return [], [], False
    last = view.whole[-1]
    now_iter, now_tokens, now_time = last[0], last[3], last[4]
    if now_tokens is None or not tokens_per_iter:
        return [], [], False
    e, a, alpha = projection.fit
    t0 = view.whole[0][4]

    def x_of(tokens: float) -> float | None:
        iters = (tokens - now_tokens) / tokens_per_iter
        if x_axis == "iter":
            return now_iter + iters
        if x_axis == "tokens":
            return tokens
        if now_time is None or t0 is None or not ms_per_iter:
            return None
        return now_time - t0 + iters * ms_per_iter / 1000.0

    end = projection.tokens
    x_end, x_now = x_of(end), x_of(now_tokens)
    if x_end is None or x_now is None or x_end <= x_now:
        return [], [], False
    limit = x_hi + MAX_STRETCH * (x_hi - x_lo)
    cut = x_end > limit
    if cut:
        end = now_tokens + (end - now_tokens) * (limit - x_now) / (x_end - x_now)
    tokens = [now_tokens + (end - now_tokens) * k / (POINTS - 1) for k in range(POINTS)]
    xs = [x_of(t) for t in tokens]
    return [x for x in xs if x is not None], [e + a * t ** -alpha for t in tokens], cut


def projection_layers(projection: TargetProjection | None, view: LossView | None, x_axis: str,
                      tokens_per_iter: int | None, ms_per_iter: float | None,
                      recent: bool = False) -> tuple[list[braille.Layer], Text | None]:
    """The chart's extra layers for a projection (the dashed curve, the target line) and its legend entry."""
    if projection is None or view is None or not view.whole:
        return [], None
    points = view.recent if recent else view.whole
    shown = [x for x in x_values(points, x_axis, view.whole[0][4]) if x is not None]
    if not shown:
        return [], None
    lo, hi = shown[0], shown[-1]
    xs, ys, cut = projection_curve(projection, view, x_axis, tokens_per_iter, ms_per_iter, lo, hi)
    layers = []
    legend = Text.assemble(("┄", TARGET_STYLE), f" target {projection.target:g}")
    if len(xs) >= 2:
        layers.append(braille.Layer("line", xs, ys, PROJECTION_STYLE, dashed=True))
        hi = max(hi, xs[-1])
        legend = Text.assemble(("┄", PROJECTION_STYLE), f" projection{' (cut)' if cut else ''} → {projection.target:g}")
    # the target as a line: where the projection heads, or where the curve already is; a target far below a curve
    # that is not heading there would only squash the chart (the title says why there is no projection)
    if layers or projection.target >= min(p[2] for p in points):
        layers.insert(0, braille.Layer("line", [lo, hi], [projection.target] * 2, TARGET_STYLE, dashed=True,
                                       carve=False))
    return layers, legend
