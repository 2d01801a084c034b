"""The run model: its bounded loss curve and derived numbers (EMA, speed, ETA), what it words, without Textual."""

from __future__ import annotations

import threading
import time

import pytest

from tuigpt.run.events import CheckpointWritten, EvalResult, HistoryLoaded, IterationStats, Notice
from tuigpt.run.numbers import WARMUP_ITERS
from tuigpt.run.model import RunModel
from tuigpt.run.series import DownsampledSeries
from support.fake_run import iteration, run_started


def test_a_million_points_stay_bounded_and_span_the_whole_run() -> None:
    series = DownsampledSeries(recent=2000, max_coarse=2000)
    started = time.perf_counter()
    for i in range(1_000_000):
        series.append(i, 1.0, 1.0)
    assert time.perf_counter() - started < 10
    assert len(series) <= 2000 + 2000 + 1
    whole = series.whole()
    assert len(whole) <= 2002
    assert whole[0][0] == 0 and whole[-1][0] == 999_999
    assert [p[0] for p in whole] == sorted(p[0] for p in whole)
    recent = series.recent()
    assert len(recent) == 2000 and recent[0][0] == 998_000 and recent[-1][0] == 999_999


def _losses(model: RunModel, points) -> None:  # noqa: ANN001
    for i, loss in points:
        model.record(IterationStats(iter=i, loss=loss, lr=0.0, ms_per_iter=1.0, tokens_per_sec=1.0, mfu=None,
                                    tokens_seen=i, train_seconds=0.0, time=0.0), words=False)


def test_the_models_loss_curve_is_bounded_too() -> None:
    model = RunModel()
    _losses(model, ((i, 3.0 - i * 1e-6) for i in range(200_000)))
    view = model.snapshot().loss
    assert len(view.whole) <= 2002
    assert view.whole[0][0] == 0 and view.whole[-1][0] == 199_999
    assert len(view.recent) == 500 and view.recent[-1][0] == 199_999


def test_downsampling_averages_buckets() -> None:
    series = DownsampledSeries(recent=4, max_coarse=4)
    for i in range(6):
        series.append(i, float(i), float(i))
    # the 4th point filled the view: pairs merged, buckets of 2 since; the last point closes the view
    assert series.stride == 2
    assert [p[:2] for p in series.whole()] == [(0, 0.5), (2, 2.5), (4, 4.5), (5, 5.0)]
    series.append(6, 6.0, 6.0)
    assert [p[:2] for p in series.whole()] == [(0, 0.5), (2, 2.5), (4, 4.5), (6, 6.0)]  # half a bucket


def test_rewinding_iterations_truncate_the_curve() -> None:
    series = DownsampledSeries(recent=100, max_coarse=100)
    for i in range(10):
        series.append(i, 1.0, 1.0)
    series.append(5, 2.0, 2.0)  # a resume from an older checkpoint
    assert [p[0] for p in series.recent()] == [0, 1, 2, 3, 4, 5]
    assert series.recent()[-1][1] == 2.0
    assert [p[0] for p in series.whole()] == [0, 1, 2, 3, 4, 5]


def test_max_coarse_must_be_even() -> None:
    with pytest.raises(ValueError):
        DownsampledSeries(max_coarse=3)


def test_ema_is_debiased_and_smooths() -> None:
    model = RunModel()
    _losses(model, [(0, 4.0), (1, 2.0)])
    smooth = [p[2] for p in model.snapshot().loss.whole]
    assert smooth[0] == pytest.approx(4.0)
    assert 2.0 < smooth[1] < 4.0


def test_history_loaded_records_are_drawn_and_live_points_continue() -> None:
    model = RunModel()
    events = [iteration(i, time=float(i)) for i in range(100)]
    events.insert(51, EvalResult(iter=50, train_loss=2.9, val_loss=3.1, best_val_loss=3.1, is_best=True, seconds=1.0))
    events.append(Notice(level="info", message="not drawn"))
    model.record(HistoryLoaded(events=events, time=0.0))
    model.record(iteration(100, time=1.0, start_iter=100))
    view = model.snapshot().loss
    assert view.whole[0][0] == 0 and view.whole[-1][0] == 100
    assert view.evals == [(50, 2.9, 3.1, None, None)]  # no bits per byte in this record
    assert view.best_eval == (50, 2.9, 3.1, None, None)


