"""The learning-rate schedule."""

from __future__ import annotations

import pytest

from tuigpt.engine.schedule import lr_at

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
