"""Peak FLOP/s: GPU table matching, CPU theoretical arithmetic, measured-peak cache, MFU text."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from tuigpt.telemetry import peak
from tuigpt.telemetry.cpuinfo import CpuInfo
from tuigpt.telemetry.peak import (
    PeakFlops,
    cpu_flops_per_cycle,
    cpu_max_mhz,
    cpu_theoretical_peak,
    format_flops,
    format_mfu,
    gpu_table_key,
    gpu_table_peak,
    make_label,
    measure_peak,
    mfu,
    normalize_dtype,
    resolve_peak,
)

T = 1e12


def cpu(flags: set[str], *, model: str = "Test CPU", arch: str = "x86_64", cores: int = 4, mhz: float | None = 3000.0,
        vendor: str = "GenuineIntel") -> CpuInfo:
    return CpuInfo(model_name=model, arch=arch, vendor=vendor, physical_cores=cores, logical_cores=cores * 2,
                   flags=frozenset(flags), max_mhz=mhz, base_mhz=None)


NO_FREQ_PSUTIL = SimpleNamespace(cpu_freq=lambda: SimpleNamespace(current=2000.0, min=0.0, max=0.0))


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

    monkeypatch.setattr(peak, "measure_peak", measure)
    return calls


# ---------------------------------------------------------------- GPU table


@pytest.mark.parametrize(
    "name, key",
    [
        ("NVIDIA H100 80GB HBM3", ("H100",)),
        ("NVIDIA H100 PCIe", ("H100", "PCIE")),
        ("NVIDIA H100 NVL", ("H100", "NVL")),
        ("NVIDIA H200", ("H200",)),
        ("NVIDIA A100-SXM4-80GB", ("A100",)),
        ("NVIDIA A100-PCIE-40GB", ("A100",)),
        ("NVIDIA GeForce RTX 4070 Ti", ("RTX", "4070", "TI")),
        ("NVIDIA GeForce RTX 4070", ("RTX", "4070")),
        ("NVIDIA GeForce RTX 4060 Ti", ("RTX", "4060", "TI")),
        ("NVIDIA A10G", ("A10G",)),
        ("NVIDIA L4", ("L4",)),
        ("NVIDIA L40S", ("L40S",)),
        ("Tesla V100-SXM2-16GB", ("V100",)),
        ("Tesla T4", ("T4",)),
    ],
)
def test_gpu_names_match_their_table_entry(name: str, key: tuple[str, ...]) -> None:
    assert gpu_table_key(name) == key


@pytest.mark.parametrize(
    "name", ["NVIDIA GeForce RTX 4070 SUPER", "NVIDIA GeForce RTX 4090 Laptop GPU", "NVIDIA GH200 480GB", "Some New GPU"]
)
def test_unknown_or_different_gpus_get_no_table_peak(name: str) -> None:
    assert gpu_table_peak(name, "bf16") is None


def test_gpu_table_values_are_dense_datasheet_numbers() -> None:
    assert gpu_table_peak("NVIDIA A100-SXM4-80GB", "bfloat16") == 312 * T
    assert gpu_table_peak("NVIDIA A100-SXM4-80GB", "tf32") == 156 * T
    assert gpu_table_peak("NVIDIA A100-SXM4-80GB", "float32") == 19.5 * T
    assert gpu_table_peak("NVIDIA H100 80GB HBM3", "bf16") == 989.5 * T
    assert gpu_table_peak("NVIDIA H100 PCIe", "bf16") == 756.5 * T
    assert gpu_table_peak("NVIDIA H100 NVL", "bf16") == 835.5 * T
    # "4070 Ti" must not be read as a 4070 (or the other way round)
    assert gpu_table_peak("NVIDIA GeForce RTX 4070 Ti", "fp16") == 80.2 * T
    assert gpu_table_peak("NVIDIA GeForce RTX 4070", "fp16") == 58.3 * T
    # Volta and Turing have no bf16 tensor cores: no peak rather than a wrong one
    assert gpu_table_peak("Tesla V100-SXM2-16GB", "bf16") is None
    assert gpu_table_peak("Tesla T4", "fp16") == 65 * T


def test_normalize_dtype_maps_trainer_names_and_tf32_on_cuda() -> None:
    assert normalize_dtype("float32") == "fp32"
    assert normalize_dtype("bfloat16") == "bf16"
    assert normalize_dtype("torch.float16") == "fp16"
    assert normalize_dtype("float32", "cuda", allow_tf32=True) == "tf32"
    assert normalize_dtype("float32", "cuda", allow_tf32=False) == "fp32"
    assert normalize_dtype("tf32", "cpu") == "fp32"  # no tf32 on CPU
    with pytest.raises(ValueError):
        normalize_dtype("int8")


# ---------------------------------------------------------------- CPU theoretical


def test_avx2_fma_peak_is_cores_times_clock_times_32() -> None:
    info = cpu({"avx", "avx2", "fma"})
    assert cpu_theoretical_peak(info, "fp32", threads=8) == 4 * 3.0e9 * 32  # threads capped at physical cores
    assert cpu_theoretical_peak(info, "fp32", threads=2) == 2 * 3.0e9 * 32
    # no native bf16: bf16 runs at the fp32 rate
    assert cpu_theoretical_peak(info, "bf16", threads=4) == 4 * 3.0e9 * 32


def test_avx512_fma_units_heuristic() -> None:
    client = cpu({"avx2", "fma", "avx512f"}, model="11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz")
    gold6 = cpu({"avx2", "fma", "avx512f"}, model="Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz")
    silver = cpu({"avx2", "fma", "avx512f"}, model="Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz")
    zen4 = cpu({"avx2", "fma", "avx512f"}, model="AMD Ryzen 9 7950X 16-Core Processor", vendor="AuthenticAMD")
    assert cpu_flops_per_cycle(client, "fp32")[0] == 32
    assert cpu_flops_per_cycle(gold6, "fp32")[0] == 64
    assert cpu_flops_per_cycle(silver, "fp32")[0] == 32
    assert cpu_flops_per_cycle(zen4, "fp32")[0] == 32


def test_avx512_bf16_doubles_and_amx_gives_1024() -> None:
    cooper = cpu({"avx2", "fma", "avx512f", "avx512_bf16"}, model="Intel(R) Xeon(R) Platinum 8380H CPU @ 2.90GHz")
    spr = cpu({"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, model="Intel(R) Xeon(R) Platinum 8480+")
    assert cpu_theoretical_peak(cooper, "bfloat16", 4) == 4 * 3.0e9 * 128
    assert cpu_theoretical_peak(spr, "bf16", 4) == 4 * 3.0e9 * 1024
    assert cpu_theoretical_peak(spr, "fp32", 4) == 4 * 3.0e9 * 64


def test_neon_and_arm_bf16() -> None:
    graviton2 = cpu({"fp", "asimd"}, arch="aarch64", model="")
    assert cpu_theoretical_peak(graviton2, "fp32", 4) == 4 * 3.0e9 * 16
    with_bf16 = cpu({"fp", "asimd", "bf16"}, arch="aarch64")
    assert cpu_flops_per_cycle(with_bf16, "bf16")[0] == 64


def test_clock_falls_back_to_model_name_then_psutil_then_unknown() -> None:
    named = cpu({"avx2", "fma"}, model="Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", mhz=None)
    assert cpu_max_mhz(named, NO_FREQ_PSUTIL) == (3200.0, "model name")
    assert cpu_theoretical_peak(named, "fp32", 6, psutil_module=NO_FREQ_PSUTIL) == 4 * 3.2e9 * 32

    bare = cpu({"avx2", "fma"}, model="Intel(R) Xeon(R) Processor", mhz=None)
    with_psutil = SimpleNamespace(cpu_freq=lambda: SimpleNamespace(current=2000.0, min=800.0, max=3500.0))
    assert cpu_max_mhz(bare, with_psutil) == (3500.0, "psutil")
    # a VM that hides every clock: unknown, never an invented number
    assert cpu_max_mhz(bare, NO_FREQ_PSUTIL) == (None, "unknown")
    assert cpu_theoretical_peak(bare, "fp32", 2, psutil_module=NO_FREQ_PSUTIL) is None


# ---------------------------------------------------------------- formatting


def test_format_flops_units() -> None:
    assert format_flops(188e9) == "188 GFLOP/s"
    assert format_flops(19.5e12) == "19.5 TFLOP/s"
    assert format_flops(2.16e12) == "2.16 TFLOP/s"
    assert format_flops(None) == "n/a"


def test_format_mfu_names_the_peak_and_theoretical() -> None:
    p = PeakFlops(188e9, "fp32", "measured", "cpu", 480e9, make_label(188e9, "fp32", "measured"))
    assert p.label == "188 GFLOP/s (fp32, measured)"
    assert mfu(105.28e9, p) == pytest.approx(0.56)
    assert format_mfu(105.28e9, p) == "MFU 56% of 188 GFLOP/s (fp32, measured) · 22% of theoretical"
    no_theory = PeakFlops(188e9, "fp32", "measured", "cpu", None, p.label)
    assert format_mfu(5e9, no_theory) == "MFU 2.7% of 188 GFLOP/s (fp32, measured)"
    table = PeakFlops(312e12, "bf16", "table", "A100", 312e12, make_label(312e12, "bf16", "table"))
    assert format_mfu(156e12, table) == "MFU 50% of 312 TFLOP/s (bf16, datasheet)"


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
    monkeypatch.setattr(peak, "device_name", lambda device: "NVIDIA H100 PCIe")
    known = resolve_peak("cuda", "bfloat16", 8)
    assert known is not None and known.source == "table" and known.flops == 756.5 * T
    assert known.label == "756 TFLOP/s (bf16, datasheet)"
    assert fake_measure == []
    monkeypatch.setattr(peak, "device_name", lambda device: "NVIDIA Future GPU 9000")
    unknown = resolve_peak("cuda:0", "bfloat16", 8)
    assert unknown is not None and unknown.source == "measured" and fake_measure == [("bf16", 8, "cuda:0")]
