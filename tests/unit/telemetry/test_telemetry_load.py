"""The load a peak is timed under: other processes' share of this process's CPUs, from kernel CPU times."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tuigpt.telemetry import load
from tuigpt.telemetry.load import BUSY_SHARE, Load, LoadMeter


class FakePsutil:
    """Per-CPU busy seconds and this process's CPU seconds, advanced by the test."""

    def __init__(self, cpus: int) -> None:
        self.busy = [0.0] * cpus
        self.own = 0.0

    def cpu_times(self, percpu: bool = False) -> list[SimpleNamespace]:
        assert percpu
        return [SimpleNamespace(user=b * 0.5, nice=0.0, system=b * 0.5, idle=100.0, iowait=1.0, irq=0.0, softirq=0.0,
                                steal=0.0, guest=b * 0.5) for b in self.busy]  # guest is inside user: not added

    def Process(self) -> SimpleNamespace:  # noqa: N802  (psutil's name)
        return SimpleNamespace(cpu_times=lambda: SimpleNamespace(user=self.own, system=0.0))


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> FakePsutil:
    monkeypatch.setattr(load, "_our_cpus", lambda: [0, 1])
    clock = iter([0.0, 1.0])  # each measurement spans one second of wall time
    monkeypatch.setattr(load.time, "perf_counter", lambda: next(clock))
    return FakePsutil(2)


def test_others_share_is_busy_time_minus_our_own(two_cpus: FakePsutil) -> None:
    meter = LoadMeter(two_cpus)
    two_cpus.busy = [1.0, 1.0]  # both CPUs fully busy for the second...
    two_cpus.own = 1.0  # ...half of it ours: another process burned one CPU's worth
    seen = meter.stop()
    assert seen is not None and seen.others == pytest.approx(0.5) and seen.cpus == 2 and seen.busy
    assert seen.describe() == "busy: other processes used 50% of 2 CPUs"


def test_our_own_work_alone_is_idle(two_cpus: FakePsutil) -> None:
    meter = LoadMeter(two_cpus)
    two_cpus.busy = [0.98, 0.99]
    two_cpus.own = 1.95
    seen = meter.stop()
    assert seen is not None and seen.others < BUSY_SHARE and not seen.busy
    assert seen.describe().startswith("idle: other processes used 1% of 2 CPUs")


def test_unreadable_cpu_times_claim_nothing() -> None:
    class Broken:
        def Process(self) -> None:  # noqa: N802
            raise OSError("no /proc")

    assert LoadMeter(Broken()).stop() is None


def test_round_trip_through_a_cache_entry() -> None:
    seen = Load(0.4812, 2, 3.5)
    assert Load.from_dict(seen.to_dict()) == Load(0.4812, 2, 3.5)
    assert Load.from_dict(None) is None and Load.from_dict({"others": "x", "cpus": 2}) is None
