"""The follower on a run directory: records become events, torn lines wait, a silent run is reported."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from support import Recorder

from tuigpt.control.follower import WatchController
from tuigpt.run.events import HistoryLoaded, IterationStats, RunFailed, RunStarted, RunState
from tuigpt.run.records import event_from_record


def test_records_round_trip_to_events_and_torn_lines_wait(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    metrics = run_dir / "metrics.jsonl"
    start = {"type": "start", "time": 1.0, "run_name": "r", "run_dir": str(run_dir), "config_path": None, "config": {},
             "n_params": 1, "device": "cpu", "dtype": "float32", "dtype_reason": "", "start_iter": 0, "max_iters": 100,
             "tokens_per_iter": 10, "flops_per_token": 6, "peak_flops": None, "peak_label": "", "eval_interval": 10,
             "resumed": False}
    it = {"type": "iter", "time": 2.0, "iter": 0, "loss": 3.0, "lr": 1e-3, "ms_per_iter": 5.0, "tokens_per_sec": 2000.0,
          "mfu": None, "tokens_seen": 10, "train_seconds": 0.005}
    metrics.write_text(json.dumps(start) + "\n" + json.dumps(it) + "\n")
    assert isinstance(event_from_record(start), RunStarted)
    assert event_from_record({"type": "state", "state": "PAUSED", "iter": 3, "time": 1.0}).state == RunState.PAUSED
    assert event_from_record({"type": "iter", "garbage": 1}) is None
    watcher = WatchController(run_dir, poll=0.05, stale_after=1.5)
    seen = Recorder()
    watcher.subscribe(seen)
    watcher.start()
    seen.wait(HistoryLoaded, timeout=10)
    line = json.dumps(dict(it, iter=1, time=3.0)).encode()
    with open(metrics, "ab") as f:
        f.write(line[:20])  # torn: nothing yet
        f.flush()
        threading.Event().wait(0.3)
        assert not seen.of(IterationStats, lambda e: e.iter == 1)
        f.write(line[20:] + b"\n")
    seen.wait(IterationStats, lambda e: e.iter == 1, timeout=10)
    # no socket and no growth: not running
    assert seen.wait(RunFailed, timeout=10).message.startswith("not running")
    watcher.close()


def test_a_finished_planned_run_is_watched_against_where_its_plan_ended(tmp_path: Path) -> None:
    """`tuigpt watch` on a run that ended at its time: at its end, not at the max_iters cap (it said 692/2,000,
    35%) nor at a plan its last steps outgrew unshown (488/485)."""
    from tuigpt.run.events import EndReason, PlanUpdated, RunFinished
    from tuigpt.run.model import RunModel
    from tuigpt.run.records import event_record

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    start = {"type": "start", "time": 1.0, "run_name": "r", "run_dir": str(run_dir), "config_path": None,
             "config": {}, "n_params": 1, "device": "cpu", "dtype": "float32", "dtype_reason": "", "start_iter": 0,
             "max_iters": 2000, "tokens_per_iter": 10, "flops_per_token": 6, "peak_flops": None, "peak_label": "",
             "eval_interval": 250, "resumed": False}
    plan = PlanUpdated(iter=20, total_iters=485, cooldown_iter=400, cooldown_at=50.0, end_at=60.0, deadline=61.0,
                       kind="budget", length=60.0, step_ms=100.0, step_spread=0.05, reason="start")
    its = [{"type": "iter", "time": 2.0 + i * 0.1, "iter": i, "loss": 3.0, "lr": 1e-3, "ms_per_iter": 100.0,
            "tokens_per_sec": 100.0, "mfu": None, "tokens_seen": 10 * i, "train_seconds": 0.1 * i}
           for i in range(1, 489)]
    finish = RunFinished(iter=488, reason=EndReason.DONE, best_val_loss=1.9, last_val_loss=1.9, wall_seconds=60.0,
                         train_seconds=50.0, eval_seconds=5.0, checkpoint_seconds=1.0, last_checkpoint=None,
                         tokens_seen=4880)
    records = [start, its[0], event_record(plan), *its[1:], event_record(finish)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    watcher = WatchController(run_dir, poll=0.05)
    seen = Recorder()
    watcher.subscribe(seen)
    watcher.start()
    seen.wait(RunFinished, timeout=10)
    watcher.close()
    model = RunModel()
    for event in seen.events:
        model.record(event, words=False)
    progress = model.snapshot().progress
    assert (progress.iteration, progress.max_iters) == (488, 488)
    # the replayed history carries the plan where it came, so `watch`'s lines read against it as they did live
    history = seen.of(HistoryLoaded)[0].events
    assert [type(e).__name__ for e in history[:3]] == ["IterationStats", "PlanUpdated", "IterationStats"]
