"""ThrottleDetector on synthetic events: warns on throttling, silent on steady or unexplained runs."""

from __future__ import annotations

import random
import re
from types import SimpleNamespace

from tuigpt.run.events import Event, IterationStats, Notice, TelemetrySnapshot
from tuigpt.telemetry.throttle import ThrottleDetector


class Run:
    """Feeds a detector iterations and CPU readings on a synthetic clock."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []
        self.detector = ThrottleDetector(self.notices.append)
        self.t = 1000.0
        self.it = 0

    def cpu(self, mhz: float | None = 3900.0, temp: float | None = 60.0, count: int | None = None) -> None:
        snap = SimpleNamespace(freq_mhz=mhz, temp_max_c=temp, throttle_count=count, throttling=None)
        self.detector(TelemetrySnapshot(kind="cpu", data=snap, time=self.t))

    def iters(self, n: int, ms: float, *, jitter: float = 0.0, cpu: dict | None = None, every: int = 5) -> None:
        for _ in range(n):
            value = ms * (1 + random.uniform(-jitter, jitter))
            self.t += value / 1000
            self.it += 1
            self.detector(IterationStats(iter=self.it, loss=2.0, lr=1e-3, ms_per_iter=value, tokens_per_sec=1.0,
                                         mfu=None, tokens_seen=self.it, train_seconds=self.t, time=self.t))
            if cpu is not None and self.it % every == 0:
                self.cpu(**cpu)

    @property
    def warnings(self) -> list[str]:
        return [n.message for n in self.notices if n.level == "warning"]


def test_warns_when_slower_while_clock_falls_and_temperature_climbs() -> None:
    run = Run()
    run.iters(60, 100.0, cpu={"mhz": 3900.0, "temp": 62.0})
    assert run.warnings == []
    run.iters(40, 130.0, cpu={"mhz": 3000.0, "temp": 96.0})
    assert len(run.warnings) == 1
    message = run.warnings[0]
    found = re.match(r"likely thermal throttling: (\d+) ms/iter vs 100 ms/iter earlier \(\+(\d+)%\); ", message)
    assert found, message
    assert 115 <= int(found[1]) <= 130 and 15 <= int(found[2]) <= 30
    assert "3.90 → 3.00 GHz" in message and "62 → 96 °C" in message


def test_rising_throttle_counters_are_evidence() -> None:
    run = Run()
    run.iters(60, 50.0, cpu={"mhz": None, "temp": None, "count": 10})
    run.iters(40, 70.0, cpu={"mhz": None, "temp": None, "count": 250})
    assert len(run.warnings) == 1 and "throttle counters +240" in run.warnings[0]


def test_at_most_one_warning_a_minute() -> None:
    run = Run()
    run.iters(60, 100.0, cpu={"mhz": 3900.0})
    run.iters(400, 130.0, cpu={"mhz": 3000.0})  # 52 s of throttled training
    assert len(run.warnings) == 1
    run.iters(100, 130.0, cpu={"mhz": 3000.0})  # past the minute
    assert len(run.warnings) == 2


def test_steady_noisy_run_is_silent() -> None:
    random.seed(4)
    run = Run()
    run.iters(2000, 100.0, jitter=0.08, cpu={"mhz": 3900.0, "temp": 70.0})
    assert run.warnings == []


def test_slower_without_hardware_evidence_is_not_called_throttling() -> None:
    run = Run()
    run.iters(60, 100.0, cpu={"mhz": 3900.0, "temp": 60.0})
    run.iters(60, 140.0, cpu={"mhz": 3900.0, "temp": 61.0})  # another process took the cores, say
    assert run.warnings == []


def test_clock_dip_without_slowdown_is_silent() -> None:
    run = Run()
    run.iters(60, 100.0, cpu={"mhz": 3900.0})
    run.iters(60, 101.0, cpu={"mhz": 3000.0, "temp": 99.0})
    assert run.warnings == []


def test_gpu_thermal_reasons_are_evidence() -> None:
    run = Run()

    def gpu(reasons: list[str], mhz: float) -> None:
        reading = SimpleNamespace(sm_clock_mhz=mhz, temp_c=80.0, throttle_reasons=reasons)
        run.detector(TelemetrySnapshot(kind="gpu", data=SimpleNamespace(gpus=[reading]), time=run.t))

    gpu([], 1980.0)
    run.iters(60, 20.0)
    gpu(["thermal (hardware)"], 1400.0)
    run.iters(60, 26.0)
    assert len(run.warnings) == 1
    assert "GPU SM clock 1980 → 1400 MHz" in run.warnings[0] and "thermal (hardware)" in run.warnings[0]


def test_other_events_are_ignored() -> None:
    run = Run()
    run.detector(Event())
    run.detector(TelemetrySnapshot(kind="gpu", data=SimpleNamespace(gpus=[])))
    assert run.notices == []


def _gpu(run: Run, mhz: float | None, temp: float, reasons: list[str] | None) -> None:
    reading = SimpleNamespace(sm_clock_mhz=mhz, temp_c=temp, throttle_reasons=reasons)
    run.detector(TelemetrySnapshot(kind="gpu", data=SimpleNamespace(gpus=[reading]), time=run.t))


def test_a_warmer_gpu_at_a_steady_clock_is_not_called_throttling() -> None:
    """What an H200 run showed: 10 -> 13 ms/iter (evals, samples, a busy host) while the GPU warmed 46 -> 51 C at
    1980 MHz with no NVML reason set. That is no evidence of throttling."""
    run = Run()
    _gpu(run, 1980.0, 46.0, [])
    run.iters(60, 10.0)
    _gpu(run, 1980.0, 51.0, [])
    run.iters(60, 13.0)
    assert run.warnings == []


def test_temperature_counts_only_where_the_clock_cannot_be_read() -> None:
    run = Run()  # a laptop whose cpufreq is hidden: the temperature is all there is
    run.iters(60, 100.0, cpu={"mhz": None, "temp": 60.0})
    run.iters(40, 130.0, cpu={"mhz": None, "temp": 90.0})
    assert len(run.warnings) == 1 and "CPU temperature 60 → 90 °C" in run.warnings[0]
    gpu_run = Run()  # NVML answers neither the clock nor the reasons
    _gpu(gpu_run, None, 45.0, None)
    gpu_run.iters(60, 10.0)
    _gpu(gpu_run, None, 83.0, None)
    gpu_run.iters(60, 13.0)
    assert len(gpu_run.warnings) == 1 and "GPU temperature 45 → 83 °C" in gpu_run.warnings[0]
