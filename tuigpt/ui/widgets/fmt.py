"""Small formatting helpers shared by the panes ("n/a" for unknown values, never 0)."""

from __future__ import annotations

import time
from typing import Any

NA = "n/a"


def na(value: Any, fmt: str = "{}", suffix: str = "") -> str:
    """``fmt.format(value) + suffix``, or "n/a" when the value is unknown (None)."""
    if value is None:
        return NA
    try:
        return fmt.format(value) + suffix
    except (TypeError, ValueError):
        return NA


def duration(seconds: float | None) -> str:
    """1:02:03 / 12:34; "n/a" when unknown; days shown as 2d 03:04:05."""
    if seconds is None or seconds != seconds or seconds < 0:
        return NA
    s = int(round(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h:02d}:{m:02d}:{s:02d}"
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def clock_time(t: float, now: float | None = None) -> str:
    """Local wall-clock time; with the weekday when it is not within the next 24 h."""
    if now is not None and abs(t - now) >= 86400:
        return time.strftime("%a %H:%M", time.localtime(t))
    return time.strftime("%H:%M", time.localtime(t))


def hms(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def count(n: float | None) -> str:
    """10.7M / 350K / 999; "n/a" when unknown."""
    if n is None:
        return NA
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def size_bytes(n: float | None) -> str:
    """Bytes in GB/MB (decimal, as nvidia-smi and psutil users read them)."""
    if n is None:
        return NA
    try:
        n = float(n)
    except (TypeError, ValueError):
        return NA
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def percent(fraction: float | None, digits: int = 1) -> str:
    return NA if fraction is None else f"{fraction * 100:.{digits}f}%"


def bar(fraction: float | None, width: int = 10) -> str:
    """A text bar with eighth blocks (readable in 16 colours and in monochrome)."""
    if fraction is None:
        return "·" * width
    fraction = min(1.0, max(0.0, fraction))
    eighths = int(round(fraction * width * 8))
    full, part = divmod(eighths, 8)
    out = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")
    return out + " " * (width - len(out))
