"""Measuring the peak with torch matmuls, and choosing the peak MFU is measured against (cached per machine)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tuigpt.engine import calibration
from tuigpt.engine.calibration import measure_peak, resolve_peak
from tuigpt.telemetry import peak
from tuigpt.telemetry.cpuinfo import CpuInfo

T = 1e12


def cpu(flags: set[str], *, model: str = "Test CPU", cores: int = 4, mhz: float | None = 3000.0) -> CpuInfo:
    return CpuInfo(model_name=model, arch="x86_64", vendor="GenuineIntel", physical_cores=cores,
                   logical_cores=cores * 2, flags=frozenset(flags), max_mhz=mhz, base_mhz=None)


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def fake_measure(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
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
    assert first.label == "100 GFLOP/s (fp32, measured)"
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
