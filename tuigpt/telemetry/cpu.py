"""CPU readings: load per core, who had this process's CPUs (its share, the others', whether contention sets the
speed), clocks, temperatures, throttling, package power, memory.

Every field is read on its own: a reading the machine does not expose is None and
``unavailable[field]`` says why (a VM with no sensors shows "n/a", never 0). A
reader never raises. The reading type is :class:`tuigpt.run.readings.CpuSnapshot`.
"""

from __future__ import annotations

import glob
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import psutil

from tuigpt.run.readings import CpuSnapshot
from tuigpt.telemetry.contention import ContentionWatch
from tuigpt.telemetry.load import MIN_WINDOW_SECONDS, LoadMeter

# psutil.sensors_temperatures() names of CPU sensors, best first. Other chips
# (nvme, wifi, GPU, battery) are not CPU temperatures and are left out.
CPU_SENSORS = ("coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal", "soc_thermal", "x86_pkg_temp", "acpitz")

BUSY_PERCENT = 80.0  # above this mean load, a clock under base means throttling


def _read_int(path: Path | str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


class CpuReader:
    """Reads a CpuSnapshot on demand; keeps what it needs between samples (counters, energy)."""

    def __init__(
        self,
        psutil_module: Any = psutil,
        sys_root: str | os.PathLike[str] = "/sys",
        pid: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        contention: ContentionWatch | None = None,
    ) -> None:
        self._ps = psutil_module
        self._sys = Path(sys_root)
        self._pid = pid if pid is not None else os.getpid()
        self._clock = clock
        self._process: Any = None
        self._last_throttle: int | None = None
        self._last_energy: tuple[float, dict[str, int]] | None = None
        self._base_mhz = self._read_base_mhz()
        # The shares are this process's (its CPU times, its threads' waits): read for another pid they would lie.
        self._meter = LoadMeter(psutil_module) if self._pid == os.getpid() else None
        self._contention = contention or ContentionWatch()
        try:  # psutil measures load between calls: the first call sets the reference
            self._ps.cpu_percent(percpu=True)
        except Exception:
            pass

    # ---------------------------------------------------------------- pieces

    def _read_base_mhz(self) -> float | None:
        khz = _read_int(self._sys / "devices/system/cpu/cpu0/cpufreq/base_frequency")
        return khz / 1000.0 if khz else None

    def _percent(self, why: dict[str, str]) -> list[float] | None:
        try:
            values = self._ps.cpu_percent(percpu=True)
            return [float(v) for v in values] if values else None
        except Exception as exc:
            why["per_core_percent"] = f"psutil.cpu_percent failed: {exc}"
            return None

    def _freqs(self, why: dict[str, str]) -> tuple[float | None, float | None, float | None, list[float] | None]:
        current = low = high = None
        per_core: list[float] | None = None
        try:
            freq = self._ps.cpu_freq()
            if freq is not None:
                current = float(freq.current) if freq.current and freq.current > 0 else None
                low = float(freq.min) if freq.min and freq.min > 0 else None
                high = float(freq.max) if freq.max and freq.max > 0 else None
        except Exception as exc:
            why["freq_mhz"] = f"psutil.cpu_freq failed: {exc}"
        try:
            cores = self._ps.cpu_freq(percpu=True)
            values = [float(f.current) for f in cores or [] if f.current and f.current > 0]
            per_core = values or None
        except Exception:
            per_core = None
        if per_core:
            current = statistics.fmean(per_core)
        if current is None:
            why.setdefault("freq_mhz", "no clock reading (cpufreq hidden, common in VMs)")
        if low is None:
            why["freq_min_mhz"] = "cpufreq does not report a minimum (VM?)"
        if high is None:
            why["freq_max_mhz"] = "cpufreq does not report a maximum (VM?)"
        if per_core is None:
            why["per_core_freq_mhz"] = "no per-core clocks"
        return current, low, high, per_core

    def _temperatures(self, why: dict[str, str]) -> dict[str, float]:
        reader = getattr(self._ps, "sensors_temperatures", None)
        if reader is None:
            why["temperatures"] = "psutil cannot read temperatures on this OS"
            return {}
        try:
            sensors = reader() or {}
        except Exception as exc:
            why["temperatures"] = f"reading sensors failed: {exc}"
            return {}
        temps: dict[str, float] = {}
        for chip in CPU_SENSORS:
            for i, entry in enumerate(sensors.get(chip, [])):
                value = getattr(entry, "current", None)
                if value is None or value <= 0:  # 0 °C from a sensor is a missing reading
                    continue
                label = getattr(entry, "label", "") or str(i)
                temps[f"{chip}:{label}"] = float(value)
        if not temps:
            found = ", ".join(sorted(sensors)) or "none"
            why["temperatures"] = f"no CPU temperature sensor (sensors found: {found})"
        return temps

    def _throttle_count(self, why: dict[str, str]) -> int | None:
        pattern = str(self._sys / "devices/system/cpu/cpu[0-9]*/thermal_throttle/*_throttle_count")
        values = [v for v in (_read_int(p) for p in glob.glob(pattern)) if v is not None]
        if not values:
            why["throttle_count"] = "no thermal_throttle counters in sysfs (not Intel, or a VM)"
            return None
        return sum(values)

    def _package_power(self, why: dict[str, str]) -> float | None:
        root = self._sys / "class/powercap"
        # Top-level zones only ("intel-rapl:0"); "intel-rapl:0:0" are parts of a package.
        zones = sorted(p for p in glob.glob(str(root / "intel-rapl:*")) if re.fullmatch(r"intel-rapl:\d+", Path(p).name))
        if not zones:
            why["package_power_w"] = "no RAPL powercap in sysfs"
            self._last_energy = None
            return None
        now = self._clock()
        energy: dict[str, int] = {}
        for zone in zones:
            value = _read_int(Path(zone) / "energy_uj")
            if value is None:
                why["package_power_w"] = "RAPL energy_uj not readable (root only since Linux 5.10)"
                self._last_energy = None
                return None
            energy[zone] = value
        last, self._last_energy = self._last_energy, (now, energy)
        if last is None or set(last[1]) != set(energy):
            why["package_power_w"] = "needs two samples"
            return None
        dt = now - last[0]
        if dt <= 0:
            why["package_power_w"] = "no time between samples"
            return None
        total_uj = 0
        for zone, value in energy.items():
            delta = value - last[1][zone]
            if delta < 0:  # the counter wrapped at max_energy_range_uj
                span = _read_int(Path(zone) / "max_energy_range_uj")
                if not span:
                    why["package_power_w"] = "RAPL counter wrapped and its range is unknown"
                    return None
                delta += span
            total_uj += delta
        return total_uj / 1e6 / dt

    def _memory(self, why: dict[str, str]) -> tuple[int | None, int | None, int | None]:
        rss = used = total = None
        try:
            if self._process is None:
                self._process = self._ps.Process(self._pid)
            rss = int(self._process.memory_info().rss)
        except Exception as exc:
            why["process_rss_bytes"] = f"process memory unreadable: {exc}"
        try:
            vm = self._ps.virtual_memory()
            total = int(vm.total)
            used = int(vm.total - vm.available)
        except Exception as exc:
            why["mem_used_bytes"] = why["mem_total_bytes"] = f"system memory unreadable: {exc}"
        return rss, used, total

    def _load_avg(self, why: dict[str, str]) -> tuple[float, float, float] | None:
        try:
            one, five, fifteen = self._ps.getloadavg()
            return (float(one), float(five), float(fifteen))
        except Exception as exc:
            why["load_avg"] = f"load average unavailable: {exc}"
            return None

    def _shares(self, why: dict[str, str]) -> tuple[Any, bool | None]:
        """Who had this process's CPUs since the last reading, and whether contention sets the speed now."""
        if self._meter is None:
            why["others_share"] = "shares are measured for the process that reads them only"
            return None, None
        load = self._meter.stop(min_seconds=MIN_WINDOW_SECONDS)
        if load is None:  # (a window too short to count ticks in goes on until the next reading)
            why["others_share"] = "needs two samples (or psutil cannot read CPU times here)"
        else:
            self._meter.start()
        if load is not None and load.stretch is None:
            why["stretch"] = "no scheduler statistics (/proc/self/task/*/schedstat, Linux only)"
        state = self._contention.update(load, self._clock())
        if state is None:
            why["contended"] = why.get("stretch") or why.get("others_share") or "not measured yet"
        return load, state

    # ---------------------------------------------------------------- sample

    def read(self) -> CpuSnapshot:
        why: dict[str, str] = {}
        percent = self._percent(why)
        shares, contended = self._shares(why)
        current, low, high, per_core = self._freqs(why)
        temps = self._temperatures(why)
        count = self._throttle_count(why)
        power = self._package_power(why)
        rss, used, total = self._memory(why)
        load = self._load_avg(why)

        throttling: bool | None = None
        if count is not None:
            throttling = self._last_throttle is not None and count > self._last_throttle
        self._last_throttle = count
        base = self._base_mhz
        if current is not None and base is not None and percent:
            # Under base clock while busy: the CPU is holding back (thermal or power).
            busy_low = statistics.fmean(percent) > BUSY_PERCENT and current < base * 0.98
            throttling = bool(throttling) or busy_low
        if not temps:
            why["temp_max_c"] = why.get("temperatures", "no CPU temperature sensor")
        if throttling is None:
            why["throttling"] = "no throttle counters and no base clock to compare with"

        return CpuSnapshot(
            per_core_percent=percent,
            freq_mhz=current,
            freq_min_mhz=low,
            freq_max_mhz=high,
            per_core_freq_mhz=per_core,
            temperatures=temps,
            temp_max_c=max(temps.values()) if temps else None,
            throttle_count=count,
            throttling=throttling,
            package_power_w=power,
            load_avg=load,
            process_rss_bytes=rss,
            mem_used_bytes=used,
            mem_total_bytes=total,
            unavailable=why,
            own_share=shares.own if shares is not None else None,
            others_share=shares.others if shares is not None else None,
            share_cpus=shares.cpus if shares is not None else None,
            stretch=shares.stretch if shares is not None else None,
            contended=contended,
        )
