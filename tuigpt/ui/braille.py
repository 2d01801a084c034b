"""A braille chart drawn from its data on every render: filled areas, lines (solid or dashed), markers, axes.

Nothing is transformed in place: a :class:`Plot` holds plain lists of (x, y) in plot space (the caller takes
log10 for a log axis and labels the ticks itself), and :func:`render` turns it into rows of rich Segments for
any size, the same rows for the same plot and size, however often it is called. Each terminal cell holds
2×4 braille dots; a cell takes the style of the last layer that drew in it, markers win over dots.

Cost: O(points + cells) per render. Points are binned per dot column first (min/max), so a 2,000-point
curve costs the same as a 200-point one on a 100-column chart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.segment import Segment
from rich.style import Style

# dot bits of a braille cell, by (column, row) of the 2×4 grid
_BIT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
# _SPAN[col][a][b]: the bits of rows a..b (inclusive) of one dot column
_SPAN = [[[sum(_BIT[c][r] for r in range(a, b + 1)) for b in range(4)] for a in range(4)] for c in range(2)]
BRAILLE_BASE = 0x2800


@dataclass(frozen=True)
class Layer:
    """One thing to draw. kind: "area" (filled down to the bottom), "line", "marks" (one glyph a point)."""

    kind: str
    xs: Sequence[float]
    ys: Sequence[float]
    style: str
    glyph: str = ""  # marks only
    dashed: bool = False  # lines only: drawn every other 3 dot columns
    # lines only: in the cells it crosses, the line's dots replace the dots next to them (a thin line through an
    # area, one dot clear of it) instead of adding to them (a solid band); the dots further away stay, drawn
    # in the line's colour (a cell has one), so the fill has no holes along the line and does not vanish where
    # the line runs along the chart's bottom row (80x24: the area was gone wherever the EMA reached it)
    carve: bool = True


@dataclass
class Plot:
    """What a chart shows, in plot coordinates: layers in drawing order, the ranges, the ticks."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    layers: list[Layer] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_marks: list[tuple[float, str]] = field(default_factory=list)  # (x, glyph) on the x label row, before the ticks
    axis_style: str = "bright_black"
    label_style: str = ""


def finite_pairs(xs: Sequence[float | None], ys: Sequence[float | None]) -> tuple[list[float], list[float]]:
    """The (x, y) pairs where both are known finite numbers."""
    px: list[float] = []
    py: list[float] = []
    for x, y in zip(xs, ys):
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
            px.append(float(x))
            py.append(float(y))
    return px, py


# ---------------------------------------------------------------- ticks


def nice_step(span: float, n: int) -> float:
    """The smallest step of 1, 2, 2.5 or 5 × 10^k that cuts ``span`` into at most ``n`` + 1 parts."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    mag = 10 ** math.floor(math.log10(span / max(1, n)))
    for m in (0.5, 1, 2, 2.5, 5, 10, 20):
        if span / (m * mag) <= n + 1:
            return m * mag
    return 20 * mag


def linear_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round values between lo and hi, about n of them."""
    step = nice_step(hi - lo, n)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, k = [], 0
    while first + k * step <= hi + 1e-9 * step:
        ticks.append(round(first + k * step, 12))
        k += 1
    return ticks or [lo]


_LOG_MANTISSAS = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 10)


