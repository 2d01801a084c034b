"""The one codec: events <-> records, commands <-> socket messages, typed telemetry readings."""

from __future__ import annotations

import json

import pytest

from tuigpt.run.commands import CheckpointNow, Pause, Sample, SetEvalInterval, Stop
from tuigpt.run.events import RunStarted, RunState, TelemetrySnapshot
from tuigpt.run.readings import CpuSnapshot, GpuReading, GpuSnapshot
from tuigpt.run.records import command_from_message, command_message, event_from_record, event_record, loads
from tuigpt.ui.widgets.cpu import CpuPane
from tuigpt.ui.widgets.gpu import GpuPane


def test_telemetry_read_back_from_json_draws_in_the_cpu_and_gpu_panes() -> None:
    """A watcher rebuilds the sampler's snapshots: temperatures stay a dict, the panes describe them."""
    cpu = CpuSnapshot(per_core_percent=[50.0, 70.0], freq_mhz=2000.0, freq_min_mhz=None, freq_max_mhz=None,
                      per_core_freq_mhz=None, temperatures={"Package id 0": 71.0}, temp_max_c=71.0, throttle_count=3,
                      throttling=True, package_power_w=None, load_avg=(1.0, 1.0, 1.0), process_rss_bytes=1 << 30,
                      mem_used_bytes=2 << 30, mem_total_bytes=8 << 30, unavailable={"package_power_w": "no RAPL"})
    gpu = GpuSnapshot(gpus=[GpuReading(0, "NVIDIA H200", 9 << 30, 140 << 30, 95.0, 59.0, 688.0, 700.0, 1845.0,
                                       ["power cap"], {})], torch_allocated=1, torch_reserved=2,
                      torch_max_allocated=3, status="ok")
    for snap, kind, pane, needle in ((cpu, "cpu", CpuPane, "71"), (gpu, "gpu", GpuPane, "H200")):
        record = json.loads(json.dumps(event_record(TelemetrySnapshot(kind=kind, data=snap))))
        event = event_from_record(record)
        assert type(event.data) is type(snap)
        text = str(pane.describe(event.data))
        assert needle in text and "unreadable" not in text


def test_records_round_trip_to_events() -> None:
    start = {"type": "start", "time": 1.0, "run_name": "r", "run_dir": "x", "config_path": None, "config": {},
             "n_params": 1, "device": "cpu", "dtype": "float32", "dtype_reason": "", "start_iter": 0, "max_iters": 100,
             "tokens_per_iter": 10, "flops_per_token": 6, "peak_flops": None, "peak_label": "", "eval_interval": 10,
             "resumed": False, "compiled": True, "compile_reason": "auto: measured 1.30x eager's speed here",
             "cooldown_from": 80, "tokenizer": "gpt2", "bytes_per_token": 3.32, "end_kind": "budget", "end_text": "8h",
             "deadline": 1e9, "elapsed_before": 12.5, "eval_batches": 69}
    event = event_from_record(start)
    assert isinstance(event, RunStarted) and event_record(event) == start
    # a record written before compile (or the schedule's cooldown) was recorded still reads, as "compile off" with no
    # reason and no cooldown
    old = event_from_record({k: v for k, v in start.items()
                             if not k.startswith(("compile", "cooldown", "tokenizer", "bytes_per", "eval_batches"))})
    assert isinstance(old, RunStarted) and old.compile_text == "compile off" and old.cooldown_from is None
    assert old.eval_batches is None  # nor an eval's batches: eval_iters of each split, as evals then were
    assert (old.tokenizer, old.bytes_per_token) == (None, None)  # nor the tokenizer: bits per byte are then unknown
    assert event_from_record({"type": "state", "state": "PAUSED", "iter": 3, "time": 1.0}).state == RunState.PAUSED
    assert event_from_record({"type": "iter", "garbage": 1}) is None
    assert event_from_record({"type": "no such thing"}) is None


def test_messages_map_to_commands_and_back() -> None:
    for command in (Pause(), CheckpointNow(), Sample(prompt="hi", max_new_tokens=5, temperature=0.0, top_k=3),
                    SetEvalInterval(7), Stop(save=False)):
        assert command_from_message(json.loads(json.dumps(command_message(command)))) == command
    assert command_from_message({"cmd": "sample", "max_new_tokens": 5}) == Sample(max_new_tokens=5)
    assert command_from_message({"cmd": "stop"}) == Stop(save=True)


@pytest.mark.parametrize("bad", [
    {"cmd": "rm -rf"}, {}, {"cmd": []}, {"cmd": {}}, {"cmd": None}, {"cmd": "set_eval_interval", "interval": 0},
    {"cmd": "set_eval_interval", "interval": True}, {"cmd": "set_eval_interval", "interval": 2.5},
    {"cmd": "stop", "save": "yes"}, {"cmd": "sample", "max_new_tokens": -1}, {"cmd": "sample", "prompt": 3},
    {"cmd": "sample", "temperature": -1}, {"cmd": "sample", "temperature": float("nan")},
    {"cmd": "sample", "temperature": 1e300}, {"cmd": "sample", "top_k": 0}, {"cmd": "sample", "prompt": "x" * 5000},
])
def test_bad_messages_are_refused_with_a_reason(bad: dict) -> None:
    with pytest.raises(ValueError) as err:
        command_from_message(bad)
    assert str(err.value) and len(str(err.value)) < 200


def test_lines_that_are_not_objects_or_absurdly_nested_are_not_records() -> None:
    assert loads(b"[1, 2]") is None and loads(b"\x00\xff") is None and loads(b"") is None
    assert loads(b"[" * 60_000 + b"]" * 60_000) is None
    assert loads(b'{"type": "iter"}') == {"type": "iter"}


def test_eval_progress_streams_on_the_socket_but_is_not_kept_in_metrics(tmp_path) -> None:  # noqa: ANN001
    from tuigpt.run.events import EvalProgress
    from tuigpt.run.metrics_log import MetricsWriter

    event = EvalProgress(iter=0, done=3, total=40, seconds=1.5, time=2.0)
    assert event_from_record(json.loads(json.dumps(event_record(event)))) == event
    writer = MetricsWriter(tmp_path / "metrics.jsonl", log_interval=1)
    writer(event)
    writer.close()
    assert (tmp_path / "metrics.jsonl").read_text() == ""
