"""What a dashboard (TensorBoard, W&B, trackio: ``log_to``) gets from an event: numbers under stable names at an
iteration, and lines of text. One mapping for every dashboard, so all three show the same names; the metrics.jsonl
record of the same event holds the same values (a test reads them back from each package and compares).

Names are ``group/name``: train/, eval/ (losses and bits per byte), speed/, health/ (per parameter group: health/<group>/grad_norm, …),
cpu/, gpu<N>/, cluster/. Events that happen between iterations (telemetry, notices) are placed at the last
iteration seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tuigpt.run import fmt
from tuigpt.run.events import (
    ClusterStats,
    Diverging,
    EvalResult,
    Event,
    IterationStats,
    NanDetected,
    Notice,
    Rewound,
    RunFailed,
    RunFinished,
    RunStarted,
    SampleGenerated,
    Stalled,
    TelemetrySnapshot,
)
from tuigpt.run.readings import CpuSnapshot, GpuSnapshot

SAMPLES = "samples"  # the text series of generated samples
EVENTS = "events"  # the text series of notices, health events and the run's end


@dataclass(frozen=True)
class Row:
    """What one event puts on a dashboard: ``scalars`` and ``texts`` (series name → value) at iteration ``step``."""

    step: int
    scalars: dict[str, float] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


class RowMaker:
    """Turns events into rows; remembers the last iteration, where events between iterations are placed."""

    def __init__(self, step: int = 0) -> None:
        self.step = step

    def __call__(self, event: Event) -> Row | None:
        if isinstance(event, RunStarted):
            self.step = event.start_iter
            return None
        if isinstance(event, _AT_ITS_ITERATION):
            self.step = event.iter
        row = _row(event, self.step)
        return row if row is not None and (row.scalars or row.texts) else None


# events whose ``iter`` is where the run stands (a NaN report's is the step that failed and was not counted)
_AT_ITS_ITERATION = (IterationStats, EvalResult, SampleGenerated, ClusterStats, Stalled, Diverging, Rewound, RunFailed,
                     RunFinished)


def _row(event: Event, step: int) -> Row | None:
    if isinstance(event, IterationStats):
        return Row(step, _finite(iteration_scalars(event)))
    if isinstance(event, EvalResult):
        return Row(step, _finite({"eval/train_loss": event.train_loss, "eval/val_loss": event.val_loss,
                                  "eval/best_val_loss": event.best_val_loss, "eval/train_bpb": event.train_bpb,
                                  "eval/val_bpb": event.val_bpb, "eval/seconds": event.seconds}))
    if isinstance(event, TelemetrySnapshot):
        return Row(step, _finite(telemetry_scalars(event.data)))
    if isinstance(event, ClusterStats):
        return Row(step, _finite({"cluster/slowest_over_fastest": event.slowest_over_fastest,
                                  "cluster/comm_over_compute": event.comm_over_compute}))
    if isinstance(event, SampleGenerated):
        return Row(step, texts={SAMPLES: event.prompt + event.text})
    text = event_text(event)
    return Row(step, texts={EVENTS: text}) if text else None


def iteration_scalars(e: IterationStats) -> dict[str, float | None]:
    values: dict[str, float | None] = {
        "train/loss": e.loss, "train/lr": e.lr, "train/tokens_seen": float(e.tokens_seen),
        "speed/ms_per_iter": e.ms_per_iter, "speed/tokens_per_sec": e.tokens_per_sec, "speed/mfu": e.mfu,
        "health/grad_norm": e.grad_norm, "health/clip_rate": e.clip_rate, "health/update_ratio": e.update_ratio,
    }
    for group in e.layers or []:
        name = str(group.get("name", "?")).replace(" ", "_")
        for key, series in (("grad", "grad_norm"), ("weight", "weight_norm"), ("update", "update_ratio")):
            values[f"health/{name}/{series}"] = group.get(key)
    return values


def telemetry_scalars(data: Any) -> dict[str, float | None]:
    """A CPU or GPU reading's numbers; what the machine does not expose is left out (never 0)."""
    if isinstance(data, CpuSnapshot):
        throttling = None if data.throttling is None else float(data.throttling)
        return {"cpu/percent": data.mean_percent, "cpu/freq_mhz": data.freq_mhz, "cpu/temp_max_c": data.temp_max_c,
                "cpu/throttling": throttling, "cpu/package_power_w": data.package_power_w,
                "cpu/process_rss_bytes": data.process_rss_bytes, "cpu/mem_used_bytes": data.mem_used_bytes,
                "cpu/own_share": data.own_share, "cpu/others_share": data.others_share, "cpu/stretch": data.stretch,
                "cpu/contended": None if data.contended is None else float(data.contended)}
    if isinstance(data, GpuSnapshot):
        values: dict[str, float | None] = {"gpu/torch_allocated_bytes": data.torch_allocated,
                                           "gpu/torch_reserved_bytes": data.torch_reserved}
        for gpu in data.gpus:
            for key in ("mem_used_bytes", "util_percent", "temp_c", "power_w", "sm_clock_mhz"):
                values[f"gpu{gpu.index}/{key}"] = getattr(gpu, key)
        return values
    return {}


def event_text(event: Event) -> str | None:
    """The events series' line for a notice, a health event or the run's end (None for other events)."""
    if isinstance(event, Notice):
        return f"{event.level}: {event.message}"
    if isinstance(event, NanDetected):
        return "\n".join(fmt.nan_report(event))
    if isinstance(event, Rewound):
        return fmt.rewound(event)
    if isinstance(event, Stalled):
        return fmt.stalled(event)
    if isinstance(event, Diverging):
        return fmt.diverging(event)
    if isinstance(event, RunFailed):
        return f"run failed at iter {event.iter:,}: {event.message}"
    if isinstance(event, RunFinished):
        best = f", best val loss {event.best_val_loss:.4f}" if event.best_val_loss is not None else ""
        reason = getattr(event.reason, "value", event.reason)  # an enum's value, a record's text
        return (f"run ended ({reason}) at iter {event.iter:,}{best}, {event.tokens_seen:,} tokens in "
                f"{fmt.duration(event.wall_seconds)}")
    return None


def _finite(values: dict[str, float | int | None]) -> dict[str, float]:
    """Known, finite numbers only: a dashboard plots None, NaN or Inf as a gap or an error, not a point."""
    out = {}
    for name, value in values.items():
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[name] = float(value)
    return out
