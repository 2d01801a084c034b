"""A dashboard sink: the trainer's thread only queues; a package that fails to start, raises mid-run or at the end
is one line and detached; a slow one falls behind without holding training; a sink added on --resume copies the
earlier sessions first; what the packages print goes to dashboards.log. The packages themselves are tested in
tests/e2e/test_dashboards.py; here the backend is a recording one behind the same protocol."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
import yaml

from tuigpt.cli import main as cli
from tuigpt.host import dashboards
from tuigpt.host.dashboards.chatter import Chatter
from tuigpt.host.dashboards.sink import DashboardSink, Opened
from tuigpt.run.dashboard_rows import Row
from tuigpt.run.events import EventBus, IterationStats, Notice, RunStarted, TelemetrySnapshot
from tuigpt.run.metrics_log import MetricsWriter, read_metrics
from tuigpt.run.readings import GpuSnapshot

from conftest import TINY
from support.corpus import shakespeare
from support import Recorder, wait_for


class Recording:
    """A backend that keeps what it is given, and raises where a test says (``fail`` = "open", "close", or a step)."""

    def __init__(self, fail: object = None, continued: bool = True, gate: threading.Event | None = None) -> None:
        self.fail, self.continued, self.gate = fail, continued, gate
        self.rows: list[Row] = []
        self.closed = False

    def open(self, start: RunStarted) -> Opened:
        if self.fail == "open":
            raise ConnectionError("no route to host")
        return Opened(f"log_to test: opened at {start.start_iter}", self.continued)

    def write(self, row: Row) -> None:
        if self.gate is not None:
            self.gate.wait(30)
        if row.step == self.fail:
            raise RuntimeError("boom")
        self.rows.append(row)

    def close(self) -> None:
        self.closed = True
        if self.fail == "close":
            raise OSError("disk full")


def _start(run_dir: Path, start_iter: int = 0, time: float | None = None) -> RunStarted:
    extra = {} if time is None else {"time": time}
    return RunStarted(run_name="r", run_dir=str(run_dir), config_path=None, config={}, n_params=1, device="cpu",
                      dtype="float32", dtype_reason="", start_iter=start_iter, max_iters=100, tokens_per_iter=10,
                      flops_per_token=1, peak_flops=None, peak_label="", eval_interval=10, resumed=start_iter > 0,
                      **extra)


def _iteration(i: int) -> IterationStats:
    return IterationStats(iter=i, loss=3.0 - i / 100, lr=1e-3, ms_per_iter=1.0, tokens_per_sec=1.0, mfu=None,
                          tokens_seen=i, train_seconds=0.0)


def _sink(backend: Recording, bus: EventBus, log_interval: int = 1, capacity: int = 10_000) -> DashboardSink:
    sink = DashboardSink("test", lambda: backend, bus.publish, log_interval, capacity=capacity)
    sink.attach(bus.subscribe)
    return sink


def _lines(rec: Recorder) -> list[str]:
    return [f"{e.level}: {e.message}" for e in rec.of(Notice)]


def test_rows_arrive_in_order_at_the_log_interval_with_readings_from_before_the_start(tmp_path: Path) -> None:
    bus, rec, backend = EventBus(), Recorder(), Recording()
    bus.subscribe(rec)
    sink = _sink(backend, bus, log_interval=5)
    no_gpu = GpuSnapshot(gpus=[], torch_allocated=7, torch_reserved=None, torch_max_allocated=None, status="no GPU")
    bus.publish(TelemetrySnapshot(kind="gpu", data=no_gpu))  # the samplers start before the run
    bus.publish(_start(tmp_path))
    for i in range(1, 21):
        bus.publish(_iteration(i))
    sink.close()
    assert [(r.step, sorted(r.scalars)[:1]) for r in backend.rows] == [
        (0, ["gpu/torch_allocated_bytes"]), (5, ["speed/ms_per_iter"]),
        (10, ["speed/ms_per_iter"]), (15, ["speed/ms_per_iter"]), (20, ["speed/ms_per_iter"])]
    assert [r.scalars["train/loss"] for r in backend.rows[1:]] == [2.95, 2.9, 2.85, 2.8]
    assert backend.closed and _lines(rec) == ["info: log_to test: opened at 0"]


@pytest.mark.parametrize("fail, line", [
    ("open", "warning: log_to test could not start (ConnectionError: no route to host) and was detached; training "
             "goes on and metrics.jsonl has every record"),
    (3, "warning: log_to test failed at iter 3 (RuntimeError: boom) and was detached; training goes on and "
        "metrics.jsonl has every record"),
    ("close", "warning: log_to test could not finish its run (OSError: disk full) and was detached; training goes "
              "on and metrics.jsonl has every record"),
])
def test_a_dashboard_that_raises_is_one_line_and_detached(tmp_path: Path, fail: object, line: str) -> None:
    bus, rec, backend = EventBus(), Recorder(), Recording(fail=fail)
    bus.subscribe(rec)
    sink = _sink(backend, bus)
    bus.publish(_start(tmp_path))
    for i in range(1, 6):
        bus.publish(_iteration(i))
    wait_for(lambda: sink.failed or len(backend.rows) == 5, 30, "the sink's thread")
    for i in range(6, 11):
        bus.publish(_iteration(i))  # a detached sink is no longer called
    sink.close()
    warnings = [text for text in _lines(rec) if text.startswith("warning")]
    assert warnings == [line]
    assert sink.failed and backend.closed
    assert len(rec.of(IterationStats)) == 10, "the other subscribers get every event"
    if fail == 3:
        assert [r.step for r in backend.rows] == [1, 2]


def test_a_slow_dashboard_falls_behind_without_holding_the_publisher(tmp_path: Path) -> None:
    bus, rec, gate = EventBus(), Recorder(), threading.Event()
    backend = Recording(gate=gate)
    bus.subscribe(rec)
    sink = _sink(backend, bus, capacity=5)
    bus.publish(_start(tmp_path))
    for i in range(1, 101):
        bus.publish(_iteration(i))  # returns at once although the backend is stuck
    assert sink.dropped >= 90
    gate.set()
    sink.close()
    assert len(backend.rows) == 100 - sink.dropped
    behind = [text for text in _lines(rec) if "falling behind" in text]
    assert behind == ["warning: log_to test is falling behind: events past 5 queued are left out of it (metrics.jsonl "
                      "has every record)"]


def test_a_dashboard_added_on_resume_copies_the_earlier_sessions_first(tmp_path: Path) -> None:
    writer = MetricsWriter(tmp_path / "metrics.jsonl", 1)
    earlier = EventBus()
    earlier.subscribe(writer)
    earlier.publish(_start(tmp_path))
    for i in range(1, 11):
        earlier.publish(_iteration(i))
    bus, backend = EventBus(), Recording(continued=False)
    rec = Recorder()
    bus.subscribe(writer)  # as the host subscribes it: before the dashboards
    bus.subscribe(rec)
    sink = _sink(backend, bus)
    bus.publish(_start(tmp_path, start_iter=10))
    bus.publish(_iteration(11))
    sink.close()
    writer.close()
    assert [r.step for r in backend.rows] == list(range(1, 12)), "the earlier session, then this one, each once"
    assert any("copied the run's earlier history from metrics.jsonl (10 records up to iter 10)" in text
               for text in _lines(rec))


def test_a_dashboard_whose_package_is_missing_is_one_line_and_the_run_trains(tmp_path: Path, capsys,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(dashboards.PACKAGES, "wandb", ("tuigpt_no_such_package", "Weights & Biases"))
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "out_dir": str(tmp_path / "runs"), "data_path": str(shakespeare()),
                                      "log_to": ["wandb"]}))
    assert cli.main([str(config), "--headless"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "log_to" in line] == [
        "warning: log_to wandb: the tuigpt_no_such_package package is not installed, so this run does not go to "
        "Weights & Biases (pip install tuigpt_no_such_package, or 'tuigpt[dashboards]' for all three)"]
    records = read_metrics(tmp_path / "runs" / "tiny" / "metrics.jsonl")
    assert [r["iter"] for r in records if r["type"] == "iter"] == list(range(1, 11))
    assert not (tmp_path / "runs" / "tiny" / "dashboards.log").exists()


def test_what_a_dashboards_thread_prints_goes_to_the_log_and_the_rest_where_it_went(tmp_path: Path, capsys) -> None:
    chatter = Chatter(tmp_path / "dashboards.log", 0o600)
    chatter.route()

    def package_chatter() -> None:
        chatter.this_thread()
        print("* Trackio project initialized")
        print("a warning", file=sys.stderr)

    thread = threading.Thread(target=package_chatter)
    thread.start()
    thread.join()
    print("iter 1/10 | loss 4.2")

    package_code: dict = {"__name__": "tensorboard.summary.writer.event_file_writer"}  # as TensorBoard's own thread
    exec("def write():\n    raise OSError(28, 'No space left on device')\n", package_code)
    dying = threading.Thread(target=package_code["write"])
    dying.start()
    dying.join()
    chatter.restore()
    assert "Routed" not in type(sys.stdout).__name__ + type(sys.stderr).__name__
    captured = capsys.readouterr()
    assert captured.out == "iter 1/10 | loss 4.2\n" and captured.err == ""
    log = (tmp_path / "dashboards.log").read_text()
    assert "* Trackio project initialized\na warning\n" in log
    assert "died:" in log and "No space left on device" in log
