"""What CPU this is: model, topology and ISA flags, read from /proc/cpuinfo and sysfs.

Used to pick the training dtype (native bf16 or not), the default thread count
(physical cores, not SMT siblings) and the theoretical peak FLOP/s.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuInfo:
    model_name: str
    arch: str  # platform.machine(): x86_64, aarch64, arm64...
    vendor: str
    physical_cores: int
    logical_cores: int
    flags: frozenset[str]
    max_mhz: float | None  # None when the machine does not say
    base_mhz: float | None

    @property
    def native_bf16(self) -> bool:
        """True when the CPU has bf16 matrix instructions (AVX512_BF16 or AMX-BF16, or Arm BF16)."""
        return bool(self.flags & {"avx512_bf16", "amx_bf16", "bf16"})

    @property
    def bf16_reason(self) -> str:
        """Why native_bf16 is what it is, for the user."""
        found = sorted(self.flags & {"avx512_bf16", "amx_bf16", "bf16"})
        if found:
            return "CPU has " + "/".join(f.upper() for f in found)
        return "CPU has no native bf16 (no AVX512_BF16/AMX)"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _parse_cpuinfo(text: str) -> tuple[str, str, frozenset[str], int, int]:
    """(model, vendor, flags, physical cores, logical cores) from /proc/cpuinfo text."""
    model = vendor = ""
    flags: frozenset[str] = frozenset()
    logical = 0
    cores: set[tuple[str, str]] = set()
    physical_id = core_id = None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if physical_id is not None or core_id is not None:
                cores.add((physical_id or "0", core_id or str(len(cores))))
            physical_id = core_id = None
            continue
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "processor":
            logical += 1
        elif key in ("model name", "cpu model") and not model:
            model = value
        elif key == "vendor_id" and not vendor:
            vendor = value
        elif key in ("flags", "features") and not flags:  # Arm calls them Features
            flags = frozenset(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            core_id = value
    return model, vendor, flags, len(cores), logical


def _sysfs_mhz(root: Path, name: str) -> float | None:
    text = _read(root / "devices/system/cpu/cpu0/cpufreq" / name)
    try:
        return int(text.strip()) / 1000.0 if text else None
    except ValueError:
        return None


def read_cpu_info(proc_root: str | os.PathLike[str] = "/proc", sys_root: str | os.PathLike[str] = "/sys") -> CpuInfo:
    """Read this machine's CPU description; missing files give conservative values, never an exception."""
    text = _read(Path(proc_root) / "cpuinfo") or ""
    model, vendor, flags, physical, logical = _parse_cpuinfo(text)
    logical = logical or (os.cpu_count() or 1)
    if physical == 0:
        try:
            import psutil

            physical = psutil.cpu_count(logical=False) or logical
        except Exception:
            physical = logical
    sys_path = Path(sys_root)
    return CpuInfo(
        model_name=model or platform.processor() or "unknown CPU",
        arch=platform.machine(),
        vendor=vendor,
        physical_cores=max(1, physical),
        logical_cores=logical,
        flags=flags,
        max_mhz=_sysfs_mhz(sys_path, "cpuinfo_max_freq"),
        base_mhz=_sysfs_mhz(sys_path, "base_frequency"),
    )
