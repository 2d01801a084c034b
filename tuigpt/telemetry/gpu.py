"""GPU readings through NVML (pynvml), plus PyTorch's own allocator counters.

No driver, no GPU or an NVML error gives a snapshot with no GPUs and a status saying
why; the run goes on. Each field is read on its own, so a field the board does not
support (NVMLError_NotSupported) is None while the others are shown.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from tuigpt.run.readings import GpuReading, GpuSnapshot

# nvmlClocksEventReason* / nvmlClocksThrottleReason* bits, in NVML's order.
THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x1, "idle"),
    (0x2, "applications clocks setting"),
    (0x4, "power cap"),
    (0x8, "hardware slowdown"),
    (0x10, "sync boost"),
    (0x20, "thermal (software)"),
    (0x40, "thermal (hardware)"),
    (0x80, "power brake (hardware)"),
    (0x100, "display clock setting"),
)

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1


def decode_throttle_reasons(mask: int) -> list[str]:
    """Names of the bits set in an NVML clocks-event (throttle) reasons mask."""
    names = [name for bit, name in THROTTLE_REASONS if mask & bit]
    known = sum(bit for bit, _ in THROTTLE_REASONS)
    if mask & ~known:
        names.append(f"other (0x{mask & ~known:x})")
    return names


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class GpuReader:
    """Reads a GpuSnapshot on demand; NVML is imported and initialised on first use, once."""

    def __init__(self, nvml_module: Any = None) -> None:
        self._nvml = nvml_module
        self._ready = False
        self._failed: str | None = None

    def _init(self) -> str | None:
        """None when NVML is usable, else why not (remembered: no retry every second)."""
        if self._ready:
            return None
        if self._failed is not None:
            return self._failed
        try:
            if self._nvml is None:
                import pynvml

                self._nvml = pynvml
            self._nvml.nvmlInit()
            self._ready = True
            return None
        except Exception as exc:
            self._failed = f"NVML not available: {_describe(exc)}"
            return self._failed

    def _field(self, why: dict[str, str], name: str, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except Exception as exc:
            why[name] = _describe(exc)
            return None

    def _reading(self, index: int) -> GpuReading:
        nv = self._nvml
        why: dict[str, str] = {}
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:
            reason = f"no handle: {_describe(exc)}"
            return GpuReading(index, None, None, None, None, None, None, None, None, None, {"gpu": reason})
        name = self._field(why, "name", lambda: _text(nv.nvmlDeviceGetName(handle)))
        memory = self._field(why, "memory", lambda: nv.nvmlDeviceGetMemoryInfo(handle))
        util = self._field(why, "util_percent", lambda: float(nv.nvmlDeviceGetUtilizationRates(handle).gpu))
        temp = self._field(why, "temp_c", lambda: float(nv.nvmlDeviceGetTemperature(handle, NVML_TEMPERATURE_GPU)))
        power = self._field(why, "power_w", lambda: nv.nvmlDeviceGetPowerUsage(handle) / 1000.0)
        limit = self._field(why, "power_limit_w", lambda: nv.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0)
        clock = self._field(why, "sm_clock_mhz", lambda: float(nv.nvmlDeviceGetClockInfo(handle, NVML_CLOCK_SM)))
        reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        reasons = None
        if reasons_fn is None:
            why["throttle_reasons"] = "this pynvml has no clocks event reasons call"
        else:
            reasons = self._field(why, "throttle_reasons", lambda: decode_throttle_reasons(int(reasons_fn(handle))))
        if memory is None:
            why["mem_used_bytes"] = why["mem_total_bytes"] = why.pop("memory")
        return GpuReading(
            index=index,
            name=name,
            mem_used_bytes=int(memory.used) if memory is not None else None,
            mem_total_bytes=int(memory.total) if memory is not None else None,
            util_percent=util,
            temp_c=temp,
            power_w=power,
            power_limit_w=limit,
            sm_clock_mhz=clock,
            throttle_reasons=reasons,
            unavailable=why,
        )

    def read(self) -> GpuSnapshot:
        allocated, reserved, peak = torch_memory()
        problem = self._init()
        if problem is not None:
            return GpuSnapshot([], allocated, reserved, peak, problem)
        try:
            count = int(self._nvml.nvmlDeviceGetCount())
        except Exception as exc:
            return GpuSnapshot([], allocated, reserved, peak, f"NVML error: {_describe(exc)}")
        if count == 0:
            return GpuSnapshot([], allocated, reserved, peak, "no GPU")
        return GpuSnapshot([self._reading(i) for i in range(count)], allocated, reserved, peak, "ok")

    def close(self) -> None:
        if self._ready:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._ready = False


def torch_memory() -> tuple[int | None, int | None, int | None]:
    """PyTorch CUDA allocator bytes (allocated, reserved, max allocated), summed over devices.

    Only when the program has already set CUDA up: the reader thread must not be the
    one that creates a CUDA context (or imports torch) as a side effect.
    """
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_initialized():
            return None, None, None
        devices = range(torch.cuda.device_count())
        return (
            sum(torch.cuda.memory_allocated(i) for i in devices),
            sum(torch.cuda.memory_reserved(i) for i in devices),
            sum(torch.cuda.max_memory_allocated(i) for i in devices),
        )
    except Exception:
        return None, None, None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
