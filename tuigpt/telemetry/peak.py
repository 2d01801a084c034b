"""Peak FLOP/s per device and dtype, and the MFU arithmetic built on it.

MFU (model FLOPs utilisation) = achieved FLOP/s / peak FLOP/s. nanoGPT divides by
an A100's 312 TFLOP/s whatever the machine, which prints "MFU 0.03%" on a laptop.
Here the denominator is the peak of *this* device for *this* dtype:

* CPU: a short matmul calibration (:mod:`tuigpt.engine.calibration` times it, :mod:`.load` watches how busy
  the machine was meanwhile, :mod:`.peak_cache` keeps both), with the ISA's theoretical peak beside it
  (``cpu_theoretical_peak``) for context.
* Known GPU: the vendor's dense (non-sparse) tensor-core figure (``GPU_TABLE``).
* Unknown GPU: measured like a CPU.

Nothing here imports torch. See docs/TELEMETRY.md for the sources and the heuristics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuigpt.run import fmt
from tuigpt.telemetry.cpuinfo import CpuInfo

# the calibration cache lives in peak_cache; its functions are re-exported here, where callers look for them
from tuigpt.telemetry.peak_cache import (  # noqa: F401
    Calibration,
    cache_key,
    cached_calibration,
    cached_entry,
    cached_peak,
    peaks_cache_path,
    store_entry,
    store_peak,
)

DTYPES = ("fp32", "tf32", "bf16", "fp16")

# Both the trainer's torch-style names and the short names are accepted.
_DTYPE_ALIASES = {
    "float32": "fp32",
    "fp32": "fp32",
    "float": "fp32",
    "tf32": "tf32",
    "bfloat16": "bf16",
    "bf16": "bf16",
    "float16": "fp16",
    "fp16": "fp16",
    "half": "fp16",
}

_SOURCE_WORDS = {"measured": "measured", "table": "datasheet", "theoretical": "theoretical"}


@dataclass(frozen=True)
class PeakFlops:
    """The denominator of MFU: one device's peak for one dtype, and where it came from."""

    flops: float  # FLOP/s
    dtype: str  # "fp32" | "tf32" | "bf16" | "fp16"
    source: str  # "measured" | "table" | "theoretical"
    device_name: str  # CPU model or GPU name
    theoretical_flops: float | None  # hardware ceiling, None when unknown
    label: str  # e.g. "188 GFLOP/s (fp32, measured 2026-11-22 10:32, idle)"
    calibration: Calibration | None = None  # the measurement, when source is "measured"

    @property
    def warning(self) -> str | None:
        """What a run or a bench must say loudly about this peak (measured while busy), or None."""
        return self.calibration.busy_warning("the MFU peak") if self.calibration is not None else None


# ---------------------------------------------------------------- labels


def make_label(flops: float, dtype: str, source: str, calibration: Calibration | None = None) -> str:
    """e.g. "188 GFLOP/s (fp32, measured 2026-11-22 10:32, idle)", "989 TFLOP/s (bf16, datasheet)"."""
    if source == "measured" and calibration is not None:
        busy = ": MFU reads high" if calibration.busy else ""
        return f"{fmt.flops(flops)} ({dtype}, {calibration.when()}{busy})"
    return f"{fmt.flops(flops)} ({dtype}, {_SOURCE_WORDS.get(source, source)})"


def normalize_dtype(dtype: str, device: str = "cpu", *, allow_tf32: bool = False) -> str:
    """fp32/tf32/bf16/fp16 from a torch-style name.

    On CUDA, float32 matmuls run as tf32 only when torch.backends.cuda.matmul.allow_tf32 is on (the
    engine passes it as ``allow_tf32``); on CPU there is no tf32.
    """
    key = _DTYPE_ALIASES.get(str(dtype).lower().removeprefix("torch."))
    if key is None:
        raise ValueError(f"unknown dtype {dtype!r}: expected one of float32, bfloat16, float16")
    if not device.startswith("cuda"):
        return "fp32" if key == "tf32" else key
    if key == "fp32":
        return "tf32" if allow_tf32 else "fp32"
    return key


# ---------------------------------------------------------------- GPU table

