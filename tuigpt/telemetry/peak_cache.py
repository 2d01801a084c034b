"""The calibration cache (``peaks.json`` in the user cache directory) and what one measured peak records.

One JSON object; each key names one measurement (machine, torch version, dtype, threads) and holds an entry
dict. Other measured decisions may live beside the peaks under their own keys: readers only look up their own.
A peak records when it was timed and how busy the machine was meanwhile (:mod:`tuigpt.telemetry.load`), so a
measurement taken on a busy machine is never passed off as the machine's peak.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuigpt.run import fmt
from tuigpt.run.files import atomic_write, locked
from tuigpt.run.paths import cache_dir
from tuigpt.run.user_files import read_regular
from tuigpt.telemetry.load import Load

MAX_AGE_DAYS = 30  # a measurement older than this is redone at the next quiet start (drivers, BIOS, cooling change)


@dataclass(frozen=True)
class Calibration:
    """One timed peak: its value, when it was taken, and what the rest of the machine did meanwhile."""

    flops: float  # FLOP/s
    measured_at: float  # epoch seconds
    load: Load | None  # None: not checked (a GPU timing, psutil unreadable, or an entry of an older tuigpt)
    seconds: float = 2.0  # how long the timing ran

    @property
    def busy(self) -> bool:
        """Other processes shared the CPUs during the timing: the peak reads low, every MFU against it high."""
        return self.load is not None and self.load.busy

    def worth_redoing(self, now: float, cpu: bool = True) -> bool:
        """Re-measure at the next start that finds the machine quiet: old, or (a CPU timing) measured busy or
        with the load unknown (an entry from before loads were recorded)."""
        old = now - self.measured_at > MAX_AGE_DAYS * 86400
        return old or (cpu and (self.load is None or self.busy))

    def when(self) -> str:
        """e.g. "measured 2026-11-22 10:32, idle" or "measured 2026-11-22 10:32 while busy"."""
        if self.load is None:
            return f"measured {fmt.stamp(self.measured_at)}"
        return f"measured {fmt.stamp(self.measured_at)}{' while busy' if self.busy else ', idle'}"

    def busy_warning(self, what: str = "this peak") -> str | None:
        """The loud line a busy measurement gets wherever it is used; None when it was not busy."""
        if not self.busy or self.load is None:
            return None
        return (f"{what} was measured while the machine was busy ({self.load.share()}, "
                f"{fmt.stamp(self.measured_at)}), so it reads low and MFU reads high: run `tuigpt calibrate` "
                f"when the machine is idle (a run re-measures by itself when it starts on a quiet machine)")

    def to_entry(self, machine: str, dtype: str) -> dict[str, Any]:
        return {"flops": self.flops, "measured_at": self.measured_at, "seconds": self.seconds, "machine": machine,
                "dtype": dtype, "load": None if self.load is None else self.load.to_dict(), "busy": self.busy}

    @classmethod
    def from_entry(cls, entry: Any) -> Calibration | None:
        """The calibration a cache entry holds; None when it holds no usable FLOP/s figure."""
        if not isinstance(entry, dict):
            return None
        try:
            flops = float(entry["flops"])
            measured_at = float(entry.get("measured_at", 0.0))
            seconds = float(entry.get("seconds", 2.0))
        except (KeyError, TypeError, ValueError):
            return None
        if not (flops > 0 and math.isfinite(flops)):
            return None
        return cls(flops, measured_at, Load.from_dict(entry.get("load")), seconds)


def peaks_cache_path() -> Path:
    """The calibration cache: one JSON object, each key an entry dict (other measured decisions live beside the
    peaks, under their own keys)."""
    return cache_dir() / "peaks.json"


def cache_key(machine: str, dtype: str, threads: int, device: str, torch_version: str) -> str:
    kind = "cuda" if device.startswith("cuda") else device
    return f"{kind}|{machine}|torch {torch_version}|{dtype}|{threads} threads"


def _load_cache() -> dict[str, Any]:
    try:
        data = json.loads(read_regular(peaks_cache_path(), 16 << 20))  # never a FIFO, never unbounded
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, RecursionError):
        return {}


def store_entry(key: str, entry: dict[str, Any]) -> None:
    """Write one entry atomically and under a lock: two processes storing at once can neither leave half a file
    nor drop each other's entry."""
    path = peaks_cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path):
            data = _load_cache()
            data[key] = entry
            atomic_write(path, json.dumps(data, indent=1, sort_keys=True).encode())
    except OSError:
        pass  # a read-only cache only costs a re-measurement next time


store_peak = store_entry  # the name callers used before entries other than peaks lived here


def cached_entry(key: str) -> dict[str, Any] | None:
    """The entry dict cached under ``key``, None if there is none (or it is not a dict)."""
    entry = _load_cache().get(key)
    return entry if isinstance(entry, dict) else None


def cached_calibration(key: str) -> Calibration | None:
    """The peak measured under ``key``, None if never measured or unreadable."""
    return Calibration.from_entry(cached_entry(key))


def cached_peak(key: str) -> float | None:
    calibration = cached_calibration(key)
    return calibration.flops if calibration else None


# ---------------------------------------------------------------- trials in the same cache

# dtype: auto and compile: auto store what their trials measured (tuigpt.engine.auto) in this file too, under
# keys with this prefix; their entries carry "speedup", never "flops", so peak readers never mistake one for a peak.
TRIAL_PREFIX = "trial|"


def cached_trial(key: str) -> dict[str, Any] | None:
    """The cached trial under ``key`` (a dict with "speedup"), None if never measured or unreadable."""
    entry = cached_entry(key)
    if not key.startswith(TRIAL_PREFIX) or entry is None or "speedup" not in entry:
        return None
    return entry


def forget_trials() -> int:
    """Drop every cached trial, so each is measured again on its next run; how many were dropped."""
    path = peaks_cache_path()
    try:
        with locked(path):
            data = _load_cache()
            kept = {k: v for k, v in data.items() if not k.startswith(TRIAL_PREFIX)}
            if len(kept) < len(data):
                atomic_write(path, json.dumps(kept, indent=1, sort_keys=True).encode())
    except OSError:
        return 0
    return len(data) - len(kept)
