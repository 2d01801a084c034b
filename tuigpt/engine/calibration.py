"""Measuring peak FLOP/s with torch matmuls, and choosing the peak MFU is measured against.

The table and the theoretical CPU peak live in :mod:`tuigpt.telemetry.peak`, the cache in
:mod:`tuigpt.telemetry.peak_cache` (no torch there); this module times the matmuls and decides: CPU → measured
(cached), with the theoretical peak beside it; known GPU → datasheet table; unknown GPU → measured.

A CPU timing records how busy the machine was meanwhile (:class:`~tuigpt.telemetry.load.LoadMeter`). One taken
while other processes shared the CPUs is cached marked busy (its label and a warning say so), never in place of
an idle one, and is taken again at the first start that finds the machine quiet.
"""

from __future__ import annotations

import time

import torch

from tuigpt.telemetry.cpuinfo import CpuInfo, read_cpu_info
from tuigpt.telemetry.load import LoadMeter, load_now
from tuigpt.telemetry.peak import (Calibration, PeakFlops, cache_key, cached_calibration, cpu_theoretical_peak,
                                   gpu_table_peak, make_label, normalize_dtype, store_entry)

_TORCH_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def peak_dtype(dtype: str, device: str) -> str:
    """fp32/tf32/bf16/fp16 as the matmuls of this device run it (tf32 where CUDA allows it)."""
    allow_tf32 = device.startswith("cuda") and bool(torch.backends.cuda.matmul.allow_tf32)
    return normalize_dtype(dtype, device, allow_tf32=allow_tf32)


def measure_peak(dtype: str, threads: int, device: str = "cpu", seconds: float = 2.0) -> float:
    """FLOP/s of square matmuls in this dtype: warm up, size the matrix, time for ``seconds``.

    The best of several timed chunks is reported (a peak, not an average: other processes on the machine
    only ever slow a chunk down). Uses ``threads`` intra-op threads on CPU and restores the previous count.
    """
    d = peak_dtype(dtype, device)
    tdtype = _TORCH_DTYPES[d]
    is_cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if is_cuda else (lambda *a: None)
    old_threads = torch.get_num_threads()
    old_tf32 = torch.backends.cuda.matmul.allow_tf32 if is_cuda else None
    deadline = time.perf_counter() + seconds
    try:
        if not is_cuda:
            torch.set_num_threads(max(1, int(threads)))
        else:
            torch.backends.cuda.matmul.allow_tf32 = d == "tf32"
        # Grow the matrix until one matmul takes long enough to time well (≥ 20 ms on CPU, ≥ 2 ms on GPU)
        # or the size cap is hit; the first product also warms up the kernels.
        n = 256 if not is_cuda else 2048
        cap = 2048 if not is_cuda else 16384
        target = 0.02 if not is_cuda else 0.002
        while True:
            a = torch.randn(n, n, device=device).to(tdtype)
            b = torch.randn(n, n, device=device).to(tdtype)
            a @ b
            sync()
            t0 = time.perf_counter()
            a @ b
            sync()
            dt = time.perf_counter() - t0
            if dt >= target or n >= cap or time.perf_counter() + 8 * dt > deadline:
                break
            n *= 2
        flops_per_mm = 2.0 * n**3
        reps = max(1, int(0.1 / max(dt, 1e-6)) if not is_cuda else int(0.05 / max(dt, 1e-6)))
        best = flops_per_mm / max(dt, 1e-9)
        chunks = 0
        while chunks < 2 or time.perf_counter() < deadline:
            t0 = time.perf_counter()
            for _ in range(reps):
                a @ b
            sync()
            dt = time.perf_counter() - t0
            best = max(best, reps * flops_per_mm / dt) if chunks else reps * flops_per_mm / dt
            chunks += 1
            if time.perf_counter() + dt > deadline and chunks >= 2:
                break
        return float(best)
    finally:
        if not is_cuda:
            torch.set_num_threads(old_threads)
        elif old_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = old_tf32