# Dense (no structured sparsity) peaks in TFLOP/s: fp32 (CUDA cores), tf32, bf16, fp16
# (tensor cores, fp32 accumulate: what PyTorch matmuls use). None: no such tensor path.
# Keys are upper-case tokens that must all appear in the device name; the entry with
# most tokens wins, so "H100 NVL" beats "H100".
_T = 1e12
GPU_TABLE: dict[tuple[str, ...], dict[str, float | None]] = {
    # H200 datasheet (SXM): 67 / 989 / 1979 / 1979 TFLOPS "with sparsity" for tf32/bf16/fp16 -> halved.
    ("H200",): {"fp32": 67 * _T, "tf32": 494.7 * _T, "bf16": 989.5 * _T, "fp16": 989.5 * _T},
    # H200 datasheet (NVL): 60 / 835 / 1671 / 1671 with sparsity -> halved.
    ("H200", "NVL"): {"fp32": 60 * _T, "tf32": 417.5 * _T, "bf16": 835.5 * _T, "fp16": 835.5 * _T},
    # H100 datasheet (SXM; "NVIDIA H100 80GB HBM3"): 67 / 989 / 1979 / 1979 with sparsity.
    ("H100",): {"fp32": 67 * _T, "tf32": 494.7 * _T, "bf16": 989.5 * _T, "fp16": 989.5 * _T},
    # H100 datasheet (PCIe): 51 / 756 / 1513 / 1513 with sparsity.
    ("H100", "PCIE"): {"fp32": 51 * _T, "tf32": 378 * _T, "bf16": 756.5 * _T, "fp16": 756.5 * _T},
    # H100 datasheet (NVL, per GPU): 60 / 835 / 1671 / 1671 with sparsity.
    ("H100", "NVL"): {"fp32": 60 * _T, "tf32": 417.5 * _T, "bf16": 835.5 * _T, "fp16": 835.5 * _T},
    # A100 datasheet (SXM4 and PCIe, 40 and 80 GB alike): 19.5 / 156 / 312 / 312 dense.
    ("A100",): {"fp32": 19.5 * _T, "tf32": 156 * _T, "bf16": 312 * _T, "fp16": 312 * _T},
    # A10G (AWS G5; NVIDIA publishes no datasheet): 31.52 fp32, 35 tf32, 70 bf16/fp16 dense,
    # the figures AWS/NVIDIA quote for the G5 instance (e.g. Baseten's A10 vs A10G comparison).
    ("A10G",): {"fp32": 31.52 * _T, "tf32": 35 * _T, "bf16": 70 * _T, "fp16": 70 * _T},
    # A10 datasheet: 31.2 / 62.5 / 125 / 125 dense.
    ("A10",): {"fp32": 31.2 * _T, "tf32": 62.5 * _T, "bf16": 125 * _T, "fp16": 125 * _T},
    # L4 datasheet: 30.3 fp32; 120 / 242 / 242 with sparsity -> 60 / 121 / 121.
    ("L4",): {"fp32": 30.3 * _T, "tf32": 60 * _T, "bf16": 121 * _T, "fp16": 121 * _T},
    # L40S datasheet: 91.6 fp32; 183 tf32, 362.05 bf16/fp16 dense.
    ("L40S",): {"fp32": 91.6 * _T, "tf32": 183 * _T, "bf16": 362.05 * _T, "fp16": 362.05 * _T},
    # V100 datasheet: SXM2 15.7 fp32, 125 tensor (fp16 only; no tf32/bf16 on Volta).
    ("V100",): {"fp32": 15.7 * _T, "tf32": None, "bf16": None, "fp16": 125 * _T},
    # V100 datasheet: PCIe 14 fp32, 112 tensor.
    ("V100", "PCIE"): {"fp32": 14 * _T, "tf32": None, "bf16": None, "fp16": 112 * _T},
    # V100S datasheet: 16.4 fp32, 130 tensor.
    ("V100S",): {"fp32": 16.4 * _T, "tf32": None, "bf16": None, "fp16": 130 * _T},
    # T4 datasheet: 8.1 fp32, 65 fp16 mixed precision (Turing: no tf32/bf16).
    ("T4",): {"fp32": 8.1 * _T, "tf32": None, "bf16": None, "fp16": 65 * _T},
    # Ada GeForce whitepaper (appendix A): fp32; tf32; bf16 and fp16 with FP32 accumulate, dense.
    ("RTX", "4090"): {"fp32": 82.6 * _T, "tf32": 82.6 * _T, "bf16": 165.2 * _T, "fp16": 165.2 * _T},
    ("RTX", "4080"): {"fp32": 48.7 * _T, "tf32": 48.7 * _T, "bf16": 97.5 * _T, "fp16": 97.5 * _T},
    ("RTX", "4070", "TI"): {"fp32": 40.1 * _T, "tf32": 40.1 * _T, "bf16": 80.2 * _T, "fp16": 80.2 * _T},
    ("RTX", "4070"): {"fp32": 29.1 * _T, "tf32": 29.1 * _T, "bf16": 58.3 * _T, "fp16": 58.3 * _T},
    ("RTX", "4060", "TI"): {"fp32": 22.1 * _T, "tf32": 22.1 * _T, "bf16": 44.1 * _T, "fp16": 44.1 * _T},
    # Ampere GA102 whitepaper (appendix A): fp32; tf32; bf16 and fp16 with FP32 accumulate, dense
    # (GeForce runs FP32-accumulate tensor math at half the FP16-accumulate rate).
    ("RTX", "3090"): {"fp32": 35.6 * _T, "tf32": 35.6 * _T, "bf16": 71 * _T, "fp16": 71 * _T},
    ("RTX", "3080"): {"fp32": 29.8 * _T, "tf32": 29.8 * _T, "bf16": 59.5 * _T, "fp16": 59.5 * _T},
    ("RTX", "3070"): {"fp32": 20.3 * _T, "tf32": 20.3 * _T, "bf16": 40.6 * _T, "fp16": 40.6 * _T},
    ("RTX", "3060"): {"fp32": 12.7 * _T, "tf32": 12.7 * _T, "bf16": 25.5 * _T, "fp16": 25.5 * _T},
}