def test_averages_skip_the_warm_up_and_eval_time_adds_up() -> None:
    model = RunModel()
    model.record(run_started(time=0.0))
    for i in range(WARMUP_ITERS):
        model.record(IterationStats(iter=i, loss=3.0, lr=1e-3, ms_per_iter=1000.0, tokens_per_sec=1.0, mfu=0.01, tokens_seen=0, train_seconds=0.0, time=0.0))
    assert model.snapshot().progress.tokens_per_sec_avg is None
    for i in range(WARMUP_ITERS, WARMUP_ITERS + 3):
        model.record(IterationStats(iter=i, loss=3.0, lr=1e-3, ms_per_iter=10.0, tokens_per_sec=100.0, mfu=0.4, tokens_seen=0, train_seconds=0.0, time=0.0))
    model.record(EvalResult(iter=10, train_loss=1.0, val_loss=1.2, best_val_loss=1.2, is_best=True, seconds=3.0, time=0.0))
    model.record(EvalResult(iter=20, train_loss=1.0, val_loss=1.3, best_val_loss=1.2, is_best=False, seconds=1.0, time=0.0))
    model.record(CheckpointWritten(iter=20, path="x.pt", reason="eval", seconds=0.5, time=0.0))
    snap = model.snapshot()
    view = snap.progress
    assert view.tokens_per_sec_avg == pytest.approx(100.0)
    assert view.mfu_avg == pytest.approx(0.4)
    assert view.mean_eval_seconds == pytest.approx(2.0)
    assert view.checkpoint_seconds == pytest.approx(0.5)
    assert snap.loss.best_eval == (10, 1.0, 1.2, None, None)


def test_evals_are_thinned_not_unbounded() -> None:
    model = RunModel(max_evals=100)
    for i in range(1000):
        model.record(EvalResult(iter=i, train_loss=1.0, val_loss=2.0 - i * 1e-4, best_val_loss=0.0, is_best=True, seconds=0.0, time=0.0))
    view = model.snapshot().loss
    assert len(view.evals) <= 101
    assert view.evals[0][0] == 0 and view.evals[-1][0] == 999
    assert view.best_eval is not None and view.best_eval[0] == 999


def test_appending_from_another_thread_while_reading() -> None:
    model = RunModel(recent=100, max_coarse=100)
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 200_000:
            model.record(IterationStats(iter=i, loss=1.0, lr=0.0, ms_per_iter=1.0, tokens_per_sec=1.0, mfu=None, tokens_seen=i, train_seconds=0.0, time=0.0))
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(200):
            view = model.snapshot().loss
            iters = [p[0] for p in view.whole]
            assert iters == sorted(iters)
    finally:
        stop.set()
        thread.join()


def test_the_loss_version_moves_only_when_the_curve_changes() -> None:
    model = RunModel()
    v = model.snapshot().loss.version
    model.record(Notice(level="info", message="hello", time=0.0))
    assert model.snapshot().loss.version == v
    model.record(iteration(0, time=0.0))
    assert model.snapshot().loss.version == v + 1


def test_an_interval_asked_for_counts_until_the_trainer_confirms_it() -> None:
    from tuigpt.run.commands import SetEvalInterval
    from tuigpt.run.events import EvalIntervalChanged

    model = RunModel()
    assert model.snapshot().schedule.current is None  # not started: nothing to halve
    model.record(run_started(eval_interval=250, time=0.0))
    model.ask(SetEvalInterval(125))
    schedule = model.snapshot().schedule
    assert (schedule.interval, schedule.requested, schedule.current) == (250, 125, 125)
    model.record(EvalIntervalChanged(eval_interval=125, next_eval_iter=375, time=0.0))
    schedule = model.snapshot().schedule
    assert (schedule.interval, schedule.requested, schedule.next_eval) == (125, None, 375)


