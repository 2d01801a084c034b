"""Telemetry readings: what the CPU and GPU samplers measure, as typed snapshots.

Any field a machine does not expose is None, never 0, and ``unavailable[field]`` says why. Readings
travel in ``TelemetrySnapshot`` events, are written to metrics.jsonl as plain dicts, and come back
through :func:`reading_from_record` as the same types (a field written by a newer or older tuigpt is
dropped or left None, never an error).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class CpuSnapshot:
    """One CPU reading."""

    per_core_percent: list[float] | None
    freq_mhz: float | None  # current clock (mean over cores when per-core clocks are known)
    freq_min_mhz: float | None
    freq_max_mhz: float | None
    per_core_freq_mhz: list[float] | None
    temperatures: dict[str, float]  # "sensor:label" → °C; empty when no sensor
    temp_max_c: float | None
    throttle_count: int | None  # sum of thermal_throttle/*_throttle_count over cores
    throttling: bool | None  # counters rising, or clock under base while busy
    package_power_w: float | None  # RAPL energy delta over time, summed over packages
    load_avg: tuple[float, float, float] | None
    process_rss_bytes: int | None
    mem_used_bytes: int | None  # total - available
    mem_total_bytes: int | None
    unavailable: dict[str, str] = field(default_factory=dict)
    # Who had this process's CPUs (its affinity mask) since the last reading, from the kernel's CPU times
    # (telemetry/load.py): this process's share and the others' (steal included), 0..1 of ``share_cpus`` CPUs;
    # ``stretch``: (running + waiting for a CPU) / running of this process's threads (1.0: never waited);
    # ``contended``: contention, not the model, sets the speed now (telemetry/contention.py decides).
    own_share: float | None = None
    others_share: float | None = None
    share_cpus: int | None = None
    stretch: float | None = None
    contended: bool | None = None

    @property
    def mean_percent(self) -> float | None:
        return statistics.fmean(self.per_core_percent) if self.per_core_percent else None

    @property
    def wait_share(self) -> float | None:
        """The share of the time this process's threads wanted a CPU that they waited for one: 1 - 1/stretch
        (0: never waited; 0.63: ran 37% of the time they were ready to). Not the steps' slowdown: a thread that
        waits while another of the step's threads runs costs the step less (2.7x stretch beside a busy loop on
        the VM, steps 1.6x slower)."""
        if self.stretch is None or not self.stretch > 0:
            return None
        return max(0.0, 1.0 - 1.0 / self.stretch)


@dataclass(frozen=True)
class GpuReading:
    """One GPU; None for what NVML would not tell."""

    index: int
    name: str | None
    mem_used_bytes: int | None
    mem_total_bytes: int | None
    util_percent: float | None
    temp_c: float | None
    power_w: float | None
    power_limit_w: float | None
    sm_clock_mhz: float | None
    throttle_reasons: list[str] | None  # [] when not held back; None when unknown
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GpuSnapshot:
    """All GPUs at one time; ``status`` is "ok", "no GPU", or why NVML could not be used."""

    gpus: list[GpuReading]
    torch_allocated: int | None
    torch_reserved: int | None
    torch_max_allocated: int | None
    status: str


def _typed(cls: type, data: dict[str, Any], **given: Any) -> Any:
    """``cls`` from a record's dict: known fields only; a missing one is None (an empty dict for the dicts)."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        value = given[f.name] if f.name in given else data.get(f.name)
        if f.name in ("unavailable", "temperatures"):
            value = {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}
            if f.name == "unavailable":
                value = {k: str(v) for k, v in value.items()}
        values[f.name] = value
    return cls(**values)


def reading_from_record(kind: Any, data: Any) -> CpuSnapshot | GpuSnapshot | None:
    """The reading a telemetry record holds, or None when it is not one this tuigpt understands."""
    if not isinstance(data, dict):
        return None
    if kind == "cpu":
        load = data.get("load_avg")
        return _typed(CpuSnapshot, data, load_avg=tuple(load) if isinstance(load, list) else None)
    if kind == "gpu":
        gpus = [_typed(GpuReading, g) for g in data.get("gpus") or [] if isinstance(g, dict)]
        return _typed(GpuSnapshot, data, gpus=gpus, status=str(data.get("status") or "unknown"))
    return None