def log_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round values (1, 1.5, 2, 3, 5 … × 10^k) between lo and hi (> 0), about evenly spaced in log10."""
    if lo <= 0 or hi <= lo:
        return [lo] if lo > 0 else []
    candidates = sorted({m * 10 ** k for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                         for m in _LOG_MANTISSAS})
    inside = [c for c in candidates if lo * (1 - 1e-9) <= c <= hi * (1 + 1e-9)]
    if len(inside) < min(n, 4):  # a narrow range (1.6-2.3 holds only "2"): evenly spaced round values, which a
        return [v for v in linear_ticks(lo, hi, n) if v > 0]  # log axis this narrow barely bends
    if len(inside) <= n:
        return inside
    llo, lhi = math.log10(lo), math.log10(hi)
    picked: list[float] = []
    for k in range(n):  # the candidate nearest to each of n evenly spaced points, no repeats
        target = llo + (lhi - llo) * k / (n - 1)
        best = min(inside, key=lambda c: abs(math.log10(c) - target))
        if best not in picked:
            picked.append(best)
    return sorted(picked)


def number_label(value: float, step: float) -> str:
    """A tick label with as many decimals as the step needs (0.5 → 1 decimal, 0.25 → 2)."""
    if step >= 1 and abs(value - round(value)) < 1e-9:
        return f"{value:,.0f}"
    decimals = min(6, max(0, -math.floor(math.log10(step) + 1e-12)) + (1 if (step / 10 ** math.floor(math.log10(step))) % 1 else 0))
    return f"{value:,.{decimals}f}"


# ---------------------------------------------------------------- rendering


class _Grid:
    """Dot masks and a style index per cell of the plot area."""

    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height
        self.mask = [[0] * width for _ in range(height)]
        self.style = [[-1] * width for _ in range(height)]
        self.glyph: dict[tuple[int, int], tuple[str, int]] = {}

    def column_span(self, dx: int, top: int, bottom: int, style: int,
                    fresh: dict[tuple[int, int], int] | None = None) -> None:
        """Set dots top..bottom (dot rows, inclusive, 0 = top) of dot column dx. With ``fresh``, a cell this
        layer had not drawn in before is cleared first (its dots before are kept in ``fresh``)."""
        cx, col = divmod(dx, 2)
        if not 0 <= cx < self.w:
            return
        top, bottom = max(0, top), min(self.h * 4 - 1, bottom)
        span = _SPAN[col]
        for cy in range(top // 4, bottom // 4 + 1):
            a = top - cy * 4 if cy == top // 4 else 0
            b = bottom - cy * 4 if cy == bottom // 4 else 3
            if fresh is not None and (cy, cx) not in fresh:
                fresh[(cy, cx)] = self.mask[cy][cx]
                self.mask[cy][cx] = 0
            self.mask[cy][cx] |= span[a][b]
            self.style[cy][cx] = style


def _columns(layer: Layer, plot: Plot, dots_w: int, dots_h: int) -> dict[int, list[int]]:
    """Per dot column the layer's points fall in: [highest, lowest, first, last] dot row (0 = top)."""
    (x0, x1), (y0, y1) = plot.x_range, plot.y_range
    sx = (dots_w - 1) / (x1 - x0) if x1 > x0 else 0.0
    sy = (dots_h - 1) / (y1 - y0) if y1 > y0 else 0.0
    out: dict[int, list[int]] = {}
    for x, y in zip(layer.xs, layer.ys):
        if not (x0 <= x <= x1):
            continue  # outside the x range: not drawn (the frame is never crossed)
        dx = int(round((x - x0) * sx))
        dy = int(round((y1 - min(max(y, y0), y1)) * sy))
        col = out.get(dx)
        if col is None:
            out[dx] = [dy, dy, dy, dy]
        else:
            col[0], col[1], col[3] = min(col[0], dy), max(col[1], dy), dy
    return out


