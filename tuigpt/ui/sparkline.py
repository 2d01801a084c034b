"""Block sparklines, one or several rows tall, and the scale that says what their bottom and top are.

Values (oldest first) are bucketed into ``width`` columns (``reduce`` of each bucket: max for times, where one
slow step is what the eye should catch); a column is ``height`` rows of eighth-blocks, so a 3-row sparkline
tells 24 levels apart instead of 8. The scale is the data's own range unless ``lo``/``hi`` pin it (a rate on
0..1, say), and :func:`spark_scale` gives the same range for the labels beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

TICKS = "▁▂▃▄▅▆▇█"


def _known(values: Sequence[float | None], log: bool) -> list[float | None]:
    return [None if v is None or not math.isfinite(v) or (log and v <= 0) else (math.log10(v) if log else v)
            for v in values]


def spark_scale(values: Sequence[float | None], log: bool = False, lo: float | None = None,
                hi: float | None = None) -> tuple[float, float] | None:
    """The (bottom, top) the sparkline of ``values`` is drawn against, in the values' units (None: no value)."""
    known = [v for v in _known(values, log) if v is not None]
    if not known:
        return None
    low = min(known) if lo is None else (math.log10(lo) if log and lo > 0 else lo)
    high = max(known) if hi is None else (math.log10(hi) if log and hi > 0 else hi)
    return (10 ** low, 10 ** high) if log else (low, high)


def spark_rows(values: Sequence[float | None], width: int, height: int = 1, log: bool = False,
               reduce: Callable[[list[float]], float] = max, lo: float | None = None,
               hi: float | None = None) -> list[str]:
    """``height`` rows (top first) of ``width`` cells; a column with no known value is blank. Scaled to
    :func:`spark_scale` (log10 when ``log``); the lowest value still shows as one eighth."""
    if width <= 0 or height <= 0:
        return [""] * max(0, height)
    known = _known(values, log)
    n = len(known)
    columns: list[float | None] = []
    for c in range(min(width, n)):
        bucket = [v for v in known[c * n // min(width, n):(c + 1) * n // min(width, n)] if v is not None]
        columns.append(reduce(bucket) if bucket else None)
    scale = spark_scale(values, log, lo, hi)
    if scale is None or not any(v is not None for v in columns):
        return [" " * width] * height
    low, high = (math.log10(scale[0]), math.log10(scale[1])) if log else scale
    span, levels = high - low, height * 8
    eighths = [None if v is None else (min(levels, max(1, int((v - low) / span * (levels - 0.001)) + 1))
                                       if span > 0 else levels // 2) for v in columns]
    rows = []
    for r in range(height):  # r = 0: the top row
        floor = (height - 1 - r) * 8
        rows.append("".join(" " if e is None or e <= floor else TICKS[min(8, e - floor) - 1] for e in eighths)
                    .rjust(width))
    return rows


def spark(values: Sequence[float | None], width: int, log: bool = False, reduce: Callable[[list[float]], float] = max,
          lo: float | None = None, hi: float | None = None) -> str:
    """A one-row sparkline (see :func:`spark_rows`)."""
    return spark_rows(values, width, 1, log, reduce, lo, hi)[0]
