"""Line charts as PNG files, drawn with numpy and written with zlib: the pictures of `tuigpt report`, with no
plotting library to install (matplotlib would be a ~40 MB dependency for a few lines on a white canvas).

A chart is a plot area with light grid lines at round tick values, the tick numbers in a built-in 5x7 pixel
font (digits and a few signs: the only text drawn; titles and legends are the Markdown's, which says what each
colour is), and its series as 2-pixel polylines or dots. Nothing here imports textual or torch.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

WHITE, GRID, AXIS, INK = (255, 255, 255), (232, 232, 232), (120, 120, 120), (60, 60, 60)
SCALE = 2  # each font pixel is 2x2 screen pixels: readable at 960 px wide

# 5x7 glyphs, one string per row, "#" on
_FONT = {
    "0": (" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "),
    "1": ("  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "2": (" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"),
    "3": (" ### ", "#   #", "    #", "  ## ", "    #", "#   #", " ### "),
    "4": ("   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "),
    "5": ("#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "),
    "6": (" ### ", "#    ", "#### ", "#   #", "#   #", "#   #", " ### "),
    "7": ("#####", "    #", "   # ", "  #  ", "  #  ", "  #  ", "  #  "),
    "8": (" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "),
    "9": (" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "),
    ".": ("     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "),
    "-": ("     ", "     ", "     ", " ### ", "     ", "     ", "     "),
    "k": ("#    ", "#    ", "#  # ", "# #  ", "##   ", "# #  ", "#  # "),
    "M": ("#   #", "## ##", "# # #", "#   #", "#   #", "#   #", "#   #"),
    "e": ("     ", "     ", " ### ", "#   #", "#####", "#    ", " ### "),
    " ": ("     ",) * 7,
}
_GLYPHS = {c: np.array([[ch == "#" for ch in row] for row in rows], dtype=bool) for c, rows in _FONT.items()}
GLYPH_W, GLYPH_H = 6 * SCALE, 7 * SCALE  # a glyph and the space after it


@dataclass(frozen=True)
class Series:
    """One curve: points (x, y), a colour, and how it is drawn ("line" or "dots")."""

    xs: Sequence[float]
    ys: Sequence[float]
    color: tuple[int, int, int]
    style: str = "line"


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """About ``count`` round values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1, 2, 5, 10)), key=lambda candidate: abs(math.log(candidate / raw)))
    first = math.ceil(lo / step - 1e-9) * step
    ticks, value = [], first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def tick_text(value: float, step: float, top: float) -> str:
    """A tick's number, as short as its spacing allows and in the unit of the axis's largest tick ``top``: 0.5k,
    1.5k, 1.2M, 2.25, 4e-4 (ticks are 1, 2 or 5 times a power of ten apart, so the step's decimals are the ones
    every tick needs)."""
    if value == 0:
        return "0"
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if abs(top) >= div and step >= div / 10:
            return f"{value / div:.{_decimals(step / div)}f}{unit}"
    if 0 < step < 1e-3:  # learning rates: 2e-4, not 0.0002
        digits = max(0, math.floor(math.log10(abs(value))) - math.floor(math.log10(step) + 1e-9))
        mantissa, exponent = f"{value:.{digits}e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.') if '.' in mantissa else mantissa}e{int(exponent)}"
    return f"{value:.{_decimals(step)}f}"


def _decimals(step: float) -> int:
    return max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0


