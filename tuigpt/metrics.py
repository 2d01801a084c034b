"""Derived numbers shown to the user, as small pure functions with their formulas.

Front ends compute tokens/s averages, ETA and smoothed loss here so the TUI,
the headless lines and benchmarks agree.
"""

from __future__ import annotations

import math
from collections import deque


def mfu(flops_per_token: float, tokens_per_sec: float, peak_flops: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s (FLOPs per token × tokens/s) over the device's peak."""
    if not peak_flops or peak_flops <= 0:
        return None
    return flops_per_token * tokens_per_sec / peak_flops


def lr_at(it: int, *, learning_rate: float, min_lr: float, warmup_iters: int, lr_decay_iters: int, decay_lr: bool) -> float:
    """Linear warmup from 0 to learning_rate, then cosine decay to min_lr at lr_decay_iters, then min_lr."""
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it >= lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 → 0
    return min_lr + coeff * (learning_rate - min_lr)


class Ema:
    """Exponential moving average, bias-corrected so early values are not pulled toward 0."""

    def __init__(self, beta: float = 0.9) -> None:
        self.beta = beta
        self._value = 0.0
        self._steps = 0

    def update(self, x: float) -> float:
        self._steps += 1
        self._value = self.beta * self._value + (1 - self.beta) * x
        return self.value

    @property
    def value(self) -> float:
        return self._value / (1 - self.beta ** self._steps) if self._steps else float("nan")


class RateWindow:
    """ms/iter over the last ``window`` iterations, skipping the first ``warmup`` (allocation, compile)."""

    def __init__(self, window: int = 50, warmup: int = 3) -> None:
        self._recent: deque[float] = deque(maxlen=window)
        self._warmup = warmup
        self._seen = 0
        self._total_ms = 0.0
        self._counted = 0

    def add(self, ms: float) -> None:
        self._seen += 1
        if self._seen <= self._warmup:
            return
        self._recent.append(ms)
        self._total_ms += ms
        self._counted += 1

    @property
    def recent_ms(self) -> float | None:
        return sum(self._recent) / len(self._recent) if self._recent else None

    @property
    def average_ms(self) -> float | None:
        return self._total_ms / self._counted if self._counted else None


def eta_seconds(remaining_iters: int, ms_per_iter: float | None, remaining_evals: int = 0,
                seconds_per_eval: float = 0.0) -> float | None:
    """Training time left plus the evaluations still to come."""
    if ms_per_iter is None:
        return None
    return remaining_iters * ms_per_iter / 1000.0 + remaining_evals * seconds_per_eval


def format_duration(seconds: float | None) -> str:
    """1h02m, 3m05s, 12s."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def format_count(x: float) -> str:
    """20.7k, 1.2M, 950."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"
