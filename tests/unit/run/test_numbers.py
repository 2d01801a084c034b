"""Every derived number has one formula: MFU, the eval schedule, ETA, speed, the smoothed loss."""

from __future__ import annotations

import dataclasses
import math

import pytest
from support.fake_run import iteration, run_started

from tuigpt.run.events import EvalIntervalChanged, EvalResult, HistoryLoaded, IterationStats, RunStarted
from tuigpt.run.numbers import (SPEED_WINDOW, WARMUP_ITERS, Ema, RunProgress, SpeedWindow, comm_over_compute,
                                eta_seconds, evals_in_run, evals_remaining, mfu, percentile, slowest_over_fastest)


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


def test_an_ema_of_a_thinned_series_decays_per_iteration_as_the_live_one() -> None:
    """A report or a resumed run's history reads the loss every 50 iterations: its line must be where the live
    chart's per-iteration line was, not ~1,000 iterations behind."""
    live, thinned = Ema(), Ema()
    losses = [3.0] * 1000 + [2.0] * 200  # a drop at iteration 1,000
    for it, x in enumerate(losses, 1):
        live.update(x)
        if it % 50 == 0:
            value = thinned.update(x, steps=50)
    assert value == pytest.approx(live.value, abs=0.02) and value < 2.01


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
        p.observe(iteration(i, time=float(i), ms=9999.0))  # warm-up: left out of the speed
    eta = p.eta()  # but the ETA shows from the first step, rough and saying so
    assert p.ms_per_iter is None and eta is not None and eta.warm_up and eta.steps == WARMUP_ITERS
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


def test_a_planned_runs_eta_is_its_plans_end() -> None:
    """A run that ends at a time showed an ETA of its own (15:20, its range past the budget) beside its plan's
    "done ~15:21:21": one end, the plan's, which the run keeps by re-planning."""
    from tuigpt.run import fmt
    from tuigpt.run.events import PlanUpdated

    p = RunProgress()
    p.observe(dataclasses.replace(run_started(max_iters=2000, start_iter=0), deadline=1608.0))
    p.observe(IterationStats(iter=10, loss=1.0, lr=1e-3, ms_per_iter=100.0, tokens_per_sec=1.0, mfu=None,
                             tokens_seen=100, train_seconds=2.0, time=1002.0))
    assert p.eta() is not None and p.eta().seconds == pytest.approx(606.0)  # before the first plan: the deadline,
    #                                                                         not 2,000 iterations (4m11s of 1m)
    for i in range(1, 40):
        p.observe(IterationStats(iter=i, loss=1.0, lr=1e-3, ms_per_iter=100.0 * (1 + i % 3), tokens_per_sec=1.0,
                                 mfu=None, tokens_seen=10 * i, train_seconds=0.2 * i, time=1000.0 + 0.2 * i))
    p.observe(PlanUpdated(iter=39, total_iters=3000, cooldown_iter=2400, cooldown_at=1400.0, end_at=1607.8,
                          deadline=1608.0, kind="budget", length=600.0, step_ms=200.0, step_spread=0.3, reason="start"))
    eta = p.eta()
    assert eta is not None and eta.seconds == pytest.approx(1607.8 - 1007.8)
    assert fmt.eta(eta) == "10m00s"  # no range of its own: the plan ends on time or says it moved
    # a plan that grew by a few steps without a plan line: the count never reads past its end (4,740/4,734)
    p.observe(IterationStats(iter=3003, loss=1.0, lr=1e-4, ms_per_iter=100.0, tokens_per_sec=1.0, mfu=None,
                             tokens_seen=30030, train_seconds=600.0, time=1607.0))
    assert (p.iteration, p.max_iters) == (3003, 3003)


def test_ranks_share_an_iteration_without_changing_its_tokens() -> None:
    from tuigpt.run.numbers import BatchSplit, split_batch

    assert split_batch(12, 4, 2) == BatchSplit(12, 2)  # nanoGPT's way: the accumulation is shared
    assert split_batch(64, 1, 2) == BatchSplit(32, 1)  # every shipped config on --nproc 2: the micro-batch is
    assert split_batch(12, 4, 3) == BatchSplit(8, 2)  # the fewest micro-steps with an even, no larger micro-batch
    for batch, accumulation, ranks in ((64, 1, 2), (12, 4, 3), (12, 3, 2), (32, 8, 4), (6, 1, 3)):
        split = split_batch(batch, accumulation, ranks)
        assert split is not None and split.micro_batch <= batch
        assert split.micro_batch * split.micro_steps * ranks == batch * accumulation
    assert split_batch(12, 1, 5) is None and split_batch(1, 1, 2) is None


def test_a_batch_that_cannot_be_shared_names_the_flags_that_fix_it() -> None:
    from tuigpt.run.numbers import split_batch, unsplittable_fix

    text = unsplittable_fix(12, 1, 5)
    assert "12 sequences per iteration cannot be shared evenly by 5 ranks" in text
    for flag in ("--batch_size=10", "--batch_size=15", "--gradient_accumulation_steps=5"):
        assert flag in text
        key, value = flag[2:].split("=")
        batch, accumulation = (int(value), 1) if key == "batch_size" else (12, int(value))
        assert split_batch(batch, accumulation, 5) is not None  # each suggested fix really works
    assert "--batch_size=0" not in unsplittable_fix(1, 1, 2)