def line_chart(series: Sequence[Series], width: int = 960, height: int = 360, y_range: tuple[float, float] | None = None,
               x_range: tuple[float, float] | None = None) -> bytes:
    """The chart as PNG bytes. ``y_range``/``x_range``: the span shown (default: the data's, y padded by 5%)."""
    points = [(x, y) for s in series for x, y in zip(s.xs, s.ys) if math.isfinite(x) and math.isfinite(y)]
    xs, ys = [p[0] for p in points] or [0.0, 1.0], [p[1] for p in points] or [0.0, 1.0]
    x0, x1 = x_range or (min(xs), max(xs))
    y0, y1 = y_range or (min(ys), max(ys))
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x0 + 0.5
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y0 + 0.5
    if y_range is None:
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad
    canvas = np.full((height, width, 3), WHITE, dtype=np.uint8)
    yticks, xticks = nice_ticks(y0, y1), nice_ticks(x0, x1, 8)
    ystep = yticks[1] - yticks[0] if len(yticks) > 1 else 1.0
    xstep = xticks[1] - xticks[0] if len(xticks) > 1 else 1.0
    ytext = [tick_text(v, ystep, max(map(abs, yticks))) for v in yticks]
    xtext = [tick_text(v, xstep, max(map(abs, xticks))) for v in xticks]
    left = 12 + max(map(len, ytext)) * GLYPH_W
    right, top, bottom = width - 16, 12, height - 12 - GLYPH_H - 8
    to_px = lambda x, y: (left + (x - x0) / (x1 - x0) * (right - left),  # noqa: E731
                          bottom - (y - y0) / (y1 - y0) * (bottom - top))
    for v, text in zip(yticks, ytext):
        _, py = to_px(x0, v)
        canvas[int(round(py)), left:right + 1] = GRID
        _text(canvas, text, left - 6 - len(text) * GLYPH_W, int(round(py)) - GLYPH_H // 2)
    for v, text in zip(xticks, xtext):
        px, _ = to_px(v, y0)
        canvas[top:bottom + 1, int(round(px))] = GRID
        _text(canvas, text, int(round(px)) - len(text) * GLYPH_W // 2, bottom + 8)
    canvas[bottom, left:right + 1] = AXIS
    canvas[top:bottom + 1, left] = AXIS
    for s in series:
        pts = [to_px(x, y) for x, y in zip(s.xs, s.ys) if math.isfinite(x) and math.isfinite(y)]
        if s.style == "dots":
            for px, py in pts:
                _dot(canvas, px, py, s.color, (left, top, right, bottom))
        else:
            for (ax, ay), (bx, by) in zip(pts, pts[1:]):
                _segment(canvas, ax, ay, bx, by, s.color, (left, top, right, bottom))
            if len(pts) == 1:
                _dot(canvas, *pts[0], s.color, (left, top, right, bottom))
    return png_bytes(canvas)


def _segment(canvas: np.ndarray, ax: float, ay: float, bx: float, by: float, color: tuple[int, int, int],
             box: tuple[int, int, int, int]) -> None:
    """A 2-pixel line from a to b, clipped to the plot area."""
    steps = int(max(abs(bx - ax), abs(by - ay))) + 1
    px = np.rint(np.linspace(ax, bx, steps + 1)).astype(int)
    py = np.rint(np.linspace(ay, by, steps + 1)).astype(int)
    left, top, right, bottom = box
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        x, y = px + dx, py + dy
        keep = (x >= left) & (x <= right) & (y >= top) & (y <= bottom)
        canvas[y[keep], x[keep]] = color


def _dot(canvas: np.ndarray, x: float, y: float, color: tuple[int, int, int], box: tuple[int, int, int, int],
         radius: int = 3) -> None:
    left, top, right, bottom = box
    cx, cy = int(round(x)), int(round(y))
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy <= radius * radius and left <= cx + dx <= right and top <= cy + dy <= bottom:
                canvas[cy + dy, cx + dx] = color


def _text(canvas: np.ndarray, text: str, x: int, y: int) -> None:
    """Tick numbers in the 5x7 font (characters it lacks are left out)."""
    for k, char in enumerate(text):
        glyph = _GLYPHS.get(char)
        if glyph is None:
            continue
        big = np.kron(glyph, np.ones((SCALE, SCALE), dtype=bool))
        gx, gy = x + k * GLYPH_W, y
        h, w = big.shape
        if gx < 0 or gy < 0 or gx + w > canvas.shape[1] or gy + h > canvas.shape[0]:
            continue
        region = canvas[gy:gy + h, gx:gx + w]
        region[big] = INK


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB uint8 image as a PNG file (8-bit truecolour, no filtering, zlib level 9)."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
