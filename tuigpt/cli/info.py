"""`tuigpt info` and `tuigpt calibrate`: what this machine is and what it can compute."""

from __future__ import annotations

import sys
from typing import Iterable, TextIO

from tuigpt.cli.args import Parser
from tuigpt.run import fmt
from tuigpt.run.errors import UserError
from tuigpt.run.fmt import flops as format_flops
from tuigpt.telemetry.cpu import CpuSampler
from tuigpt.telemetry.cpuinfo import CpuInfo, read_cpu_info
from tuigpt.telemetry.gpu import GpuSampler
from tuigpt.telemetry.peak import (
    DTYPES,
    Calibration,
    cached_calibration,
    cpu_flops_per_cycle,
    cpu_max_mhz,
    cpu_theoretical_peak,
    gpu_table_peak,
    normalize_dtype,
    peaks_cache_path,
)
from tuigpt.telemetry.peak_cache import MAX_AGE_DAYS, forget_trials

CPU_DTYPES = ("fp32", "bf16")
_INDENT = " " * 15  # under "  CPU fp32     "

# (flag, shown as) for the features that decide matmul speed.
_X86_FEATURES = (
    ("avx2", "AVX2"),
    ("fma", "FMA"),
    ("avx512f", "AVX-512"),
    ("avx512_bf16", "AVX512_BF16"),
    ("avx512_fp16", "AVX512_FP16"),
    ("amx_bf16", "AMX-BF16"),
    ("amx_fp16", "AMX-FP16"),
)
_ARM_FEATURES = (("asimd", "NEON"), ("sve", "SVE"), ("sve2", "SVE2"), ("bf16", "BF16"), ("i8mm", "I8MM"))


def _features(info: CpuInfo) -> str:
    is_arm = info.arch.lower() in ("aarch64", "arm64") or "asimd" in info.flags
    table = _ARM_FEATURES if is_arm else _X86_FEATURES
    return "  ".join(f"{name} {'yes' if flag in info.flags else 'no'}" for flag, name in table)


def _mhz(value: float | None) -> str:
    return f"{value / 1000:.2f} GHz" if value else "n/a"


def _gib(value: int | None) -> str:
    return f"{value / 2**30:.1f} GiB" if value is not None else "n/a"


def _smt(info: CpuInfo) -> str:
    """Whether the cores run two (or more) hardware threads, and what tuigpt does about it."""
    if info.logical_cores > info.physical_cores:
        per = info.logical_cores // info.physical_cores
        return (f"SMT on, {per} threads a core: tuigpt trains on {info.physical_cores} threads, one a physical core, "
                f"as the siblings share its FMA units")
    return "no SMT: one thread a core"


def _default_threads(info: CpuInfo) -> int:
    return max(1, info.physical_cores)


def _torch() -> object | None:
    try:
        import torch

        return torch
    except Exception:
        return None


def _cuda_names(torch: object | None) -> list[str]:
    try:
        if torch is not None and torch.cuda.is_available():  # type: ignore[attr-defined]
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]  # type: ignore[attr-defined]
    except Exception:
        pass
    return []


