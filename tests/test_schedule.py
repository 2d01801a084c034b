"""Learning-rate schedule and derived metrics."""

from __future__ import annotations

import math

import pytest

from tuigpt.metrics import Ema, RateWindow, eta_seconds, format_duration, lr_at, mfu

SCHED = dict(learning_rate=1e-3, min_lr=1e-4, warmup_iters=10, lr_decay_iters=110, decay_lr=True)


def test_warmup_is_linear_up_to_the_peak() -> None:
    lrs = [lr_at(i, **SCHED) for i in range(10)]
    assert lrs[0] == pytest.approx(1e-3 / 11)
    assert all(b > a for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(1e-3 * 10 / 11)


def test_cosine_decay_reaches_min_lr_and_stays() -> None:
    assert lr_at(10, **SCHED) == pytest.approx(1e-3)
    assert lr_at(60, **SCHED) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))  # halfway: mean of peak and floor
    assert lr_at(110, **SCHED) == pytest.approx(1e-4)
    assert lr_at(5000, **SCHED) == pytest.approx(1e-4)
    decay = [lr_at(i, **SCHED) for i in range(10, 111)]
    assert all(b <= a for a, b in zip(decay, decay[1:]))


def test_constant_when_decay_is_off() -> None:
    assert lr_at(0, **{**SCHED, "decay_lr": False}) == 1e-3
    assert lr_at(100, **{**SCHED, "decay_lr": False}) == 1e-3


def test_mfu_is_achieved_over_peak() -> None:
    # 1e6 FLOPs/token at 1e5 tokens/s = 1e11 FLOP/s against a 2e11 peak
    assert mfu(1e6, 1e5, 2e11) == pytest.approx(0.5)
    assert mfu(1e6, 1e5, None) is None


def test_ema_is_bias_corrected() -> None:
    ema = Ema(0.9)
    assert ema.update(4.0) == pytest.approx(4.0)
    assert ema.update(4.0) == pytest.approx(4.0)
    assert math.isnan(Ema().value)


def test_rate_window_skips_warmup() -> None:
    rates = RateWindow(window=3, warmup=2)
    for ms in (1000, 900, 10, 20, 30, 40):
        rates.add(ms)
    assert rates.recent_ms == pytest.approx(30)
    assert rates.average_ms == pytest.approx(25)


def test_eta_and_durations() -> None:
    assert eta_seconds(100, 50.0, remaining_evals=2, seconds_per_eval=1.5) == pytest.approx(8.0)
    assert eta_seconds(100, None) is None
    assert format_duration(3725) == "1h02m"
    assert format_duration(185) == "3m05s"
    assert format_duration(None) == "n/a"
