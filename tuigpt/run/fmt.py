"""The one formatter: every duration, count, size, clock time, rate and percentage shown anywhere.

One style each, so the headless lines, the monitor, ``watch``, ``runs`` and ``bench`` read alike:
durations ``12s · 3m05s · 1h02m · 2d03h``; counts ``950 · 20.7k · 1.2M · 3.4G``; sizes in binary units
``512 B · 12.0 MiB · 1.5 GiB``; clock times ``14:32 · Tue 03:10 · 2026-12-01 14:32``. An unknown value
is "n/a", never 0.
"""

from __future__ import annotations

import math
import time
from typing import Any

NA = "n/a"


def _known(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def na(value: Any, spec: str = "{}", suffix: str = "") -> str:
    """``spec.format(value) + suffix``, or "n/a" when the value is unknown (None, NaN)."""
    if not _known(value):
        return NA
    try:
        return spec.format(value) + suffix
    except (TypeError, ValueError):
        return NA


def duration(seconds: float | None) -> str:
    """12s, 3m05s, 1h02m, 2d03h."""
    if not _known(seconds) or seconds < 0:  # type: ignore[operator]
        return NA
    s = int(round(seconds))  # type: ignore[arg-type]
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def clock(t: float, now: float | None = None) -> str:
    """A local clock time: 14:32 today, Tue 03:10 within six days, else the date."""
    now = time.time() if now is None else now
    local, today = time.localtime(t), time.localtime(now)
    if local[:3] == today[:3]:
        return time.strftime("%H:%M", local)
    if abs(t - now) < 6 * 86400:
        return time.strftime("%a %H:%M", local)
    return time.strftime("%Y-%m-%d %H:%M", local)


def hms(t: float) -> str:
    """The time of day of an event, to the second (the events log)."""
    return time.strftime("%H:%M:%S", time.localtime(t))


def ago(seconds: float) -> str:
    """How long ago: 12 s ago, 5 min ago, 3 h ago, 2 d ago."""
    seconds = max(0.0, seconds)
    for limit, div, unit in ((90, 1, "s"), (90 * 60, 60, "min"), (36 * 3600, 3600, "h")):
        if seconds < limit:
            return f"{seconds / div:.0f} {unit} ago"
    return f"{seconds / 86400:.0f} d ago"


def count(n: float | None) -> str:
    """950, 20.7k, 1.2M, 3.4G (parameters, tokens, tokens/s)."""
    if not _known(n):
        return NA
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:  # type: ignore[arg-type]
            return f"{n / scale:.1f}{unit}"  # type: ignore[operator]
    return f"{n:.0f}"


def size(n: float | None) -> str:
    """Bytes in binary units, as nvidia-smi and free -h count them: 512 B, 12.0 MiB, 1.5 GiB."""
    if not _known(n):
        return NA
    try:
        n = float(n)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return NA
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def bandwidth(bytes_per_second: float | None) -> str:
    """A link's rate in bits per second, as network cards are sold: 940 Mbit/s, 9.41 Gbit/s."""
    if not _known(bytes_per_second):
        return NA
    bits = float(bytes_per_second) * 8  # type: ignore[arg-type]
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= scale:
            return f"{_sig3(bits / scale)} {unit}"
    return f"{bits:.0f} bit/s"


def percent(fraction: float | None, digits: int = 1) -> str:
    """0.525 → 52.5%."""
    return NA if not _known(fraction) else f"{fraction * 100:.{digits}f}%"  # type: ignore[operator]


STALE_PEAK = "impossible: the peak looks stale, run `tuigpt calibrate`"


def mfu(value: float | None, short: bool = False) -> str:
    """An MFU as a percentage; over 100% it is flagged, never shown plain ("139.7%?!" short)."""
    if not _known(value):
        return NA
    text = percent(value)
    if value > 1.0:  # type: ignore[operator]  (numbers.mfu_plausible)
        return f"{text}?!" if short else f"{text} ({STALE_PEAK})"
    return text


def ms(value: float | None) -> str:
    """Milliseconds, switching to seconds above one: 37.1 ms, 1.24 s."""
    if not _known(value):
        return NA
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"  # type: ignore[operator]


def flops(x: float | None) -> str:
    """A rate with three significant digits: 188 GFLOP/s, 19.5 TFLOP/s."""
    if not _known(x):
        return NA
    for scale, unit in ((1e15, "PFLOP/s"), (1e12, "TFLOP/s"), (1e9, "GFLOP/s"), (1e6, "MFLOP/s")):
        if abs(x) >= scale:  # type: ignore[arg-type]
            return f"{_sig3(x / scale)} {unit}"  # type: ignore[operator]
    return f"{_sig3(x)} FLOP/s"  # type: ignore[arg-type]


def _sig3(v: float) -> str:
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.2f}".rstrip("0").rstrip(".")


def steps(n: int) -> str:
    """100, 500, 1k, 2.5k, 10k: round step counts in a table."""
    if n >= 1000 and n % 100 == 0:
        return f"{n / 1000:g}k"
    return str(n)


def bar(fraction: float | None, width: int = 10) -> str:
    """A text bar of eighth blocks (readable in 16 colours and in monochrome); dots when unknown."""
    if not _known(fraction):
        return "·" * width
    fraction = min(1.0, max(0.0, fraction))  # type: ignore[type-var]
    eighths = int(round(fraction * width * 8))
    full, part = divmod(eighths, 8)
    out = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")
    return out + " " * (width - len(out))