def print_info(out: TextIO = sys.stdout, *, measure: bool = True) -> int:
    """Print the machine description and its peaks; measures (≤ 2 s a dtype) unless cached or ``measure`` is False."""
    info = read_cpu_info()
    cpu = CpuSampler().sample()
    torch = _torch()
    threads = _default_threads(info)
    w = lambda *parts: print(*parts, file=out)  # noqa: E731

    w("CPU")
    w(f"  model        {info.model_name} ({info.vendor or 'unknown vendor'}, {info.arch})")
    w(f"  cores        {info.physical_cores} physical, {info.logical_cores} logical ({_smt(info)})")
    w(f"  ISA          {_features(info)}")
    w(f"  bf16         {'native' if info.native_bf16 else 'emulated'}: {info.bf16_reason}")
    max_mhz, max_source = cpu_max_mhz(info)
    w(f"  max clock    {_mhz(max_mhz)} ({max_source})" + ("" if max_mhz else ": cpufreq hidden (VM?), theoretical peak unknown"))
    w(f"  base clock   {_mhz(info.base_mhz)}")
    w(f"  clock now    {_mhz(cpu.freq_mhz)}" + (f" ({cpu.unavailable['freq_mhz']})" if "freq_mhz" in cpu.unavailable else ""))
    if cpu.temperatures:
        temps = ", ".join(f"{k} {v:.0f} °C" for k, v in cpu.temperatures.items())
        w(f"  temperatures {temps}")
    else:
        w(f"  temperatures n/a ({cpu.unavailable.get('temperatures', 'unknown')})")
    counter = cpu.throttle_count if cpu.throttle_count is not None else f"n/a ({cpu.unavailable.get('throttle_count')})"
    w(f"  throttle cnt {counter}")
    w(f"  RAPL power   {'readable' if 'package_power_w' not in cpu.unavailable or cpu.unavailable['package_power_w'] == 'needs two samples' else 'n/a (' + cpu.unavailable['package_power_w'] + ')'}")
    w(f"  memory       {_gib(cpu.mem_used_bytes)} used of {_gib(cpu.mem_total_bytes)}")

    w("torch")
    if torch is None:
        w("  not importable: no measured peaks")
    else:
        w(f"  version      {torch.__version__}")  # type: ignore[attr-defined]
        w(f"  threads      {torch.get_num_threads()} intra-op (peaks below use {threads}: the physical cores)")  # type: ignore[attr-defined]

    w("GPU")
    gpus = GpuSampler().sample()
    w(f"  NVML         {gpus.status}")
    for g in gpus.gpus:
        mem = f"{_gib(g.mem_used_bytes)} / {_gib(g.mem_total_bytes)}"
        w(f"  [{g.index}] {g.name or 'n/a'}  {mem}  {g.temp_c if g.temp_c is not None else 'n/a'} °C  "
          f"{g.power_w if g.power_w is not None else 'n/a'} W")
    names = _cuda_names(torch)
    if torch is not None and not names:
        w("  torch.cuda   not available")

    w(f"Peaks ({threads} threads on CPU)")
    measured: dict[str, float] = {}
    for d in CPU_DTYPES:
        per_cycle, how = cpu_flops_per_cycle(info, d)
        theo = cpu_theoretical_peak(info, d, threads)
        theo_text = format_flops(theo) if theo else "unknown (max clock unknown)" if per_cycle else "unknown (ISA unknown)"
        w(f"  CPU {d}     theoretical {theo_text} · {per_cycle if per_cycle else '?'} FLOPs/cycle/core ({how})")
        if torch is None:
            continue
        from tuigpt.engine.calibration import measured_peak, peak_key

        if measure:
            calibration: Calibration | None = measured_peak(info.model_name, d, threads, "cpu")
        else:
            calibration = cached_calibration(peak_key(info.model_name, d, threads, "cpu"))
        if calibration is None:
            w(f"{_INDENT}measured    not measured (run tuigpt calibrate)")
            continue
        w(f"{_INDENT}measured    {format_flops(calibration.flops)}{of_theoretical(calibration.flops, theo)} · "
          f"{describe(calibration)}")
        measured[d] = calibration.flops
        if d != "fp32" and "fp32" in measured:
            w(f"{_INDENT}            {versus_fp32(d, calibration.flops, measured['fp32'], info.native_bf16)}")
        if calibration.busy:
            w(f"{_INDENT}            measured while busy, so MFU against it reads high: run `tuigpt calibrate` when "
              f"the machine is idle")
    for i, name in enumerate(names):
        for d in ("fp32", "tf32", "bf16", "fp16"):
            table = gpu_table_peak(name, d)
            if table is not None:
                w(f"  GPU{i} {d}    datasheet {format_flops(table)} (dense)")
        if all(gpu_table_peak(name, d) is None for d in DTYPES):
            from tuigpt.engine.calibration import peak_key

            cached = cached_calibration(peak_key(name, "bf16", threads, "cuda"))
            w(f"  GPU{i}         unknown GPU {name!r}, using measured peak: bf16 "
              f"{format_flops(cached.flops) + ' (' + cached.when() + ')' if cached else 'not measured yet'}")
    w(f"Calibration cache: {peaks_cache_path()} (a peak measured while busy, or over {MAX_AGE_DAYS} days ago, "
      f"is re-measured when a run starts on a quiet machine)")
    return 0


