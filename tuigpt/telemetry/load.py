"""How busy the machine is while something is timed: the CPU time other processes took meanwhile, and how much
they slowed this process down.

A matmul peak timed while something else runs reads low (on a 2-core VM a busy box gave 97 GFLOP/s where a
quiet one gave 200), and every MFU divided by it then reads high. What decides is the share of this process's
CPUs (its affinity mask) that *other* processes, and a hypervisor's steal, used during the timing: all the
busy CPU time the kernel counts on those CPUs minus this process's own. The 1-minute load average is kept
beside it for context only: it lags by a minute and counts this process too.

On a machine already saturated the share saturates too (82% of a CPU before four more busy loops arrived, 96%
after, while this process went 7x slower): Linux's scheduler statistics say directly how long this process's
threads waited, runnable, for a CPU someone else held (/proc/self/task/*/schedstat). ``stretch`` is the wall time
its running took over the time it ran: 1.0 alone, 2.0 beside one busy loop on its CPU.

Nothing here imports torch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

BUSY_SHARE = 0.20  # others used more than a fifth of our CPUs: the timing shared its cores
PROBE_SECONDS = 0.25  # a quick "is it quiet now?" look before re-measuring
# The kernel counts CPU time in ticks of 10 ms (USER_HZ 100): over a 7 ms window the share reads 0% or 100%. A
# window shorter than this measures no load (stop(min_seconds=...) then says None).
MIN_WINDOW_SECONDS = 0.2


@dataclass(frozen=True)
class Load:
    """What the rest of the machine did during a measurement."""

    others: float  # share (0..1) of this process's CPUs that other processes and steal used
    cpus: int  # how many CPUs that share is of
    load_avg: float | None  # the 1-minute load average at the end (this process included)
    stretch: float | None = None  # (running + waiting for a CPU) / running, this process's threads; None: unknown
    own: float | None = None  # share (0..1) of those CPUs this process used; None: unknown

    @property
    def busy(self) -> bool:
        return self.others > BUSY_SHARE

    def share(self) -> str:
        """e.g. "other processes used 48% of 2 CPUs"."""
        return f"other processes used {self.others * 100:.0f}% of {self.cpus} CPU{'s' * (self.cpus != 1)}"

    def describe(self) -> str:
        """e.g. "busy: other processes used 48% of 2 CPUs", "idle: other processes used 3% of 16 CPUs"."""
        return f"{'busy' if self.busy else 'idle'}: {self.share()}"

    def to_dict(self) -> dict[str, Any]:
        return {"others": round(self.others, 4), "cpus": self.cpus, "load_avg": self.load_avg,
                "stretch": None if self.stretch is None else round(self.stretch, 4)}

    @classmethod
    def from_dict(cls, data: Any) -> Load | None:
        """The Load a cache entry recorded; None when it recorded none (or garbage)."""
        if not isinstance(data, dict):
            return None
        try:
            load_avg, stretch = data.get("load_avg"), data.get("stretch")
            return cls(float(data["others"]), int(data["cpus"]), None if load_avg is None else float(load_avg),
                       None if stretch is None else float(stretch))
        except (KeyError, TypeError, ValueError):
            return None


def _run_and_wait() -> dict[str, tuple[int, int]] | None:
    """Nanoseconds each of this process's threads ran, and waited runnable for a CPU, so far (Linux schedstat;
    None elsewhere)."""
    threads: dict[str, tuple[int, int]] = {}
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/schedstat") as f:
                fields = f.read().split()
            threads[task] = (int(fields[0]), int(fields[1]))
        except (OSError, ValueError, IndexError):
            continue
    return threads or None


def _stretch(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> float | None:
    """(running + waiting for a CPU) / running over the threads' time between two readings: a thread that ended
    meanwhile drops out, one that started counts from its start (a monitor samples for hours while threads come
    and go)."""
    ran = waited = 0
    for task, (run, wait) in after.items():
        run0, wait0 = before.get(task, (0, 0))
        ran, waited = ran + max(0, run - run0), waited + max(0, wait - wait0)
    return (ran + waited) / ran if ran > 0 else None


def _our_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no affinity: every CPU
        return list(range(os.cpu_count() or 1))


class LoadMeter:
    """Measures what others did between construction (or :meth:`start`) and :meth:`stop`.

    ``stop()`` returns None where psutil cannot read the CPU times (the caller then claims nothing).
    """

    def __init__(self, psutil_module: Any = None) -> None:
        try:
            if psutil_module is None:
                import psutil as psutil_module
            self._psutil = psutil_module
            self._process = psutil_module.Process()
        except Exception:
            self._psutil = None
        self._cpus = _our_cpus()
        self._start: tuple[float, float, float] | None = None
        self._sched: dict[str, tuple[int, int]] | None = None
        self.start()

    def _snapshot(self) -> tuple[float, float, float] | None:
        if self._psutil is None:
            return None
        try:
            per_cpu = self._psutil.cpu_times(percpu=True)
            own = self._process.cpu_times()
        except Exception:
            return None
        busy = 0.0
        for index in self._cpus:
            if index >= len(per_cpu):
                continue
            t = per_cpu[index]
            # guest time is already inside user on Linux; idle and iowait are the only idle states
            busy += sum(getattr(t, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))
        return time.perf_counter(), busy, own.user + own.system

    def start(self) -> None:
        self._start = self._snapshot()
        self._sched = _run_and_wait()

    def stop(self, min_seconds: float = 0.0) -> Load | None:
        """What others did since the start; None when unreadable or the window was under ``min_seconds``."""
        end = self._snapshot()
        if self._start is None or end is None:
            return None
        wall = end[0] - self._start[0]
        if wall <= 0 or wall < min_seconds:
            return None
        others = (end[1] - self._start[1] - (end[2] - self._start[2])) / (wall * len(self._cpus))
        try:
            load_avg: float | None = round(os.getloadavg()[0], 2)
        except (AttributeError, OSError):
            load_avg = None
        stretch = None
        if self._sched is not None and (sched := _run_and_wait()) is not None:
            stretch = _stretch(self._sched, sched)
        own = min(1.0, max(0.0, (end[2] - self._start[2]) / (wall * len(self._cpus))))
        # (the process's and the CPUs' times are counted apart, in ticks: their shares may add up to 101%)
        return Load(min(1.0 - own, max(0.0, others)), len(self._cpus), load_avg, stretch, own)


def load_now(seconds: float = PROBE_SECONDS, psutil_module: Any = None) -> Load | None:
    """What others do over the next ``seconds`` while this process waits (is the machine quiet right now?)."""
    meter = LoadMeter(psutil_module)
    time.sleep(seconds)
    return meter.stop()
