"""The target-loss projection: the power-law fit, and the tracker every front end projects from."""

from __future__ import annotations

import pytest

from tuigpt.run.events import EvalResult, HistoryLoaded, IterationStats, RunStarted
from tuigpt.run.numbers import fit_power_law, power_law_crossing
from tuigpt.run.projection import NOT_CONVERGING, TargetTracker

TPI = 1000  # tokens per iteration


def started() -> RunStarted:
    return RunStarted(run_name="r", run_dir="d", config_path=None, config={"log_interval": 10}, n_params=1,
                      device="cpu", dtype="float32", dtype_reason="", start_iter=0, max_iters=10_000,
                      tokens_per_iter=TPI, flops_per_token=1, peak_flops=None, peak_label="", eval_interval=250,
                      resumed=False)


def law(tokens: float) -> float:
    return 1.2 + 40.0 * tokens ** -0.35


def stats(i: int, loss: float) -> IterationStats:
    return IterationStats(iter=i, loss=loss, lr=1e-3, ms_per_iter=10.0, tokens_per_sec=1e5, mfu=None,
                          tokens_seen=i * TPI, train_seconds=i / 100)


def test_the_fit_recovers_a_power_law_with_a_floor() -> None:
    xs = [1e4 * k for k in range(1, 60)]
    e, a, alpha = fit_power_law(xs, [law(x) for x in xs])
    assert e == pytest.approx(1.2, abs=0.07) and alpha == pytest.approx(0.35, rel=0.2)
    crossing = power_law_crossing((e, a, alpha), 1.5)
    assert crossing == pytest.approx((0.3 / 40.0) ** (-1 / 0.35), rel=0.15)
    assert power_law_crossing((e, a, alpha), 1.1) is None  # below the floor: never
    assert fit_power_law([1.0, 2.0], [3.0, 2.0]) is None  # too few points


def test_val_curve_is_projected_with_a_range_that_holds_the_truth() -> None:
    tracker = TargetTracker()
    tracker.observe(started())
    for i in range(10, 2001, 10):
        tracker.observe(stats(i, law(i * TPI) + 0.3))  # train runs above val here: the val fit must be used
        if i % 100 == 0:
            tracker.observe(EvalResult(iter=i, train_loss=0, val_loss=law(i * TPI), best_val_loss=0, is_best=True,
                                       seconds=1.0))
    truth = next(i for i in range(2000, 10**7, 10) if law(i * TPI) <= 1.35)
    p = tracker.project(1.35)
    assert p.basis == "val" and p.reached_at is None and p.why == ""
    assert p.iter == pytest.approx(truth, rel=0.1)
    assert p.iter_lo <= p.iter <= p.iter_hi


def test_reached_rising_and_too_early_are_said_so() -> None:
    tracker = TargetTracker()
    assert tracker.project(1.5).why == "no loss yet"
    tracker.observe(HistoryLoaded(events=[started(), stats(10, 3.0), stats(20, 2.9)]))
    assert "too few points" in tracker.project(1.5).why
    for i in range(30, 400, 10):
        tracker.observe(stats(i, 2.9 - 0.001 * i))
    assert tracker.project(2.8).reached_at is not None
    rising = TargetTracker()
    rising.observe(started())
    for i in range(10, 400, 10):
        rising.observe(stats(i, 2.0 + 0.002 * i))
    p = rising.project(1.5)
    assert p.iter is None and p.why == NOT_CONVERGING


def test_a_rewind_replaces_the_points_it_went_back_over() -> None:
    tracker = TargetTracker()
    tracker.observe(started())
    for i in range(10, 210, 10):
        tracker.observe(stats(i, 3.0))
    for i in range(110, 160, 10):
        tracker.observe(stats(i, 2.0))
    assert [p[2] for p in tracker.train][-6:] == [100, 110, 120, 130, 140, 150]
