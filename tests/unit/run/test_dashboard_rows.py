"""What every dashboard gets from an event: the same names and values as the metrics.jsonl record, at the
iteration the run stands at; nothing unknown or non-finite is plotted."""

from __future__ import annotations

import dataclasses

import math

from tuigpt.run.dashboard_rows import EVENTS, SAMPLES, Row, RowMaker
from tuigpt.run.events import (
    EvalResult,
    IterationStats,
    NanDetected,
    Notice,
    Rewound,
    RunFinished,
    RunStarted,
    SampleGenerated,
    TelemetrySnapshot,
)
from tuigpt.run.readings import CpuSnapshot, GpuReading, GpuSnapshot


def _start(start_iter: int = 0) -> RunStarted:
    return RunStarted(run_name="r", run_dir="/tmp/r", config_path=None, config={}, n_params=1, device="cpu",
                      dtype="float32", dtype_reason="", start_iter=start_iter, max_iters=100, tokens_per_iter=10,
                      flops_per_token=1, peak_flops=None, peak_label="", eval_interval=10, resumed=start_iter > 0)


def _iteration(i: int, **values: object) -> IterationStats:
    fields = dict(iter=i, loss=2.5, lr=1e-3, ms_per_iter=12.0, tokens_per_sec=800.0, mfu=None, tokens_seen=10 * i,
                  train_seconds=1.0, grad_norm=0.7, clipped=False, clip_rate=0.25, update_ratio=None)
    fields.update(values)
    return IterationStats(**fields)  # type: ignore[arg-type]


def _cpu() -> CpuSnapshot:
    return CpuSnapshot(per_core_percent=[50.0, 100.0], freq_mhz=2400.0, freq_min_mhz=None, freq_max_mhz=None,
                       per_core_freq_mhz=None, temperatures={}, temp_max_c=None, throttle_count=None, throttling=False,
                       package_power_w=None, load_avg=None, process_rss_bytes=1 << 30, mem_used_bytes=None,
                       mem_total_bytes=None)


def test_an_iteration_gives_its_numbers_and_per_group_health_leaving_out_what_is_unknown() -> None:
    rows = RowMaker()
    rows(_start())
    row = rows(_iteration(7, layers=[{"name": "block 0", "grad": 0.5, "weight": 3.0, "update": 1e-3},
                                     {"name": "head", "grad": float("nan"), "weight": 2.0, "update": None}]))
    assert row == Row(7, {"train/loss": 2.5, "train/lr": 1e-3, "train/tokens_seen": 70.0, "speed/ms_per_iter": 12.0,
                          "speed/tokens_per_sec": 800.0, "health/grad_norm": 0.7, "health/clip_rate": 0.25,
                          "health/block_0/grad_norm": 0.5, "health/block_0/weight_norm": 3.0,
                          "health/block_0/update_ratio": 1e-3, "health/head/weight_norm": 2.0})
    assert all(math.isfinite(v) for v in row.scalars.values())


def test_readings_and_notices_sit_at_the_last_iteration_and_evals_at_their_own() -> None:
    rows = RowMaker()
    rows(_start(40))
    assert rows(TelemetrySnapshot(kind="cpu", data=_cpu())) == Row(40, {
        "cpu/percent": 75.0, "cpu/freq_mhz": 2400.0, "cpu/throttling": 0.0, "cpu/process_rss_bytes": float(1 << 30)})
    shared = dataclasses.replace(_cpu(), own_share=0.48, others_share=0.52, share_cpus=2, stretch=1.9, contended=True)
    assert {k: v for k, v in rows(TelemetrySnapshot(kind="cpu", data=shared)).scalars.items()  # who had the CPUs
            if k in ("cpu/own_share", "cpu/others_share", "cpu/stretch", "cpu/contended")} == {
        "cpu/own_share": 0.48, "cpu/others_share": 0.52, "cpu/stretch": 1.9, "cpu/contended": 1.0}
    rows(_iteration(41))
    gpu = GpuSnapshot(gpus=[GpuReading(index=1, name="H100", mem_used_bytes=5, mem_total_bytes=10, util_percent=99.0,
                                       temp_c=None, power_w=None, power_limit_w=None, sm_clock_mhz=None,
                                       throttle_reasons=None)], torch_allocated=3, torch_reserved=None,
                      torch_max_allocated=None, status="ok")
    assert rows(TelemetrySnapshot(kind="gpu", data=gpu)) == Row(41, {
        "gpu/torch_allocated_bytes": 3.0, "gpu1/mem_used_bytes": 5.0, "gpu1/util_percent": 99.0})
    assert rows(Notice(level="warning", message="hot")) == Row(41, texts={EVENTS: "warning: hot"})
    assert rows(EvalResult(iter=50, train_loss=1.0, val_loss=1.5, best_val_loss=1.4, is_best=False, seconds=2.0,
                           train_bpb=1.2, val_bpb=None)) == Row(50, {
        "eval/train_loss": 1.0, "eval/val_loss": 1.5, "eval/best_val_loss": 1.4, "eval/train_bpb": 1.2,
        "eval/seconds": 2.0})
    assert rows(SampleGenerated(iter=50, prompt="\n", text="ROMEO:", seconds=0.1)) == Row(50, texts={SAMPLES: "\nROMEO:"})


def test_a_nan_report_stays_at_the_last_good_iteration_and_a_rewind_moves_back() -> None:
    rows = RowMaker()
    rows(_start())
    rows(_iteration(30))
    nan = NanDetected(iter=31, cause="loss", loss=None, grad_norm=None, lr=1e-3, layers=[], recent=[],
                      recent_layers=[], batch_starts=[[1, 2]], action="rewind")
    row = rows(nan)
    assert row is not None and row.step == 30 and "31" in row.texts[EVENTS]
    row = rows(Rewound(from_iter=31, iter=20, checkpoint="/r/last.pt", lr_scale=0.5, rewinds=1, max_rewinds=3,
                       skipped=[31]))
    assert row is not None and row.step == 20


def test_the_end_of_a_run_is_an_event_line_and_unmapped_events_give_nothing() -> None:
    rows = RowMaker()
    assert rows(_start()) is None
    end = rows(RunFinished(iter=100, reason="done", best_val_loss=1.25, last_val_loss=1.3, wall_seconds=65.0,
                           train_seconds=60.0, eval_seconds=4.0, checkpoint_seconds=1.0, last_checkpoint=None,
                           tokens_seen=1000))
    assert end is not None and end.step == 100 and "best val loss 1.2500" in end.texts[EVENTS]
    assert rows(_iteration(101, loss=float("inf"), lr=float("nan"), ms_per_iter=float("nan"),
                           tokens_per_sec=float("nan"), grad_norm=None, clip_rate=None)).scalars == {
        "train/tokens_seen": 1010.0}
