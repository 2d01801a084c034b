"""`tuigpt watch`: a WatchController on a real headless run in a subprocess, steering it; killed runs; finished runs."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from pathlib import Path

from live_run import start_run, wait_for, wait_for_socket, write_config

from tuigpt.cli import main
from tuigpt.events import (CheckpointNow, CheckpointWritten, EvalIntervalChanged, Event, HistoryLoaded, IterationStats,
                           Notice, RunFailed, RunFinished, RunStarted, RunState, Sample, SampleGenerated,
                           SetEvalInterval, StateChanged, Stop, TogglePause)
from tuigpt.ui.app import TuiGptApp
from tuigpt.watch import WatchController, event_from_record


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, cls: type, pred=lambda e: True) -> list:  # noqa: ANN001
        with self.lock:
            return [e for e in self.events if isinstance(e, cls) and pred(e)]

    def wait(self, cls: type, pred=lambda e: True, timeout: float = 60.0):  # noqa: ANN001, ANN201
        return wait_for(lambda: self.of(cls, pred), timeout, cls.__name__)[-1]


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
        assert any(r["type"] == "iter" for r in seen.wait(HistoryLoaded).records), "history appears"
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
    assert seen_later.of(HistoryLoaded) and seen_later.of(SampleGenerated)
    later.close()

    # the same in the app: the monitor shows STOPPED with the run's curve
    app = TuiGptApp(WatchController(run_dir), watching=True)

    async def look() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.outcome is not None)
            app.redraw()
            await pilot.pause()
            assert app.state == RunState.STOPPED
            assert app.query_one("#loss").drawn_range is not None
            await pilot.press("q")  # the run is over: q quits at once
            await pilot.pause()

    asyncio.run(look())
    assert app.return_code == 0


async def wait_until(pilot, predicate, timeout: float = 20.0) -> None:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "timed out"
        await pilot.pause(0.05)


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

        from tuigpt.runs import summarize

        assert summarize(run_dir).state == "interrupted"

        resumed = start_run(config, "--resume")
        wait_for(lambda: b"stale control socket" in (run_dir / "metrics.jsonl").read_bytes(), 90, "stale cleanup")
        from tuigpt.runs import ping

        wait_for(lambda: ping(run_dir), 30, "the new run's socket")
        assert summarize(run_dir).state in ("running", "paused")
        resumed.send_signal(signal.SIGTERM)
        assert resumed.wait(60) == 128 + signal.SIGTERM
        assert not (run_dir / "control.sock").exists()
    finally:
        watcher.close()
        for p in (proc, resumed):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


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


def test_bad_run_dir_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main(["watch", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert main(["watch", "--out_dir", str(tmp_path)]) == 2
    assert "no runs under" in capsys.readouterr().err


def test_q_in_a_watcher_detaches_without_stopping_the_run() -> None:
    from fake_run import FakeController, demo_script
    from test_ui_app import settle

    from tuigpt.ui.widgets.quit_dialog import QuitDialog

    controller = FakeController(demo_script(iters=50))
    app = TuiGptApp(controller, watching=True)

    async def body() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("q")
            await pilot.pause()
            assert isinstance(app.screen, QuitDialog) and app.screen.focused.id == "detach"
            await pilot.press("enter")
            await pilot.pause()

    asyncio.run(body())
    assert app.return_code == 0
    assert not any(isinstance(c, Stop) for c in controller.commands), "detaching never stops the run"


def test_telemetry_read_back_from_json_draws_in_the_cpu_and_gpu_panes() -> None:
    """A watcher rebuilds the sampler's snapshots: temperatures stay a dict, the panes describe them."""
    from tuigpt.metrics_log import event_record
    from tuigpt.telemetry.cpu import CpuSnapshot
    from tuigpt.telemetry.gpu import GpuReading, GpuSnapshot
    from tuigpt.ui.widgets.cpu import CpuPane
    from tuigpt.ui.widgets.gpu import GpuPane
    from tuigpt.watch import event_from_record
    import json

    cpu = CpuSnapshot(per_core_percent=[50.0, 70.0], freq_mhz=2000.0, freq_min_mhz=None, freq_max_mhz=None,
                      per_core_freq_mhz=None, temperatures={"Package id 0": 71.0}, temp_max_c=71.0, throttle_count=3,
                      throttling=True, package_power_w=None, load_avg=(1.0, 1.0, 1.0), process_rss_bytes=1 << 30,
                      mem_used_bytes=2 << 30, mem_total_bytes=8 << 30, unavailable={"package_power_w": "no RAPL"})
    gpu = GpuSnapshot(gpus=[GpuReading(0, "NVIDIA H200", 9 << 30, 140 << 30, 95.0, 59.0, 688.0, 700.0, 1845.0,
                                       ["power cap"], {})], torch_allocated=1, torch_reserved=2,
                      torch_max_allocated=3, status="ok")
    from tuigpt.events import TelemetrySnapshot

    for snap, kind, pane, needle in ((cpu, "cpu", CpuPane, "71"), (gpu, "gpu", GpuPane, "H200")):
        record = json.loads(json.dumps(event_record(TelemetrySnapshot(kind=kind, data=snap))))
        event = event_from_record(record)
        assert type(event.data) is type(snap)
        text = str(pane.describe(event.data))
        assert needle in text and "unreadable" not in text
