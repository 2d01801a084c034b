"""Peak FLOP/s without torch: GPU table matching, CPU theoretical arithmetic, labels."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tuigpt.telemetry.cpuinfo import CpuInfo
from tuigpt.telemetry.peak import (PeakFlops, cpu_flops_per_cycle, cpu_max_mhz, cpu_theoretical_peak, gpu_table_key,
                                   gpu_table_peak, make_label, normalize_dtype)

T = 1e12


def cpu(flags: set[str], *, model: str = "Test CPU", arch: str = "x86_64", cores: int = 4, mhz: float | None = 3000.0,
        vendor: str = "GenuineIntel") -> CpuInfo:
    return CpuInfo(model_name=model, arch=arch, vendor=vendor, physical_cores=cores, logical_cores=cores * 2,
                   flags=frozenset(flags), max_mhz=mhz, base_mhz=None)


NO_FREQ_PSUTIL = SimpleNamespace(cpu_freq=lambda: SimpleNamespace(current=2000.0, min=0.0, max=0.0))


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
    # no native bf16: the fp32 figure is the ceiling (emulated bf16 measures far below it)
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


def test_labels_name_the_source() -> None:
    p = PeakFlops(188e9, "fp32", "measured", "cpu", 480e9, make_label(188e9, "fp32", "measured"))
    assert p.label == "188 GFLOP/s (fp32, measured)"
    assert make_label(312e12, "bf16", "table") == "312 TFLOP/s (bf16, datasheet)"


def test_entries_stored_at_once_all_stay_beside_each_other(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """Other measured decisions live in the same file as the peaks: concurrent writers keep every entry."""
    import threading

    from tuigpt.telemetry.peak import cached_calibration, cached_entry, store_entry

    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(tmp_path))
    threads = [threading.Thread(target=store_entry, args=(f"k{i}", {"flops": 1e9 * (i + 1), "measured_at": 0.0}))
               for i in range(10)]
    threads.append(threading.Thread(target=store_entry, args=("dtype|some decision", {"choice": "bfloat16"})))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [cached_calibration(f"k{i}").flops for i in range(10)] == [1e9 * (i + 1) for i in range(10)]
    assert cached_entry("dtype|some decision") == {"choice": "bfloat16"}
    assert cached_calibration("dtype|some decision") is None  # not a peak: never read as one
