"""Tells the user when training slowed down because the hardware did.

A subscriber of the event bus: it watches ms/iter (IterationStats) and the CPU/GPU
readings (TelemetrySnapshot). When the recent median ms/iter is ``slowdown`` (15%)
above the best median seen so far *and* the hardware shows why (clock down, hotter,
throttle counters rising, NVML thermal/power reasons), it publishes one warning
Notice with the numbers; at most one a minute.

Pure logic on event values: times come from the events, so it is tested with
synthetic events.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass
from typing import Callable

from tuigpt.run.events import Event, IterationStats, Notice, TelemetrySnapshot

# NVML reasons that mean "held back by heat or power", as decoded in gpu.py.
_GPU_HOLDBACK = ("thermal", "power brake", "hardware slowdown", "power cap")


@dataclass
class _Hardware:
    """The last readings that matter for throttling (None: not known)."""

    cpu_mhz: float | None = None
    cpu_temp: float | None = None
    cpu_count: int | None = None
    cpu_throttling: bool | None = None
    gpu_mhz: float | None = None
    gpu_temp: float | None = None
    gpu_reasons: tuple[str, ...] | None = None  # None: NVML could not say; (): it says nothing holds the clock


class ThrottleDetector:
    """Subscriber that publishes "likely thermal throttling: ..." warnings."""

    def __init__(
        self,
        publish: Callable[[Event], None],
        *,
        window: int = 16,  # iterations per median
        warmup: int = 5,  # first iterations ignored (allocation, compilation, caches)
        slowdown: float = 0.15,  # recent median this far above the best median counts as slow
        cooldown_s: float = 60.0,  # at most one warning per this many seconds
        freq_drop: float = 0.05,  # clock this much under its healthy value counts as evidence
        temp_rise_c: float = 5.0,  # this many degrees above healthy counts as evidence
    ) -> None:
        self._publish = publish
        self._window: deque[tuple[float, float]] = deque(maxlen=window)  # (event time, ms/iter)
        self._warmup = warmup
        self._seen = 0
        self._slowdown = slowdown
        self._cooldown = cooldown_s
        self._freq_drop = freq_drop
        self._temp_rise = temp_rise_c
        self._baseline: float | None = None  # best (lowest) rolling median ms/iter
        self._now = _Hardware()
        # Hardware readings with their time and whether training then ran close to the
        # baseline pace: the reference for "the clock fell" is the last at-pace reading
        # taken before the slow window began (readings lead ms/iter medians, which lag).
        self._history: deque[list] = deque(maxlen=600)  # [time, _Hardware, at_pace]
        self._at_pace = True
        self._last_warning: float | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, IterationStats):
            self._on_iteration(event)
        elif isinstance(event, TelemetrySnapshot):
            if event.kind == "cpu":
                self._on_cpu(event.data)
            elif event.kind == "gpu":
                self._on_gpu(event.data)
            self._history.append([event.time, _Hardware(**vars(self._now)), self._at_pace])

    # ---------------------------------------------------------------- inputs

    def _on_cpu(self, snap: object) -> None:
        self._now.cpu_mhz = getattr(snap, "freq_mhz", None)
        self._now.cpu_temp = getattr(snap, "temp_max_c", None)
        self._now.cpu_count = getattr(snap, "throttle_count", None)
        self._now.cpu_throttling = getattr(snap, "throttling", None)

    def _on_gpu(self, snap: object) -> None:
        gpus = getattr(snap, "gpus", None) or []
        if not gpus:
            return
        gpu = gpus[0]  # tuigpt trains on one device
        self._now.gpu_mhz = gpu.sm_clock_mhz
        self._now.gpu_temp = gpu.temp_c
        reasons = gpu.throttle_reasons
        self._now.gpu_reasons = tuple(reasons) if reasons is not None else None

    def _on_iteration(self, stats: IterationStats) -> None:
        self._seen += 1
        if self._seen <= self._warmup or not stats.ms_per_iter > 0:
            return
        self._window.append((stats.time, stats.ms_per_iter))
        if len(self._window) < (self._window.maxlen or 1):
            return
        recent = statistics.median(ms for _, ms in self._window)
        if self._baseline is None or recent < self._baseline:
            self._baseline = recent
        self._at_pace = recent <= self._baseline * (1 + self._slowdown / 3)
        first_time, first_ms = self._window[0]
        window_start = first_time - first_ms / 1000
        if not self._at_pace:
            # Readings taken during this window were already slow, whatever the median said then.
            for entry in reversed(self._history):
                if entry[0] < window_start:
                    break
                entry[2] = False
        if recent < self._baseline * (1 + self._slowdown):
            return
        evidence = self._evidence(self._reference(window_start))
        if not evidence:
            return  # slower for another reason (other processes, a bigger batch...): not ours to guess
        if self._last_warning is not None and stats.time - self._last_warning < self._cooldown:
            return
        self._last_warning = stats.time
        pct = (recent / self._baseline - 1) * 100
        self._publish(
            Notice(
                level="warning",
                message=(
                    f"likely thermal throttling: {recent:.0f} ms/iter vs {self._baseline:.0f} ms/iter earlier "
                    f"(+{pct:.0f}%); " + "; ".join(evidence)
                ),
                time=stats.time,
                topic="throttling",
            )
        )

    # ---------------------------------------------------------------- reasoning

    def _reference(self, before: float) -> _Hardware:
        for when, hardware, at_pace in reversed(self._history):
            if at_pace and when <= before:
                return hardware
        return _Hardware()

    def _evidence(self, ok: _Hardware) -> list[str]:
        """What the hardware says about the slowdown. A falling clock, throttle counters or NVML's reasons are
        evidence; a warmer chip alone is not where its clock (or NVML's reasons) can be read and show nothing:
        a GPU that warms from 46 to 51 °C at a steady clock has not throttled (an H200 run was told it had)."""
        now = self._now
        cpu: list[str] = []
        if now.cpu_mhz and ok.cpu_mhz and now.cpu_mhz <= ok.cpu_mhz * (1 - self._freq_drop):
            cpu.append(f"CPU clock {ok.cpu_mhz / 1000:.2f} → {now.cpu_mhz / 1000:.2f} GHz")
        if now.cpu_count is not None and ok.cpu_count is not None and now.cpu_count > ok.cpu_count:
            cpu.append(f"CPU throttle counters +{now.cpu_count - ok.cpu_count}")
        elif now.cpu_throttling:
            cpu.append("CPU reports throttling")
        cpu_hot = (now.cpu_temp is not None and ok.cpu_temp is not None
                   and now.cpu_temp >= ok.cpu_temp + self._temp_rise)
        cpu_known = bool(now.cpu_mhz and ok.cpu_mhz) or now.cpu_count is not None
        gpu: list[str] = []
        if now.gpu_mhz and ok.gpu_mhz and now.gpu_mhz <= ok.gpu_mhz * (1 - self._freq_drop):
            gpu.append(f"GPU SM clock {ok.gpu_mhz:.0f} → {now.gpu_mhz:.0f} MHz")
        held = [r for r in now.gpu_reasons or () if any(word in r for word in _GPU_HOLDBACK)]
        if held:
            gpu.append("GPU held back: " + ", ".join(held))
        gpu_hot = (now.gpu_temp is not None and ok.gpu_temp is not None
                   and now.gpu_temp >= ok.gpu_temp + self._temp_rise)
        gpu_known = bool(now.gpu_mhz and ok.gpu_mhz) or now.gpu_reasons is not None
        if cpu_hot and (cpu or not cpu_known):
            cpu.append(f"CPU temperature {ok.cpu_temp:.0f} → {now.cpu_temp:.0f} °C")
        if gpu_hot and (gpu or not gpu_known):
            gpu.append(f"GPU temperature {ok.gpu_temp:.0f} → {now.gpu_temp:.0f} °C")
        return cpu + gpu
