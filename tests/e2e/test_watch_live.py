"""`tuigpt watch` on real runs in subprocesses: follow, steer with every command, survive a SIGKILL."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from support import Recorder, until
from support.live_run import start_run, wait_for, wait_for_socket, write_config

from tuigpt.control.follower import WatchController
from tuigpt.control.wire import ping
from tuigpt.run.commands import CheckpointNow, Sample, SetEvalInterval, Stop, TogglePause
from tuigpt.run.events import (CheckpointWritten, EvalIntervalChanged, HistoryLoaded, IterationStats, Notice,
                               RunFailed, RunFinished, RunStarted, RunState, SampleGenerated, StateChanged)
from tuigpt.run.status import summarize
from tuigpt.ui.app import TuiGptApp


def test_watch_a_live_run_and_steer_it_with_every_key(tmp_path: Path) -> None:
    proc = start_run(write_config(tmp_path))
    run_dir = tmp_path / "runs" / "live"
    watcher = WatchController(run_dir)
    seen = Recorder()
    watcher.subscribe(seen)
    try:
        wait_for_socket(run_dir, proc)
        watcher.start()
        assert seen.wait(RunStarted).run_name == "live"
        assert any(isinstance(e, IterationStats) for e in seen.wait(HistoryLoaded).events), "history appears"
        wait_for(lambda: watcher.connected, 30, "connection")
        first = seen.wait(IterationStats).iter
        seen.wait(IterationStats, lambda e: e.iter > first + 5)  # live updates arrive

        watcher.send(TogglePause())
        paused = seen.wait(StateChanged, lambda e: e.state == RunState.PAUSED)
        seen.wait(Notice, lambda e: e.message == "watcher 1: pause/resume")  # logged in the trainer's process
        watcher.send(SetEvalInterval(7))
        assert seen.wait(EvalIntervalChanged, lambda e: e.eval_interval == 7).eval_interval == 7
        watcher.send(CheckpointNow())
        ckpt = seen.wait(CheckpointWritten, lambda e: e.reason == "command")
        assert Path(ckpt.path).name == "last.pt" and (run_dir / "last.pt").exists()
        watcher.send(Sample(max_new_tokens=16))
        assert seen.wait(SampleGenerated).text, "sample text comes back to the watcher"
        n_iters = len(seen.of(IterationStats))
        assert max(e.iter for e in seen.of(IterationStats)) <= paused.iter + 1, "paused: no progress"
        watcher.send(TogglePause())
        seen.wait(StateChanged, lambda e: e.state == RunState.RUNNING and e.time > paused.time)
        wait_for(lambda: len(seen.of(IterationStats)) > n_iters, 30, "iterations after resume")

        watcher.send(Stop(save=True))
        done = seen.wait(RunFinished)
        assert done.reason == "stopped" and done.last_checkpoint
        assert watcher.wait(5)
        assert proc.wait(60) == 0
        assert not (run_dir / "control.sock").exists()
        assert len(seen.of(RunFinished)) == 1, "the socket and the file tail never double an event"
        log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        notices = [r["message"] for r in log if r["type"] == "notice"]
        for what in ("pause/resume", "eval interval → 7", "checkpoint now", "sample now", "stop and save a checkpoint"):
            assert f"watcher 1: {what}" in notices, what
    finally:
        watcher.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # the finished run, watched afterwards: history at once, says it is over
    later = WatchController(run_dir)
    seen_later = Recorder()
    later.subscribe(seen_later)
    later.start()
    assert later.wait(10)
    assert seen_later.of(RunFinished)[0].reason == "stopped"
    past = seen_later.of(HistoryLoaded)[0].events
    assert any(isinstance(e, SampleGenerated) for e in past), "the samples are part of the history"
    later.close()

    # the same in the app: the monitor shows STOPPED with the run's curve
    app = TuiGptApp(WatchController(run_dir), watching=True)

    async def look() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.outcome is not None)
            app.redraw()
            await pilot.pause()
            assert app.state == RunState.STOPPED
            assert app.query_one("#loss").drawn_range is not None
            await pilot.press("q")  # the run is over: q quits at once
            await pilot.pause()

    asyncio.run(look())
    assert app.return_code == 0


def test_killed_run_is_reported_and_its_stale_socket_cleaned_by_the_next(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    proc = start_run(config)
    run_dir = tmp_path / "runs" / "live"
    watcher = WatchController(run_dir)
    seen = Recorder()
    watcher.subscribe(seen)
    resumed = None
    try:
        wait_for_socket(run_dir, proc)
        watcher.start()
        wait_for(lambda: watcher.connected, 30, "connection")
        watcher.send(CheckpointNow())
        seen.wait(CheckpointWritten, lambda e: e.reason == "command")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        failed = seen.wait(RunFailed, timeout=30)
        assert failed.message.startswith("not running") and failed.last_checkpoint
        assert (run_dir / "control.sock").exists(), "SIGKILL leaves the socket file behind"
        watcher.send(TogglePause())  # goes nowhere, says so
        seen.wait(Notice, lambda e: "not connected" in e.message)

        assert summarize(run_dir, ping).state == "interrupted"

        resumed = start_run(config, "--resume")
        wait_for(lambda: b"stale control socket" in (run_dir / "metrics.jsonl").read_bytes(), 90, "stale cleanup")
        wait_for(lambda: ping(run_dir), 30, "the new run's socket")
        assert summarize(run_dir, ping).state in ("running", "paused")
        resumed.send_signal(signal.SIGTERM)
        assert resumed.wait(60) == 128 + signal.SIGTERM
        assert not (run_dir / "control.sock").exists()
    finally:
        watcher.close()
        for p in (proc, resumed):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
