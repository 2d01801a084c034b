"""checkpoint_every_minutes: last.pt every N minutes of training whatever the eval interval, so a `kill -9` loses
at most that much (issue 27: on the baby GPT, whose evals are far apart, a kill lost hours)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from support import stop_process, wait_for
from support.live_run import start_run, write_config

from tuigpt.engine.checkpoint import load_checkpoint
from tuigpt.run.metrics_log import read_metrics

MINUTES = 0.03  # 1.8 s: several timed checkpoints in a test that lasts seconds


def test_a_kill_after_a_timed_checkpoint_loses_at_most_the_interval(tmp_path: Path) -> None:
    config = write_config(tmp_path, log_interval=1, eval_interval=1_000_000_000, checkpoint_every_minutes=MINUTES)
    run_dir = tmp_path / "runs" / "live"
    metrics = run_dir / "metrics.jsonl"
    run = start_run(config)
    try:
        def timed() -> list[dict]:
            assert run.poll() is None, run.output()
            return [r for r in read_metrics(metrics) if r["type"] == "checkpoint" and r["reason"] == "timer"]

        wait_for(lambda: len(timed()) >= 2, 120, "two timed checkpoints, with no eval to write one")
        last_timed = timed()[-1]["iter"]
        wait_for(lambda: max(r["iter"] for r in read_metrics(metrics) if r["type"] == "iter") > last_timed + 20, 60,
                 "training past the last timed checkpoint")
        os.kill(run.pid, signal.SIGKILL)
        killed_at = time.time()
        run.wait(30)
    finally:
        stop_process(run)
    records = read_metrics(metrics)
    checkpoints = [r for r in records if r["type"] == "checkpoint"]
    assert {r["reason"] for r in checkpoints} == {"timer"}  # the untrained eval writes none: evals never did
    saved = load_checkpoint(run_dir / "last.pt")
    assert saved["iter_num"] == checkpoints[-1]["iter"]  # last.pt is the last checkpoint reported
    # what the kill lost: the training since that checkpoint, at most the interval (and the step under way)
    lost = killed_at - checkpoints[-1]["time"]
    step = max(r["ms_per_iter"] for r in records if r["type"] == "iter") / 1000.0
    assert lost <= MINUTES * 60 + step + 1.0, (lost, step)
    gaps = [b["time"] - a["time"] for a, b in zip(checkpoints, checkpoints[1:])]
    assert all(gap <= MINUTES * 60 + step + 1.0 for gap in gaps), gaps