# Words that make a different product when they follow a model number ("4070 SUPER",
# "3090 Ti", "4090 Laptop GPU"). A name carrying one that its key lacks is not that entry
# (form factors like PCIe/NVL are not here: the longest matching key picks those).
_VARIANT_WORDS = frozenset({"TI", "SUPER", "LAPTOP", "MOBILE", "MAX", "Q", "D"})


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[\s\-_/()]+", name.upper()) if t]


def gpu_table_key(name: str) -> tuple[str, ...] | None:
    """The GPU_TABLE key for a torch.cuda.get_device_name() string, or None if unknown."""
    tokens = set(_tokens(name))
    best: tuple[str, ...] | None = None
    for key in GPU_TABLE:
        if not set(key) <= tokens:
            continue
        if (tokens & _VARIANT_WORDS) - set(key):
            continue
        if best is None or len(key) > len(best):
            best = key
    return best


def gpu_table_peak(name: str, dtype: str) -> float | None:
    """Dense datasheet peak FLOP/s for this GPU and dtype, None when the GPU (or that path) is unknown."""
    key = gpu_table_key(name)
    if key is None:
        return None
    return GPU_TABLE[key].get(normalize_dtype(dtype, "cuda", allow_tf32=False))


# ---------------------------------------------------------------- CPU theoretical


def cpu_max_mhz(info: CpuInfo, psutil_module: Any = None) -> tuple[float | None, str]:
    """The maximum core clock and where it came from; (None, "unknown") when nothing says.

    Order: cpufreq in sysfs (CpuInfo.max_mhz), the "@ 2.10GHz" in the model name,
    psutil.cpu_freq().max. VMs often hide cpufreq and report max 0: that is unknown, not 0.
    """
    if info.max_mhz:
        return info.max_mhz, "cpufreq"
    match = re.search(r"@\s*([\d.]+)\s*GHz", info.model_name, re.I)
    if match:
        try:
            return float(match.group(1)) * 1000.0, "model name"
        except ValueError:
            pass
    try:
        if psutil_module is None:
            import psutil as psutil_module
        freq = psutil_module.cpu_freq()
        if freq is not None and freq.max and freq.max > 0:
            return float(freq.max), "psutil"
    except Exception:
        pass
    return None, "unknown"


