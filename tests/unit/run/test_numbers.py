"""Every derived number has one formula: MFU, the eval schedule, ETA, speed, the smoothed loss."""

from __future__ import annotations

import math

import pytest
from support.fake_run import iteration, run_started

from tuigpt.run.events import EvalIntervalChanged, EvalResult, HistoryLoaded, IterationStats, RunStarted
from tuigpt.run.numbers import (SPEED_WINDOW, WARMUP_ITERS, Ema, RunProgress, SpeedWindow, comm_over_compute,
                                eta_seconds, evals_in_run, evals_remaining, measured_speedup, mfu, percentile,
                                predicted_speedup, slowest_over_fastest, speedup_verdict)


def test_mfu_is_achieved_over_peak() -> None:
    # 1e6 FLOPs/token at 1e5 tokens/s = 1e11 FLOP/s against a 2e11 peak
    assert mfu(1e6, 1e5, 2e11) == pytest.approx(0.5)
    assert mfu(1e6, 1e5, None) is None
    assert mfu(1e6, 1e5, 0.0) is None


def test_evals_remaining_counts_the_final_eval_too() -> None:
    # the trainer evaluates at every multiple of the interval and at max_iters
    assert evals_remaining(0, 1000, 250) == 4  # 250, 500, 750, 1000
    assert evals_remaining(0, 1100, 250) == 5  # ... and the final one at 1100
    assert evals_remaining(999, 1000, 250) == 1
    assert evals_remaining(1000, 1000, 250) == 0
    assert evals_remaining(260, 1100, 250) == 4  # 500, 750, 1000, 1100
    assert evals_in_run(1000, 250) == 5  # the untrained eval at 0 as well


def test_eta_adds_the_evals_still_to_come() -> None:
    assert eta_seconds(100, 50.0, evals_left=2, seconds_per_eval=1.5) == pytest.approx(8.0)
    assert eta_seconds(100, None) is None
    assert eta_seconds(-5, 50.0) == 0.0


def test_ema_is_bias_corrected() -> None:
    ema = Ema(0.9)
    assert ema.update(4.0) == pytest.approx(4.0)  # not 0.4: debiased from the first value on
    assert ema.update(4.0) == pytest.approx(4.0)
    assert math.isnan(Ema().value)


def test_speed_is_the_median_of_the_window_after_warmup() -> None:
    speed = SpeedWindow(window=3, warmup=2)
    for ms in (1000, 900, 10, 20, 500):
        speed.add(ms)
    assert speed.ms_per_iter == pytest.approx(20)  # median of 10, 20, 500: the slow one moves nothing
    speed.new_session()
    speed.add(5000)  # a resumed session warms up again
    assert speed.ms_per_iter == pytest.approx(20)


def test_run_progress_eta_counts_history_speed_and_evals() -> None:
    p = RunProgress()
    p.observe(run_started(max_iters=1000, eval_interval=100, start_iter=0))
    for i in range(1, WARMUP_ITERS + 1):
        p.observe(iteration(i, time=float(i), ms=9999.0))  # warm-up: left out
    assert p.ms_per_iter is None and p.eta_seconds() is None
    for i in range(WARMUP_ITERS + 1, 101):
        p.observe(iteration(i, time=float(i), ms=100.0))
    p.observe(EvalResult(iter=100, train_loss=2.0, val_loss=2.1, best_val_loss=2.1, is_best=True, seconds=4.0))
    # 900 iterations at 100 ms + 9 evals (200..1000) at 4 s
    assert p.eta_seconds() == pytest.approx(90.0 + 36.0)
    p.observe(EvalIntervalChanged(eval_interval=300, next_eval_iter=300))
    assert p.eta_seconds() == pytest.approx(90.0 + 4 * 4.0)  # 300, 600, 900 and the final 1000


def test_a_watcher_gets_speed_and_eval_time_from_history() -> None:
    past = [iteration(i, time=float(i), ms=50.0) for i in range(1, SPEED_WINDOW + 1)]
    past.append(EvalResult(iter=SPEED_WINDOW, train_loss=2.0, val_loss=2.0, best_val_loss=2.0, is_best=True,
                           seconds=2.0))
    p = RunProgress()
    p.observe(run_started(max_iters=200, eval_interval=100))
    p.observe(HistoryLoaded(events=past))
    assert p.ms_per_iter == pytest.approx(50.0) and p.seconds_per_eval == pytest.approx(2.0)
    assert p.iteration == SPEED_WINDOW
    assert p.eta_seconds() == pytest.approx(150 * 0.05 + 2 * 2.0)


def test_cluster_balance() -> None:
    ranks = [{"data_ms": 1.0, "compute_ms": 9.0, "comm_ms": 2.0}, {"data_ms": 1.0, "compute_ms": 14.0, "comm_ms": 1.0}]
    assert slowest_over_fastest(ranks) == pytest.approx(1.5)
    assert comm_over_compute(ranks) == pytest.approx(3.0 / 23.0)


def test_percentile_interpolates() -> None:
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile([5], 90) == 5
    with pytest.raises(ValueError):
        percentile([], 50)


def test_run_started_resets_iteration_only_on_resume() -> None:
    p = RunProgress()
    p.observe(run_started(max_iters=100, start_iter=0))
    p.observe(IterationStats(iter=10, loss=1.0, lr=1e-3, ms_per_iter=5.0, tokens_per_sec=1.0, mfu=None,
                             tokens_seen=10, train_seconds=0.1, time=1.0))
    assert p.iteration == 10
    assert isinstance(run_started(), RunStarted)


def test_two_equal_ranks_on_a_free_link_come_close_to_twice_one() -> None:
    # 4 micro-steps of 100 ms + a 10 ms update alone; 2 per rank + the same update, 1 ms of syncs
    p = predicted_speedup(100.0, 100.0, 2, 4, update_ms=10.0, exposed_comm_ms=0.0, sync_ms=1.0)
    assert p.one_ms == 410.0 and p.ranks_ms == 211.0
    assert p.speedup == pytest.approx(410 / 211)
    assert speedup_verdict(p.speedup, 2, 2) == "2 nodes ≈ 1.94× — worth it"
    assert predicted_speedup(100.0, 100.0, 1, 4, 10.0, 0.0, 0.0).speedup == 1.0


def test_a_slow_link_or_a_straggler_can_make_two_machines_slower_than_one() -> None:
    slow_link = predicted_speedup(100.0, 100.0, 2, 2, update_ms=10.0, exposed_comm_ms=150.0, sync_ms=5.0)
    assert slow_link.speedup == pytest.approx(210 / 265)
    assert speedup_verdict(slow_link.speedup, 2, 2) == "the link costs more than it saves: 0.79×"
    # the group steps at the slowest rank's pace; one process is the fastest machine alone
    straggler = predicted_speedup(100.0, 190.0, 2, 2, update_ms=10.0, exposed_comm_ms=0.0, sync_ms=0.0)
    assert straggler.speedup == pytest.approx(210 / 200)
    assert speedup_verdict(straggler.speedup, 2, 1).startswith("2 ranks ≈ 1.05× — no real gain")


def test_measured_speedup_is_one_process_over_the_ranks() -> None:
    assert measured_speedup(200.0, 125.0) == 1.6
