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