def _draw(grid: _Grid, layer: Layer, plot: Plot, style: int) -> None:
    if layer.kind == "marks":
        (x0, x1), (y0, y1) = plot.x_range, plot.y_range
        for x, y in zip(layer.xs, layer.ys):
            if x0 <= x <= x1 and y0 <= y <= y1:
                cx = int(round((x - x0) / (x1 - x0) * (grid.w - 1))) if x1 > x0 else 0
                cy = int(round((y1 - y) / (y1 - y0) * (grid.h - 1))) if y1 > y0 else 0
                grid.glyph[(cy, cx)] = (layer.glyph, style)
        return
    dots_h = grid.h * 4
    cols = _columns(layer, plot, grid.w * 2, dots_h)
    if layer.kind == "area":  # every dot column from the first point to the last, the top joined linearly
        previous: tuple[int, int] | None = None
        for dx in sorted(cols):
            top = cols[dx][0]
            if previous is not None:
                px, pt = previous
                for gx in range(px + 1, dx):
                    grid.column_span(gx, int(round(pt + (top - pt) * (gx - px) / (dx - px))), dots_h - 1, style)
            grid.column_span(dx, top, dots_h - 1, style)
            previous = (dx, top)
        return
    shown = (lambda gx: (gx // 3) % 2 == 0) if layer.dashed else (lambda gx: True)
    fresh: dict[tuple[int, int], int] | None = {} if layer.carve else None
    previous = None  # (dot column, its last point's row)
    for dx in sorted(cols):
        top, bottom, first, last = cols[dx]
        if previous is not None:  # a straight line from the previous column's last point to this one's first
            px, py = previous
            for gx in range(px + 1, dx + 1):
                a = py + (first - py) * (gx - 1 - px) / (dx - px)
                b = py + (first - py) * (gx - px) / (dx - px)
                if shown(gx):
                    grid.column_span(gx, int(round(min(a, b))), int(round(max(a, b))), style, fresh)
        if shown(dx):
            grid.column_span(dx, top, bottom, style, fresh)
        previous = (dx, last)
    for (cy, cx), under in (fresh or {}).items():
        grid.mask[cy][cx] |= _clear_of_line(grid.mask[cy][cx], under)


def _clear_of_line(line: int, under: int) -> int:
    """The dots of ``under`` a carving line keeps in one cell: per dot column, those at least two rows from the
    line's dots there (all of them where the line has no dot in that column)."""
    kept = 0
    for col in range(2):
        rows = [r for r in range(4) if line & _BIT[col][r]]
        kept |= sum(_BIT[col][r] for r in range(4)
                    if under & _BIT[col][r] and (not rows or r <= rows[0] - 2 or r >= rows[-1] + 2))
    return kept


def render(plot: Plot, width: int, height: int) -> list[list[Segment]]:
    """``height`` rows of exactly ``width`` cells: y labels, the plot area with its axis, x labels."""
    if width < 8 or height < 3:
        return [[Segment(" " * max(0, width))] for _ in range(max(0, height))]
    y_labels = [label for _, label in plot.y_ticks]
    label_w = max((len(s) for s in y_labels), default=1)
    plot_w, plot_h = width - label_w - 1, height - 1  # one column for the axis, one row for x labels
    if plot_w < 2:
        return [[Segment(" " * width)] for _ in range(height)]
    styles = [Style.parse(layer.style) for layer in plot.layers]
    grid = _Grid(plot_w, plot_h)
    for k, layer in enumerate(plot.layers):
        _draw(grid, layer, plot, k)
    axis = Style.parse(plot.axis_style)
    label = Style.parse(plot.label_style) if plot.label_style else Style()
    (y0, y1) = plot.y_range
    tick_rows: dict[int, str] = {}
    for value, text in plot.y_ticks:
        if y0 <= value <= y1 and y1 > y0:
            tick_rows[int(round((y1 - value) / (y1 - y0) * (plot_h - 1)))] = text
    rows: list[list[Segment]] = []
    for cy in range(plot_h):
        text = tick_rows.get(cy)
        row = [Segment(f"{text:>{label_w}}" if text else " " * label_w, label),
               Segment("┤" if text else "│", axis)]
        row += _cells(grid, cy, styles)
        rows.append(row)
    rows.append([Segment(_x_axis_line(plot, label_w, plot_w), label)])
    return rows


def _cells(grid: _Grid, cy: int, styles: list[Style]) -> list[Segment]:
    """One row of the plot area as segments, neighbouring cells of one style merged."""
    out: list[Segment] = []
    run: list[str] = []
    run_style = -2
    masks, cell_styles = grid.mask[cy], grid.style[cy]
    for cx in range(grid.w):
        glyph = grid.glyph.get((cy, cx))
        if glyph is not None:
            char, style = glyph
        elif masks[cx]:
            char, style = chr(BRAILLE_BASE + masks[cx]), cell_styles[cx]
        else:
            char, style = " ", -1
        if style != run_style and run:
            out.append(Segment("".join(run), styles[run_style] if run_style >= 0 else None))
            run = []
        run_style = style
        run.append(char)
    if run:
        out.append(Segment("".join(run), styles[run_style] if run_style >= 0 else None))
    return out


def _x_axis_line(plot: Plot, label_w: int, plot_w: int) -> str:
    """The x tick labels under the plot area, centred on their column, never overlapping or cut."""
    line = [" "] * (label_w + 1 + plot_w)
    (x0, x1) = plot.x_range

    def column(value: float) -> int:
        return label_w + 1 + (int(round((value - x0) / (x1 - x0) * (plot_w - 1))) if x1 > x0 else 0)

    marked = set()
    for value, glyph in plot.x_marks:  # a mark sits exactly on its column; labels make way for it
        if x0 <= value <= x1:
            line[column(value)] = glyph
            marked.add(column(value))
    taken_until = -1
    for value, text in plot.x_ticks:
        if not (x0 <= value <= x1):
            continue
        col = column(value)
        start = min(max(label_w + 1, col - len(text) // 2), len(line) - len(text))
        if start <= taken_until + 1 or start < 0 or any(start - 1 <= m <= start + len(text) for m in marked):
            continue  # would touch the previous label or a mark: left out
        line[start:start + len(text)] = list(text)
        taken_until = start + len(text)
    return "".join(line)
