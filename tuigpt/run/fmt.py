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


def eta(e: Any) -> str:
    """A run's time left (run/numbers.py Eta), the same in every view: the likely time and its range ("4m20s
    (4m10s–4m50s)", the range left out when its ends read alike), or "~3m18s (from 1 step)" while only warm-up
    steps are timed."""
    if e is None:
        return "n/a: no step yet"
    if e.warm_up:
        return f"~{duration(e.seconds)} (from {e.steps} step{'s' * (e.steps != 1)})"
    low, high = duration(e.low), duration(e.high)
    return duration(e.seconds) + ("" if low == high else f" ({low}–{high})")


def clock(t: float, now: float | None = None) -> str:
    """A local clock time: 14:32 today, Tue 03:10 within six days, else the date."""
    now = time.time() if now is None else now
    local, today = time.localtime(t), time.localtime(now)
    if local[:3] == today[:3]:
        return time.strftime("%H:%M", local)
    if abs(t - now) < 6 * 86400:
        return time.strftime("%a %H:%M", local)
    return time.strftime("%Y-%m-%d %H:%M", local)


def stamp(t: float) -> str:
    """A date and time that stays true when read later (what a cached measurement says): 2026-11-22 10:32."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


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


def peak_label(label: str, peak_flops: float | None, world_size: int) -> str:
    """What MFU is measured against; with several ranks it is one device's peak (MFU is per device)."""
    if world_size == 1 or not peak_flops:
        return label
    return f"{label} (per device; MFU = all ranks' FLOP/s / {world_size} / this peak)"


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


# ---------------------------------------------------------------- training health


def sig(value: float | None) -> str:
    """Three significant digits (1.23, 0.0456, 7.89e+05); nan/inf spelled out; n/a when unknown."""
    if value is None:
        return NA
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}"


def grad_norm(value: float | None, clip_rate: float | None) -> str:
    """``grad 0.853 (12% clipped)``: the gradient norm before clipping and the share of recent steps clipped."""
    clipped = f" ({clip_rate * 100:.0f}% clipped)" if clip_rate is not None else ""
    return f"grad {sig(value)}{clipped}"


def _groups(layers: list[dict[str, Any]], keys: tuple[str, ...]) -> str:
    return " · ".join(f"{g.get('name', '?')} " + " ".join(sig(g.get(k)) for k in keys) for g in layers)


def nan_report(e: Any) -> list[str]:
    """The lines of a NanDetected: the bad step, its per-group gradient norms, the last good steps, the batch."""
    lines = [f"NaN/Inf {e.cause} at iteration {e.iter:,} (lr {e.lr:.2e}): loss {sig(e.loss)}, grad norm "
             f"{sig(e.grad_norm)} → {e.action}"]
    if e.layers:
        lines.append("  gradient norm per group at that step: " + _groups(e.layers, ("grad",)))
    if e.recent:
        lines.append("  last good steps: " + " · ".join(f"iter {s['iter']:,} loss {sig(s.get('loss'))} grad "
                                                        f"{sig(s.get('grad_norm'))}" for s in e.recent[-4:]))
    if e.recent_layers:
        last = e.recent_layers[-1]
        lines.append(f"  last logged group norms (iter {last['iter']:,}; grad weight update): "
                     + _groups(last["layers"], ("grad", "weight", "update")))
    if e.batch_starts:
        lines.append(f"  batch windows (train token offsets): {', '.join(map(str, e.batch_starts[0][:16]))}"
                     + (" …" if len(e.batch_starts[0]) > 16 or len(e.batch_starts) > 1 else ""))
    return lines


def rewound(e: Any) -> str:
    where = (f"from {e.checkpoint} at iteration {e.iter:,}" if e.checkpoint else
             f"at iteration {e.iter:,} (no checkpoint yet: weights kept, optimizer moments reset)")
    return (f"rewound {e.rewinds} of {e.max_rewinds} after the NaN at iteration {e.from_iter:,}: restarted {where}; "
            f"learning rate now ×{e.lr_scale:g}, batches of iteration(s) {', '.join(map(str, e.skipped))} left out")