def versus_fp32(dtype: str, flops: float, fp32_flops: float, native: bool) -> str:
    """What a 16-bit dtype's measured peak says about training in it here, from the two measurements (a CPU without
    bf16 instructions emulates it: 1.37 against 183 GFLOP/s on an AVX2 EPYC)."""
    ratio = flops / fp32_flops
    both = f"{format_flops(flops)} vs fp32's {format_flops(fp32_flops)}"
    if ratio >= 1.1:
        return f"{ratio:.2f}x fp32's measured rate here ({both}): worth timing for training (dtype: auto does)"
    if ratio > 0.9:
        return f"about fp32's measured rate here ({both}): no gain from {dtype} in matmuls"
    if not native:
        return (f"{1 / ratio:.0f}x slower than fp32 here ({both}): emulated, not worth training in; dtype: auto "
                f"keeps float32")
    return f"{1 / ratio:.1f}x slower than fp32 here ({both}): dtype: auto times it on your model before choosing"


def describe(calibration: Calibration) -> str:
    """When a peak was measured and how busy the machine was: "2026-11-22 10:32, idle: other processes ..."."""
    when = fmt.stamp(calibration.measured_at)
    if calibration.load is None:
        return f"{when}, machine load not recorded"
    return f"{when}, {calibration.load.describe()}"


def of_theoretical(flops: float, theoretical: float | None) -> str:
    """" (41% of theoretical)"; above 100% it says the theoretical figure is the one that is wrong."""
    if not theoretical:
        return ""
    ratio = flops / theoretical
    if ratio > 1.0:
        return (f" ({fmt.percent(ratio, 0)} of theoretical: above the ceiling, so the theoretical figure is too low: "
                f"its max clock or FMA-unit count is a guess)")
    return f" ({fmt.percent(ratio, 0)} of theoretical)"


def calibrate(out: TextIO = sys.stdout, dtypes: Iterable[str] | None = None, threads: int | None = None,
              err: TextIO | None = None) -> int:
    """Re-measure the peaks (CPU, and each CUDA device) and store them in the cache; a timing the machine was
    too busy for is stored marked busy (or an earlier idle one kept) with a warning on ``err``."""
    err = err or sys.stderr
    info = read_cpu_info()
    threads = threads or _default_threads(info)
    torch = _torch()
    if torch is None:
        print("torch is not importable: nothing to measure", file=out)
        return 1
    from tuigpt.engine.calibration import calibrate_peak

    wanted = [normalize_dtype(d) for d in (dtypes or CPU_DTYPES)]
    version = torch.__version__  # type: ignore[attr-defined]
    print(f"Calibrating on {info.model_name}, {threads} threads, torch {version} (2 s a dtype, watching what other "
          f"processes do meanwhile)", file=out)
    for d in wanted:
        fresh, used = calibrate_peak(info.model_name, d, threads, "cpu")
        theo = cpu_theoretical_peak(info, d, threads)
        ratio = of_theoretical(fresh.flops, theo) if theo else ", theoretical unknown"
        load = f" · {fresh.load.describe()}" if fresh.load is not None else ""
        print(f"  CPU {d}: {format_flops(fresh.flops)}{ratio}{load}", file=out)
        if used is not fresh:
            print(f"warning: CPU {d} was timed while the machine was busy, so {format_flops(fresh.flops)} is too low; "
                  f"kept the {'busy' if used.busy else 'idle'} measurement {format_flops(used.flops)} from "
                  f"{fmt.stamp(used.measured_at)}" + (": run `tuigpt calibrate` again when the machine is idle"
                                                     if used.busy else ""), file=err)
        elif fresh.busy and fresh.load is not None:
            print(f"warning: CPU {d} was timed while the machine was busy ({fresh.load.share()}), so "
                  f"{format_flops(fresh.flops)} is too low and MFU against it reads high; stored marked busy: run "
                  f"`tuigpt calibrate` again when the machine is idle (a run also re-measures by itself when it "
                  f"starts on a quiet machine)", file=err)
    for i, name in enumerate(_cuda_names(torch)):
        device = f"cuda:{i}"
        for d in [normalize_dtype(x, device) for x in (dtypes or ("float32", "bfloat16"))]:  # no tf32 here
            fresh, _ = calibrate_peak(name, d, threads, device)
            table = gpu_table_peak(name, d)
            beside = f", {fmt.percent(fresh.flops / table, 0)} of datasheet {format_flops(table)}" if table else ""
            print(f"  GPU{i} {name} {d}: {format_flops(fresh.flops)}{beside}", file=out)
    print(f"Saved to {peaks_cache_path()}", file=out)
    return 0