def _avx512_fma_units(info: CpuInfo) -> int:
    """How many 512-bit FMA units a core has (a heuristic: the CPU never says).

    Intel server parts from Ice Lake-SP on (AVX512_IFMA on a Xeon), anything with AMX
    (Sapphire Rapids and later), Xeon Platinum, Gold 6xxx and Xeon W have two; client
    parts, Xeon Silver/Bronze/Gold 5xxx of the Skylake/Cascade Lake era and AMD Zen 4
    (which splits 512-bit ops over 256-bit units) count as one.
    """
    model = info.model_name.upper()
    if "AMD" in model or info.vendor == "AuthenticAMD":
        return 1
    if info.flags & {"amx_tile", "amx_bf16"}:
        return 2
    if "PLATINUM" in model or re.search(r"GOLD\s+6\d", model) or re.search(r"XEON\(R\)\s+W|XEON W", model):
        return 2
    if "XEON" in model and "avx512ifma" in info.flags and not re.search(r"(SILVER|BRONZE|GOLD\s+5)", model):
        return 2
    return 1


def _sve_vector_bits(proc_root: str = "/proc") -> int:
    try:
        return int(Path(proc_root, "sys/abi/sve_default_vector_length").read_text().strip()) * 8
    except (OSError, ValueError):
        return 128  # the architectural minimum: an underestimate never inflates MFU past reality


def cpu_flops_per_cycle(info: CpuInfo, dtype: str) -> tuple[int | None, str]:
    """FLOPs per cycle per core for this ISA and dtype, and how that was worked out."""
    d = normalize_dtype(dtype, "cpu")
    flags = info.flags
    arch = info.arch.lower()
    is_arm = arch in ("aarch64", "arm64") or "asimd" in flags
    if is_arm:
        if "sve" in flags:
            bits = _sve_vector_bits()
            fp32, isa = (bits // 32) * 2 * 2, f"SVE {bits}-bit × 2 FMA pipes"
        elif "asimd" in flags or arch in ("aarch64", "arm64"):
            fp32, isa = 4 * 2 * 2, "NEON 4 fp32 lanes × 2 FMA pipes"
        else:
            return None, "unknown Arm ISA"
        if d == "bf16" and "bf16" in flags:
            return fp32 * 4, isa + ", BF16 BFMMLA (4× fp32)"
        if d == "fp16" and ("asimdhp" in flags or "fphp" in flags):
            return fp32 * 2, isa + ", fp16 arithmetic (2× fp32)"
        return fp32, isa + (" (no native " + d + ": emulated, the fp32 figure is only a ceiling)" if d != "fp32" else "")
    if "avx512f" in flags:
        units = _avx512_fma_units(info)
        fp32, isa = 16 * 2 * units, f"AVX-512, {units} FMA unit{'s' if units > 1 else ''}"
    elif "avx2" in flags and "fma" in flags:
        fp32, isa = 8 * 2 * 2, "AVX2+FMA, 2 FMA units"
    elif "avx" in flags:
        fp32, isa = 8 * 2, "AVX (add + mul, no FMA)"
    elif "sse2" in flags or "sse" in flags:
        fp32, isa = 4 * 2, "SSE"
    else:
        return None, "unknown ISA"
    if d == "bf16":
        if "amx_bf16" in flags:
            return 1024, "AMX-BF16 tiles (1024 bf16 FLOPs/cycle/core)"
        if "avx512_bf16" in flags:
            return fp32 * 2, isa + ", AVX512_BF16 dot products (2× fp32)"
        return fp32, isa + " (no native bf16: emulated, the fp32 figure is only a ceiling)"
    if d == "fp16":
        if "amx_fp16" in flags:
            return 1024, "AMX-FP16 tiles (1024 fp16 FLOPs/cycle/core)"
        if "avx512_fp16" in flags:
            return fp32 * 2, isa + ", AVX512_FP16 (2× fp32)"
        return fp32, isa + " (no native fp16: emulated, the fp32 figure is only a ceiling)"
    return fp32, isa


def cpu_theoretical_peak(info: CpuInfo, dtype: str, threads: int, *, psutil_module: Any = None) -> float | None:
    """min(threads, physical cores) × max clock × FLOPs/cycle/core; None when clock or ISA is unknown."""
    per_cycle, _ = cpu_flops_per_cycle(info, dtype)
    mhz, _ = cpu_max_mhz(info, psutil_module)
    if per_cycle is None or mhz is None:
        return None
    cores = max(1, min(int(threads), info.physical_cores))
    return cores * mhz * 1e6 * per_cycle