def peak_key(machine: str, dtype: str, threads: int, device: str) -> str:
    """The calibration-cache key of this machine, torch version, dtype and thread count."""
    return cache_key(machine, dtype, threads, device, torch.__version__)


def measure(dtype: str, threads: int, device: str = "cpu", seconds: float = 2.0) -> Calibration:
    """Time the peak now; on a CPU, with what other processes did meanwhile."""
    meter = None if device.startswith("cuda") else LoadMeter()
    flops = measure_peak(dtype, threads, device=device, seconds=seconds)
    return Calibration(flops, time.time(), meter.stop() if meter is not None else None, seconds)


def calibrate_peak(machine: str, dtype: str, threads: int, device: str = "cpu",
                   seconds: float = 2.0) -> tuple[Calibration, Calibration]:
    """Measure now and cache it: (the new measurement, the one MFU divides by from now on).

    A busy measurement never replaces an idle one, nor a higher busy one (a busy timing only ever reads low): the
    earlier one is kept (and returned second).
    """
    key = peak_key(machine, dtype, threads, device)
    before = cached_calibration(key)
    fresh = measure(dtype, threads, device, seconds)
    if fresh.busy and before is not None and before.load is not None and (not before.busy or
                                                                          before.flops > fresh.flops):
        return fresh, before
    store_entry(key, fresh.to_entry(machine, dtype))
    return fresh, fresh


def measured_peak(machine: str, dtype: str, threads: int, device: str = "cpu", *, recalibrate: bool = False,
                  seconds: float = 2.0) -> Calibration:
    """The cached measurement; measured now when there is none, when ``recalibrate``, or when the cached one is
    worth redoing (busy, load unknown, old) and the machine is quiet right now."""
    cached = cached_calibration(peak_key(machine, dtype, threads, device))
    if cached is not None and not recalibrate:
        on_cpu = not device.startswith("cuda")
        if not cached.worth_redoing(time.time(), cpu=on_cpu) or (on_cpu and not quiet_now()):
            return cached
    return calibrate_peak(machine, dtype, threads, device, seconds)[1]


def quiet_now() -> bool:
    """Whether other processes leave the CPUs alone right now (a quarter-second look)."""
    load = load_now()
    return load is not None and not load.busy


def device_name(device: str) -> str:
    """CPU model name, or torch.cuda.get_device_name for cuda devices."""
    if device.startswith("cuda"):
        index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
        return torch.cuda.get_device_name(index)
    return read_cpu_info().model_name


def resolve_peak(device: str, dtype: str, threads: int, *, measure: bool = True, recalibrate: bool = False,
                 seconds: float = 2.0, cpu_info: CpuInfo | None = None) -> PeakFlops | None:
    """The peak to divide by.

    With ``measure=False`` nothing is timed: a cached measurement is used if there is one, else the table or
    theoretical figure; None only when none of those exists (the caller then shows no MFU rather than a
    made-up one).
    """
    d = peak_dtype(dtype, device)
    theoretical: float | None
    if device.startswith("cuda"):
        name = device_name(device)
        table = gpu_table_peak(name, d)
        if table is not None:
            return PeakFlops(table, d, "table", name, table, make_label(table, d, "table"))
        theoretical = None
    else:
        info = cpu_info or read_cpu_info()
        name = info.model_name
        theoretical = cpu_theoretical_peak(info, d, threads)
    if measure or recalibrate:
        calibration: Calibration | None = measured_peak(name, d, threads, device, recalibrate=recalibrate,
                                                        seconds=seconds)
    else:
        calibration = cached_calibration(peak_key(name, d, threads, device))
    if calibration is not None:
        return PeakFlops(calibration.flops, d, "measured", name, theoretical,
                         make_label(calibration.flops, d, "measured", calibration), calibration)
    if theoretical is not None:
        return PeakFlops(theoretical, d, "theoretical", name, theoretical, make_label(theoretical, d, "theoretical"))
    return None