def main(args: list[str]) -> int:
    parser = Parser(prog="tuigpt info", description="Show this machine's CPU, GPUs, sensors and peak FLOP/s.")
    parser.add_argument("--no-measure", action="store_true", help="skip the ~2 s matmul calibration")
    ns = parser.parse_args(args)
    return print_info(measure=not ns.no_measure)


def calibrate_config(path: str, overrides: dict[str, str], out: TextIO | None = None) -> int:
    """Time this config's dtype and compile trials again now (as if both were auto) and cache the answers."""
    from tuigpt.engine.build import measure_auto
    from tuigpt.run.configfile import load_config

    out = out or sys.stdout
    config = load_config(path, overrides)
    print(f"Timing dtype and compile for {path} ({config.n_layer} layers x {config.n_embd}, context "
          f"{config.block_size}, micro-batch {config.batch_size}), as `auto` does on a config's first run", file=out)
    setup = measure_auto(config)
    print(f"  device   {setup.device}, {setup.threads} threads", file=out)
    print(f"  dtype    {setup.precision.name} ({setup.precision.reason})", file=out)
    print(f"  compile  {'on' if setup.compiled else 'off'} ({setup.compile_reason})", file=out)
    print(f"Saved to {peaks_cache_path()}: runs of this shape with dtype/compile auto use these answers", file=out)
    return 0


def calibrate_main(args: list[str]) -> int:
    parser = Parser(prog="tuigpt calibrate",
                    description="Re-measure the matmul peak FLOP/s MFU is reported against, and forget the measured "
                                "dtype/compile choices (each config measures again on its next run). With CONFIG: "
                                "time that config's dtype and compile choices again now.")
    parser.add_argument("config", nargs="?", default=None, help="a training config (and --key=value overrides)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    ns, rest = parser.parse_known_args(args)
    if ns.threads is not None and ns.threads < 1:
        raise UserError(f"--threads must be a positive integer, not {ns.threads}")
    if ns.config is not None:
        from tuigpt.cli.args import split_overrides

        overrides = split_overrides(rest, parser.options())
        if ns.threads is not None:
            overrides["num_threads"] = str(ns.threads)
        return calibrate_config(ns.config, overrides)
    if rest:
        raise UserError(f"unexpected argument {rest[0]!r} (see `tuigpt calibrate --help`)")
    code = calibrate(threads=ns.threads)
    dropped = forget_trials()
    print(f"Forgot {dropped} measured dtype/compile choice(s): each config measures again on its next run "
          f"(or now: tuigpt calibrate CONFIG)")
    return code
