"""GPU reader on a fake NVML: missing library, no GPU, and fields that fail one by one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pynvml

from tuigpt.telemetry.gpu import GpuReader, decode_throttle_reasons


class FakeNVMLError(pynvml.NVMLError):
    """An NVML error of a given code, without needing the real library."""

    def __new__(cls, value: int) -> "FakeNVMLError":
        return Exception.__new__(cls)

    def __init__(self, value: int) -> None:
        self.value = value

    def __str__(self) -> str:
        return pynvml.NVMLError._errcode_to_string.get(self.value, f"NVML error {self.value}")


class FakeNVML:
    def __init__(self, *, count: int = 1, init_error: int | None = None, unsupported: set[str] = frozenset()):
        self.count, self.init_error, self.unsupported = count, init_error, unsupported
        self.init_calls = 0

    def nvmlInit(self) -> None:  # noqa: N802 - NVML's names
        self.init_calls += 1
        if self.init_error is not None:
            raise FakeNVMLError(self.init_error)

    def _maybe(self, name: str, value: Any) -> Any:
        if name in self.unsupported:
            raise FakeNVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:  # noqa: N802
        return self._maybe("name", b"NVIDIA H100 80GB HBM3")

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:  # noqa: N802
        return self._maybe("memory", SimpleNamespace(used=10 * 2**30, total=80 * 2**30, free=70 * 2**30))

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:  # noqa: N802
        return self._maybe("util", SimpleNamespace(gpu=87, memory=40))

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:  # noqa: N802
        return self._maybe("temp", 71)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:  # noqa: N802
        return self._maybe("power", 350_000)  # mW

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:  # noqa: N802
        return self._maybe("limit", 700_000)

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:  # noqa: N802
        return self._maybe("clock", 1980)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:  # noqa: N802
        return self._maybe("reasons", 0x40 | 0x4)


def test_full_reading_in_si_units() -> None:
    snap = GpuReader(FakeNVML(count=2)).read()
    assert snap.status == "ok" and [g.index for g in snap.gpus] == [0, 1]
    g = snap.gpus[0]
    assert g.name == "NVIDIA H100 80GB HBM3"
    assert (g.mem_used_bytes, g.mem_total_bytes) == (10 * 2**30, 80 * 2**30)
    assert (g.util_percent, g.temp_c, g.power_w, g.power_limit_w, g.sm_clock_mhz) == (87, 71, 350.0, 700.0, 1980)
    assert g.throttle_reasons == ["power cap", "thermal (hardware)"]
    assert g.unavailable == {}


def test_unsupported_fields_are_none_and_the_rest_still_shown() -> None:
    snap = GpuReader(FakeNVML(unsupported={"power", "temp", "reasons"})).read()
    g = snap.gpus[0]
    assert g.power_w is None and g.temp_c is None and g.throttle_reasons is None
    assert g.unavailable["power_w"] == "Not Supported"
    assert g.util_percent == 87 and g.mem_total_bytes == 80 * 2**30


def test_missing_nvml_library_is_a_status_not_a_crash_and_not_retried() -> None:
    nvml = FakeNVML(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    reader = GpuReader(nvml)
    snap = reader.read()
    assert snap.gpus == [] and snap.status == "NVML not available: NVML Shared Library Not Found"
    reader.read()
    assert nvml.init_calls == 1  # a failed init is remembered, not retried every second


def test_driver_with_no_gpu() -> None:
    snap = GpuReader(FakeNVML(count=0)).read()
    assert snap.gpus == [] and snap.status == "no GPU"


def test_count_failure_reported() -> None:
    nvml = FakeNVML()
    nvml.nvmlDeviceGetCount = lambda: (_ for _ in ()).throw(FakeNVMLError(pynvml.NVML_ERROR_GPU_IS_LOST))  # type: ignore[method-assign]
    snap = GpuReader(nvml).read()
    assert snap.gpus == [] and snap.status == "NVML error: GPU is lost"


def test_decode_throttle_reasons() -> None:
    assert decode_throttle_reasons(0) == []
    assert decode_throttle_reasons(0x1) == ["idle"]
    assert decode_throttle_reasons(0x20 | 0x80) == ["thermal (software)", "power brake (hardware)"]
    assert decode_throttle_reasons(0x1000) == ["other (0x1000)"]


def test_real_pynvml_on_this_machine_never_raises() -> None:
    snap = GpuReader().read()
    assert snap.status == "ok" or snap.gpus == []
    assert snap.status  # always says something
