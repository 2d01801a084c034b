"""Measuring the peak with torch matmuls, and choosing the peak MFU is measured against (cached per machine)."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import pytest

from tuigpt.engine import calibration
from tuigpt.engine.calibration import measure_peak, resolve_peak
from tuigpt.telemetry import peak
from tuigpt.telemetry.cpuinfo import CpuInfo
from tuigpt.telemetry.load import Load

T = 1e12


def cpu(flags: set[str], *, model: str = "Test CPU", cores: int = 4, mhz: float | None = 3000.0) -> CpuInfo:
    return CpuInfo(model_name=model, arch="x86_64", vendor="GenuineIntel", physical_cores=cores,
                   logical_cores=cores * 2, flags=frozenset(flags), max_mhz=mhz, base_mhz=None)


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


class Machine:
    """What other processes do: during a timing (``during``) and when a start looks (``now``); shares of 2 CPUs."""

    def __init__(self) -> None:
        self.during = 0.02
        self.now = 0.02
        self.looks = 0

    def meter(self) -> object:
        machine = self

        class Meter:
            def stop(self) -> Load:
                return Load(machine.during, 2, 0.3)

        return Meter()

    def load_now(self) -> Load:
        self.looks += 1
        return Load(self.now, 2, 0.3)


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Machine:
    m = Machine()
    monkeypatch.setattr(calibration, "LoadMeter", m.meter)
    monkeypatch.setattr(calibration, "load_now", m.load_now)
    return m


@pytest.fixture
def fake_measure(monkeypatch: pytest.MonkeyPatch, machine: Machine) -> list[tuple]:
    calls: list[tuple] = []

    def measure(dtype: str, threads: int, device: str = "cpu", seconds: float = 2.0) -> float:
        calls.append((dtype, threads, device))
        return 100e9 * len(calls)  # each measurement differs, so a re-measure is visible

    monkeypatch.setattr(calibration, "measure_peak", measure)
    return calls


# ---------------------------------------------------------------- measured peak and cache


def test_measure_peak_really_times_matmuls_quickly() -> None:
    import time

    import torch

    threads_before = torch.get_num_threads()
    t0 = time.perf_counter()
    flops = measure_peak("fp32", threads=1, seconds=0.2)
    assert time.perf_counter() - t0 < 3.0
    assert math.isfinite(flops) and 1e8 < flops < 1e14  # a real CPU does 0.1 GFLOP/s .. 100 TFLOP/s
    assert torch.get_num_threads() == threads_before


def test_cpu_peak_is_measured_once_then_cached(private_cache: Path, fake_measure: list[tuple]) -> None:
    info = cpu({"avx2", "fma"}, cores=2)
    first = resolve_peak("cpu", "float32", 2, cpu_info=info)
    again = resolve_peak("cpu", "float32", 2, cpu_info=info)
    assert first is not None and again is not None
    assert first.source == "measured" and first.flops == again.flops == 100e9
    assert len(fake_measure) == 1
    assert first.theoretical_flops == 2 * 3.0e9 * 32
    assert re.fullmatch(r"100 GFLOP/s \(fp32, measured \d{4}-\d\d-\d\d \d\d:\d\d, idle\)", first.label), first.label
    assert first.warning is None
    data = json.loads((private_cache / "peaks.json").read_text())
    assert any("fp32" in key and "2 threads" in key and "Test CPU" in key for key in data)


def test_cache_is_keyed_by_dtype_and_threads_and_recalibrate_remeasures(private_cache: Path, fake_measure: list[tuple]) -> None:
    info = cpu({"avx2", "fma"})
    resolve_peak("cpu", "float32", 2, cpu_info=info)
    resolve_peak("cpu", "bfloat16", 2, cpu_info=info)
    resolve_peak("cpu", "float32", 1, cpu_info=info)
    assert [c[:2] for c in fake_measure] == [("fp32", 2), ("bf16", 2), ("fp32", 1)]
    redone = resolve_peak("cpu", "float32", 2, cpu_info=info, recalibrate=True)
    assert len(fake_measure) == 4 and redone is not None and redone.flops == 400e9
    assert resolve_peak("cpu", "float32", 2, cpu_info=info).flops == 400e9  # the new value is what is cached


def test_no_measure_uses_cache_then_theoretical_then_none(
    private_cache: Path, fake_measure: list[tuple], monkeypatch: pytest.MonkeyPatch
) -> None:
    known = cpu({"avx2", "fma"}, mhz=3000.0)
    got = resolve_peak("cpu", "float32", 4, measure=False, cpu_info=known)
    assert got is not None and got.source == "theoretical" and got.flops == 4 * 3.0e9 * 32
    resolve_peak("cpu", "float32", 4, cpu_info=known)  # measure once: now cached
    cached = resolve_peak("cpu", "float32", 4, measure=False, cpu_info=known)
    assert cached is not None and cached.source == "measured" and len(fake_measure) == 1
    # nothing cached and no clock known (the real machine might know one: force unknown)
    monkeypatch.setattr(peak, "cpu_max_mhz", lambda info, psutil_module=None: (None, "unknown"))
    assert resolve_peak("cpu", "float32", 2, measure=False, cpu_info=cpu({"avx2", "fma"}, mhz=None)) is None
    assert len(fake_measure) == 1


def test_gpu_uses_table_when_known_and_measures_when_unknown(
    private_cache: Path, fake_measure: list[tuple], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calibration, "device_name", lambda device: "NVIDIA H100 PCIe")
    known = resolve_peak("cuda", "bfloat16", 8)
    assert known is not None and known.source == "table" and known.flops == 756.5 * T
    assert known.label == "756 TFLOP/s (bf16, datasheet)"
    assert fake_measure == []
    monkeypatch.setattr(calibration, "device_name", lambda device: "NVIDIA Future GPU 9000")
    unknown = resolve_peak("cuda:0", "bfloat16", 8)
    assert unknown is not None and unknown.source == "measured" and fake_measure == [("bf16", 8, "cuda:0")]


# ---------------------------------------------------------------- a busy machine


def entry(private_cache: Path) -> dict:
    data = json.loads((private_cache / "peaks.json").read_text())
    (key,) = [k for k in data if "fp32" in k]
    return data[key]


def test_a_peak_timed_on_a_busy_machine_is_marked_and_warned_about(
    private_cache: Path, fake_measure: list[tuple], machine: Machine
) -> None:
    machine.during = 0.48  # another process took half the CPUs while the matmuls ran
    peak = resolve_peak("cpu", "float32", 2, cpu_info=cpu({"avx2", "fma"}, cores=2))
    assert peak is not None and peak.flops == 100e9
    assert peak.label.endswith("while busy: MFU reads high)")
    assert peak.warning is not None and "busy (other processes used 48% of 2 CPUs" in peak.warning
    assert "tuigpt calibrate" in peak.warning
    stored = entry(private_cache)
    assert stored["busy"] is True and stored["load"]["others"] == 0.48 and stored["measured_at"] <= time.time()


def test_a_busy_peak_is_measured_again_at_the_first_quiet_start(
    private_cache: Path, fake_measure: list[tuple], machine: Machine
) -> None:
    info = cpu({"avx2", "fma"}, cores=2)
    machine.during = machine.now = 0.9
    resolve_peak("cpu", "float32", 2, cpu_info=info)
    still_busy = resolve_peak("cpu", "float32", 2, cpu_info=info)  # busy now too: use it, say so, time nothing
    assert len(fake_measure) == 1 and machine.looks == 1 and still_busy is not None and still_busy.warning
    machine.during = machine.now = 0.01
    quiet = resolve_peak("cpu", "float32", 2, cpu_info=info)
    assert len(fake_measure) == 2 and quiet is not None and quiet.flops == 200e9 and quiet.warning is None
    assert entry(private_cache)["busy"] is False
    resolve_peak("cpu", "float32", 2, cpu_info=info)  # an idle measurement is simply used: no look, no timing
    assert len(fake_measure) == 2 and machine.looks == 2


def test_a_busy_recalibration_never_replaces_an_idle_peak(
    private_cache: Path, fake_measure: list[tuple], machine: Machine
) -> None:
    idle_fresh, idle_used = calibration.calibrate_peak("Test CPU", "fp32", 2)
    assert idle_used is idle_fresh and not idle_fresh.busy
    machine.during = 0.7
    fresh, used = calibration.calibrate_peak("Test CPU", "fp32", 2)
    assert fresh.busy and fresh.flops == 200e9
    assert used == idle_used and entry(private_cache)["flops"] == 100e9


def test_of_two_busy_timings_the_higher_is_kept(private_cache: Path, fake_measure: list[tuple],
                                                 machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    machine.during = 0.7
    calibration.calibrate_peak("Test CPU", "fp32", 2)  # 100 GFLOP/s, busy
    calibration.calibrate_peak("Test CPU", "fp32", 2)  # 200: the machine was less in the way
    assert entry(private_cache)["flops"] == 200e9
    monkeypatch.setattr(calibration, "measure_peak", lambda *a, **k: 50e9)
    fresh, used = calibration.calibrate_peak("Test CPU", "fp32", 2)
    assert fresh.flops == 50e9 and used.flops == 200e9 and entry(private_cache)["flops"] == 200e9


def test_an_entry_without_a_load_or_a_month_old_is_redone_when_quiet(
    private_cache: Path, fake_measure: list[tuple], machine: Machine
) -> None:
    info = cpu({"avx2", "fma"}, cores=2)
    key = calibration.peak_key("Test CPU", "fp32", 2, "cpu")
    peak.store_entry(key, {"flops": 300e9, "measured_at": time.time() - 3600})  # what an older tuigpt wrote
    machine.now = 0.9
    unknown = resolve_peak("cpu", "float32", 2, cpu_info=info)
    assert unknown is not None and unknown.flops == 300e9 and "idle" not in unknown.label and not fake_measure
    assert unknown.warning is None  # nothing known against it: no claim either way
    machine.now = 0.0
    assert resolve_peak("cpu", "float32", 2, cpu_info=info).flops == 100e9 and len(fake_measure) == 1
    old = dict(entry(private_cache), measured_at=time.time() - 31 * 86400)
    peak.store_entry(key, old)
    assert resolve_peak("cpu", "float32", 2, cpu_info=info).flops == 200e9 and len(fake_measure) == 2


def test_a_measured_gpu_peak_is_not_redone_at_every_start(
    private_cache: Path, fake_measure: list[tuple], machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calibration, "device_name", lambda device: "NVIDIA Future GPU 9000")
    first = resolve_peak("cuda:0", "bfloat16", 8)
    again = resolve_peak("cuda:0", "bfloat16", 8)
    assert first is not None and again is not None and again.flops == first.flops and len(fake_measure) == 1
    assert machine.looks == 0 and "idle" not in again.label and "busy" not in again.label  # no CPU-load claim