def stalled(e: Any) -> str:
    return (f"stalled: no iteration for {e.seconds:.0f} s after iteration {e.iter:,} (threshold {e.threshold_s:.0f} s "
            f"= stall_factor × median step {e.median_ms:.0f} ms, or stall_min_seconds): a hung collective or data "
            f"read? (py-spy dump --pid PID shows where)")


def diverging(e: Any) -> str:
    return (f"loss trending up: median {e.loss_before:.4f} → {e.loss_now:.4f} over the last {e.window} iterations "
            f"(iter {e.iter:,}); lower learning_rate or raise warmup_iters if it goes on")


def target_short(p: Any, seconds: float | None = None, now: float | None = None) -> str:
    """A TargetProjection for a status line: ``loss 1.5 ≈ iter 7,200 (6.1k–8.9k) 14:05``."""
    head = f"loss {p.target:g}"
    if p.reached_at is not None:
        return f"{head} reached @{p.reached_at:,}"
    if p.iter is None:
        return f"{head}: {p.why}"
    spread = f" ({count(p.iter_lo)}–{count(p.iter_hi)})" if p.iter_hi != p.iter_lo else ""
    when = f" {clock(now + seconds, now)}" if seconds is not None and now is not None else ""
    return f"{head} ≈ iter {p.iter:,}{spread}{when}"


def target(p: Any, max_iters: int | None = None, seconds: tuple[float | None, ...] | None = None,
           now: float | None = None) -> str:
    """A TargetProjection: ``loss 1.5 ≈ iter 7,200 (6,100–8,900) in 1h20m (1h05m–1h50m) → 14:05 [val fit]``,
    ``loss 1.5 reached @5,300``, or ``loss 1.5: not converging towards it at this rate``."""
    head = f"loss {p.target:g}"
    if p.reached_at is not None:
        return f"{head} reached @{p.reached_at:,}"
    if p.iter is None:
        return f"{head}: {p.why}"
    text = f"{head} ≈ iter {p.iter:,}" + (f" ({p.iter_lo:,}–{p.iter_hi:,})" if p.iter_hi != p.iter_lo else "")
    if max_iters and p.iter > max_iters:
        text += f", past max_iters {max_iters:,}"
    if seconds and seconds[0] is not None:
        mid, lo, hi = (list(seconds) + [None, None])[:3]
        text += f" in {duration(mid)}"
        if lo is not None and hi is not None and duration(lo) != duration(hi):
            text += f" ({duration(lo)}–{duration(hi)})"
        if now is not None:
            text += f" → {clock(now + mid, now)}"  # type: ignore[operator]
    return text + f" [{p.basis} fit]"


def short_reason(why: str | None, width: int = 40) -> str:
    """Why a value is n/a, short enough for a pane: the reason without its parenthesis (and, when still too
    long, without what follows a colon), cut to ``width``."""
    text = (why or "not reported").split(" (", 1)[0].strip() or "not reported"
    if len(text) > width and ": " in text:
        text = text.split(": ", 1)[0]
    if len(text) <= width:
        return text
    cut = text[: max(1, width - 1)]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"  # at a word boundary


def na_why(value: str, why: str | None, width: int = 40) -> str:
    """A shown value, or "n/a: <short reason>" when it is n/a."""
    return value if value != NA else f"{NA}: {short_reason(why, max(4, width - len(NA) - 2))}"


def size_pair(used: float | None, total: float | None) -> str:
    """used/total in one unit when they share it: 41.0/80.0 GiB (else 512.0 MiB/80.0 GiB)."""
    a, b = size(used), size(total)
    if a == NA or b == NA:
        return f"{a}/{b}"
    (av, au), (bv, bu) = a.split(" ", 1), b.split(" ", 1)
    return f"{av}/{bv} {bu}" if au == bu else f"{a}/{b}"


def clip(text: str, limit: int = 80) -> str:
    """Text cut to ``limit`` characters with an ellipsis: an error line never repeats unbounded input."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def shown(value: object, limit: int = 80) -> str:
    """A value as an error line shows it: its repr, clipped (a million-item YAML list stays one short line)."""
    try:
        text = repr(value) if not isinstance(value, (list, dict, tuple, set)) or len(value) <= 20 else \
            f"<a {type(value).__name__} of {len(value):,} items>"
    except (RecursionError, ValueError):  # a self-referencing value; an int too long to print
        text = f"<a {type(value).__name__}>"
    return clip(text, limit)