def test_pause_and_resume_are_worded_once_even_with_a_checkpoint_in_between() -> None:
    from tuigpt.run.events import RunState, StateChanged

    model = RunModel()
    model.record(run_started(time=0.0))
    said = []
    for state in (RunState.RUNNING, RunState.PAUSED, RunState.CHECKPOINTING, RunState.PAUSED, RunState.RUNNING,
                  RunState.EVALUATING, RunState.RUNNING):
        said += [line.text for line in model.record(StateChanged(state=state, iter=7, time=0.0))]
    assert said == ["paused at iter 7", "resumed at iter 7"]
    assert model.snapshot().state == RunState.RUNNING


def test_an_ending_sets_the_state_from_its_reason_once() -> None:
    from tuigpt.run.events import EndReason, RunFinished, RunState

    model = RunModel()
    model.record(run_started(time=0.0))
    model.record(RunFinished(iter=5, reason="nan", best_val_loss=None, last_val_loss=None, wall_seconds=1.0,
                             train_seconds=1.0, eval_seconds=0.0, checkpoint_seconds=0.0, last_checkpoint=None,
                             tokens_seen=1, time=0.0))
    snap = model.snapshot()
    assert snap.state == RunState.ERROR and snap.outcome.reason is EndReason.NAN


def test_a_foreign_record_is_reported_not_raised() -> None:
    """A watcher may read a metrics.jsonl of another version: a field of the wrong type costs that part of the model
    the event (the Health pane says so), never the front end (the bus would detach it)."""
    model = RunModel()
    model.record(run_started(time=0.0))
    bad = IterationStats(iter=10, loss="high", lr=0.0, ms_per_iter=1.0, tokens_per_sec=1.0, mfu=None,  # type: ignore
                         tokens_seen=0, train_seconds=0.0, time=0.0, grad_norm=1.0, clip_rate=0.1)
    lines = model.record(bad)  # a logged iteration: its line cannot be worded either
    assert [line.level for line in lines] == ["warning"] and "cannot word this IterationStats" in lines[0].text
    snap = model.snapshot()
    assert snap.progress.iteration == 10 and snap.health.error is None and len(snap.health.points) == 1
    model.record(iteration(11, time=0.0))
    assert model.snapshot().loss.recent[-1][0] == 11


def test_a_plan_is_the_runs_length_cooldown_and_end_in_every_view() -> None:
    """A run to a time (issue 23): its newest plan decides where it ends (progress, ETA, the iteration lines), where
    its cooldown starts on the chart, and what the start, plan and status lines say, from one model."""
    import dataclasses

    from tuigpt.run.events import PlanUpdated
    from tuigpt.run.plan import clock
    from tuigpt.ui.widgets.status import time_parts

    model = RunModel()
    start = dataclasses.replace(run_started(max_iters=0), end_kind="budget", end_text="10m",
                                deadline=run_started().time + 600, cooldown_from=None)
    words = [line.text for line in model.record(start)]
    assert "iter 0 | time budget 10m" in words[0] and "max_iters derived from the plan" in words[0]
    now = start.time + 60
    plan = PlanUpdated(iter=100, total_iters=1_500, cooldown_iter=1_200, cooldown_at=now + 400, end_at=now + 530,
                       deadline=start.time + 600, kind="budget", length=600.0, step_ms=40.0, step_spread=0.05,
                       reason="eval", time=now)
    words = [line.text for line in model.record(plan)]
    assert words == [f"plan (at the eval): cooldown from ~{clock(now + 400, now, 600)} (iter 1,200), done "
                     f"~{clock(now + 530, now, 600)} · 1,500 iters · steps 40.0 ms ±5%"]
    line = model.record(IterationStats(iter=1_500, loss=1.5, lr=1e-4, ms_per_iter=40.0, tokens_per_sec=1.0, mfu=None,
                                       tokens_seen=1, train_seconds=60.0, time=now + 1))
    assert line[0].text.startswith("iter 1500/1500 | loss 1.5000")  # the plan's last iteration, printed as the last
    snap = model.snapshot(now + 1)
    assert snap.plan == plan and snap.progress.max_iters == 1_500 and snap.cooldown_from == 1_200
    parts = [text for _, text, _ in time_parts(snap)]
    assert f"cooldown ~{clock(now + 400, now + 1, 600)}, done ~{clock(now + 530, now + 1, 600)}" in parts
    assert dataclasses.replace(snap, plan=None).cooldown_from is None  # the run's own (no WSD here)
