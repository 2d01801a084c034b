"""CPU reader on fake psutil and a temporary sysfs tree: missing readings are None with a reason."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tuigpt.telemetry.cpu import CpuReader


def freq(current: float, low: float = 0.0, high: float = 0.0) -> SimpleNamespace:
    return SimpleNamespace(current=current, min=low, max=high)


def temp(label: str, current: float) -> SimpleNamespace:
    return SimpleNamespace(label=label, current=current, high=None, critical=None)


class FakePsutil:
    """The psutil functions CpuReader calls; ``broken`` names functions that raise."""

    def __init__(self, *, percent: list[float] | None = None, freq_now: float = 2500.0, freq_min: float = 800.0,
                 freq_max: float = 4000.0, temps: dict[str, list[Any]] | None = None, broken: set[str] = frozenset()):
        self.percent = percent if percent is not None else [50.0, 60.0]
        self.freq_now, self.freq_min, self.freq_max = freq_now, freq_min, freq_max
        self.temps = temps if temps is not None else {}
        self.broken = broken

    def _check(self, name: str) -> None:
        if name in self.broken:
            raise RuntimeError(f"{name} exploded")

    def cpu_percent(self, percpu: bool = False) -> list[float]:
        self._check("cpu_percent")
        return list(self.percent)

    def cpu_freq(self, percpu: bool = False) -> Any:
        self._check("cpu_freq")
        if percpu:
            return [freq(self.freq_now) for _ in self.percent]
        return freq(self.freq_now, self.freq_min, self.freq_max)

    def sensors_temperatures(self) -> dict[str, list[Any]]:
        self._check("sensors_temperatures")
        return self.temps

    def getloadavg(self) -> tuple[float, float, float]:
        self._check("getloadavg")
        return (1.5, 1.0, 0.5)

    def Process(self, pid: int) -> Any:  # noqa: N802 - psutil's name
        self._check("Process")
        return SimpleNamespace(memory_info=lambda: SimpleNamespace(rss=123_000_000))

    def virtual_memory(self) -> Any:
        self._check("virtual_memory")
        return SimpleNamespace(total=16 * 2**30, available=10 * 2**30)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_vm_without_sensors_reports_none_with_reasons_not_zero(tmp_path: Path) -> None:
    ps = FakePsutil(freq_now=2000.0, freq_min=0.0, freq_max=0.0, temps={})
    snap = CpuReader(ps, sys_root=tmp_path).read()
    assert snap.freq_mhz == 2000.0
    assert snap.freq_min_mhz is None and snap.freq_max_mhz is None  # psutil's 0.0 means "not known"
    assert snap.temperatures == {} and snap.temp_max_c is None
    assert snap.throttle_count is None and snap.throttling is None and snap.package_power_w is None
    for name in ("freq_max_mhz", "temperatures", "temp_max_c", "throttle_count", "package_power_w", "throttling"):
        assert snap.unavailable[name], name
    assert snap.mem_total_bytes == 16 * 2**30 and snap.mem_used_bytes == 6 * 2**30
    assert snap.process_rss_bytes == 123_000_000 and snap.load_avg == (1.5, 1.0, 0.5)


def test_only_cpu_sensors_count_and_the_hottest_is_reported(tmp_path: Path) -> None:
    temps = {
        "coretemp": [temp("Package id 0", 71.0), temp("Core 0", 68.0), temp("Core 1", 0.0)],
        "nvme": [temp("Composite", 90.0)],  # a disk, not the CPU
    }
    snap = CpuReader(FakePsutil(temps=temps), sys_root=tmp_path).read()
    assert snap.temperatures == {"coretemp:Package id 0": 71.0, "coretemp:Core 0": 68.0}
    assert snap.temp_max_c == 71.0
    assert "temperatures" not in snap.unavailable


def test_every_psutil_failure_becomes_a_reason_not_an_exception(tmp_path: Path) -> None:
    broken = {"cpu_percent", "cpu_freq", "sensors_temperatures", "getloadavg", "Process", "virtual_memory"}
    snap = CpuReader(FakePsutil(broken=broken), sys_root=tmp_path).read()
    assert snap.per_core_percent is None and snap.freq_mhz is None and snap.load_avg is None
    assert snap.process_rss_bytes is None and snap.mem_total_bytes is None and snap.temperatures == {}
    assert "exploded" in snap.unavailable["per_core_percent"]
    assert "exploded" in snap.unavailable["mem_total_bytes"]


def test_throttle_counters_rising_mean_throttling(tmp_path: Path) -> None:
    for cpu in (0, 1):
        write(tmp_path / f"devices/system/cpu/cpu{cpu}/thermal_throttle/core_throttle_count", "5\n")
        write(tmp_path / f"devices/system/cpu/cpu{cpu}/thermal_throttle/package_throttle_count", "2\n")
    reader = CpuReader(FakePsutil(), sys_root=tmp_path)
    first = reader.read()
    assert first.throttle_count == 14 and first.throttling is False
    write(tmp_path / "devices/system/cpu/cpu1/thermal_throttle/core_throttle_count", "9\n")
    rising = reader.read()
    assert rising.throttle_count == 18 and rising.throttling is True
    assert reader.read().throttling is False  # counters steady again


def test_clock_under_base_while_busy_means_throttling(tmp_path: Path) -> None:
    write(tmp_path / "devices/system/cpu/cpu0/cpufreq/base_frequency", "3000000\n")  # kHz
    busy_slow = CpuReader(FakePsutil(percent=[95.0, 99.0], freq_now=2100.0), sys_root=tmp_path).read()
    assert busy_slow.throttling is True
    idle_slow = CpuReader(FakePsutil(percent=[5.0, 3.0], freq_now=1200.0), sys_root=tmp_path).read()
    assert idle_slow.throttling is False  # idle cores clock down on purpose
    busy_fast = CpuReader(FakePsutil(percent=[95.0, 99.0], freq_now=3900.0), sys_root=tmp_path).read()
    assert busy_fast.throttling is False


def test_rapl_power_from_energy_delta_with_wraparound(tmp_path: Path) -> None:
    zone = tmp_path / "class/powercap/intel-rapl:0"
    write(zone / "max_energy_range_uj", "262143328850\n")
    write(zone / "energy_uj", "1000000\n")
    write(tmp_path / "class/powercap/intel-rapl:0:0/energy_uj", "999999999\n")  # a sub-zone: not added
    clock = Clock()
    reader = CpuReader(FakePsutil(), sys_root=tmp_path, clock=clock)
    first = reader.read()
    assert first.package_power_w is None and first.unavailable["package_power_w"] == "needs two samples"
    clock.t += 2.0
    write(zone / "energy_uj", "51000000\n")  # 50 J in 2 s
    write(tmp_path / "class/powercap/intel-rapl:0:0/energy_uj", "1999999999\n")  # inside the package: not extra
    assert reader.read().package_power_w == pytest.approx(25.0)
    clock.t += 1.0
    write(zone / "energy_uj", "1000000\n")  # wrapped: 262143.32885 J range - 51 J + 1 J
    expected = (262143328850 - 51000000 + 1000000) / 1e6 / 1.0
    assert reader.read().package_power_w == pytest.approx(expected)


def test_unreadable_rapl_says_why(tmp_path: Path) -> None:
    (tmp_path / "class/powercap/intel-rapl:0/energy_uj").mkdir(parents=True)  # unreadable as a file
    reader = CpuReader(FakePsutil(), sys_root=tmp_path)
    reader.read()
    snap = reader.read()
    assert snap.package_power_w is None
    assert "not readable" in snap.unavailable["package_power_w"]


def test_real_machine_sample_never_raises() -> None:
    snap = CpuReader().read()
    assert snap.mem_total_bytes and snap.mem_total_bytes > 0
    for value in (snap.freq_mhz, snap.temp_max_c, snap.package_power_w):
        assert value is None or value > 0  # never a made-up 0
