"""`dtype: auto` and `compile: auto`, decided by timing this model on this machine.

No rule of thumb survives two CPUs: bf16 autocast ran 2.58x faster than float32 on a Sapphire Rapids VM with AMX
and 0.73x on an Emerald Rapids VM with only AVX512_BF16, for the same config. So on first use of a (machine,
torch version, model shape, micro-batch, threads) a short trial (:mod:`tuigpt.engine.trial`) times the
candidates, and the answer is cached next to the peak calibration (telemetry/peak_cache.py, keys ``trial|...``);
``tuigpt calibrate`` forgets the answers, ``tuigpt calibrate CONFIG`` measures them again now.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

import torch

from tuigpt.engine.model import ModelArgs
from tuigpt.engine.trial import Timing, Variant, time_pair
from tuigpt.run import fmt
from tuigpt.run.numbers import iterations_to_repay
from tuigpt.run.rounds import LoadChange, Verdict
from tuigpt.telemetry.peak_cache import TRIAL_PREFIX, cached_trial, store_entry

BF16_MIN_SPEEDUP = 1.03  # the low-precision variant must beat float32 by more than noise to be picked
COMPILE_MIN_SPEEDUP = 1.05  # and compiled must beat eager by more than noise
CPU_TRIAL_TOKENS = 4096  # a CPU trial times at most this many tokens a micro-batch: seconds, not minutes
# A run whose eager training is projected shorter than this is not worth a compile trial: the cold compiles measured
# took 22-180 s on a 2-core CPU (docs/PERFORMANCE.md) and ~40 s for GPT-2 on an H200.
COMPILE_TRIAL_MIN_RUN_S = 120.0
# ... and a run this short is not timed at all: no step could be slow enough for a compile to pay within it
COMPILE_TRIAL_MIN_ITERS = 100

Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"tuigpt: {message}", file=sys.stderr, flush=True)


def device_label(device: torch.device) -> str:
    """The hardware a trial's answer belongs to: the CPU model, or the GPU's name."""
    from tuigpt.engine.calibration import device_name

    return device_name(str(device))


def trial_key(kind: str, device: torch.device, args: ModelArgs, batch_size: int, threads: int, extra: str = "") -> str:
    """The cache key of one trial: machine, torch version, model shape, micro-batch and threads."""
    shape = (f"{args.n_layer}x{args.n_head}x{args.n_embd} ctx {args.block_size} vocab {args.vocab_size} "
             f"dropout {args.dropout:g} bias {args.bias}")
    switches = args.switches()  # none for GPT-2's block: the answers cached before the switches existed still hold
    if switches:
        shape += " " + " ".join(f"{key}={value}" for key, value in switches.items())
    # CPU threads decide a CPU's speed; a GPU's does not depend on them (torchrun sets one thread a rank)
    where = f"{threads} threads" if device.type == "cpu" else device.type
    return (f"{TRIAL_PREFIX}{kind}|{where}|{device_label(device)}|torch {torch.__version__}|{shape}|batch {batch_size}"
            f"{extra}")


def trial_batch(device: torch.device, args: ModelArgs, batch_size: int) -> int:
    """Sequences per timed micro-batch: the run's own, capped on CPU at CPU_TRIAL_TOKENS tokens."""
    if device.type != "cpu":
        return batch_size
    return max(1, min(batch_size, CPU_TRIAL_TOKENS // args.block_size))


def _when(entry: dict[str, Any]) -> str:
    at = entry.get("measured_at")
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(at))) if isinstance(at, (int, float)) else "?"


def _entry(timing: Timing, machine: str) -> dict[str, Any]:
    return {"speedup": timing.speedup, "best_ratio": timing.best_ratio, "ratios": timing.ratios, "ms": timing.ms,
            "best_ms": timing.best_ms, "first_ms": timing.first_ms, "rounds": timing.rounds,
            "failed": timing.failed, "batch_measured": timing.batch_size, "seconds": timing.seconds,
            "warm_compile_ms": timing.warm_compile_ms, "measured_at": time.time(), "machine": machine,
            "loads": timing.loads, "stretches": timing.stretches, "load_change": timing.load_change.to_dict() if timing.load_change else None,
            "retimed": timing.retimed.describe() if timing.retimed else None}


def _keep(timing: Timing) -> bool:
    """Whether a trial's answer may be cached: it measured something, under a load that held steady (a trial the
    load disturbed twice decides this run only, and the next run measures again)."""
    return bool(timing.ratios or timing.failed) and timing.load_change is None


def _load_change(entry: dict[str, Any]) -> LoadChange | None:
    data = entry.get("load_change")
    if not isinstance(data, dict):
        return None
    try:
        stretch = data.get("stretch")
        return LoadChange(float(data["first"]), float(data["furthest"]), int(data["cpus"]),
                          (float(stretch[0]), float(stretch[1])) if isinstance(stretch, list) else None)
    except (KeyError, TypeError, ValueError):
        return None


def verdict(entry: dict[str, Any], margin: float) -> Verdict:
    """The trial's per-round speed-ups and load, judged: see :mod:`tuigpt.run.rounds`."""
    ratios = [float(r) for r in entry.get("ratios") or [] if isinstance(r, (int, float))]
    return Verdict(tuple(ratios), _load_change(entry), margin)


# ---------------------------------------------------------------- dtype


def low_precision_candidate(device: torch.device) -> tuple[str | None, str]:
    """The 16-bit dtype worth timing against float32 here, or None and why none is."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bfloat16", "GPU has bf16"
        return "float16", "GPU has no native bf16: fp16 with gradient scaling"
    if device.type == "cpu":
        from tuigpt.telemetry.cpuinfo import read_cpu_info

        info = read_cpu_info()
        return ("bfloat16" if info.native_bf16 else None), info.bf16_reason
    return None, f"float32 on {device.type}"


def dtype_entry(device: torch.device, args: ModelArgs, batch_size: int, threads: int, low: str, *,
                weight_decay: float, grad_clip: float, recalibrate: bool = False, store: bool = True,
                say: Say = _stderr) -> dict[str, Any]:
    """The cached float32-vs-``low`` trial for this shape, measured now when missing (or ``recalibrate``)."""
    key = trial_key("dtype", device, args, batch_size, threads, f"|{low}")
    entry = None if recalibrate else cached_trial(key)
    if entry is not None:
        return {**entry, "cached": True}
    b = trial_batch(device, args, batch_size)
    say(f"timing float32 against {Variant(low).label} for this model on this machine (once; the answer is cached)")
    timing = time_pair(args, b, device, Variant("float32"), Variant(low), weight_decay=weight_decay,
                       grad_clip=grad_clip)
    entry = {**_entry(timing, device_label(device)), "kind": "dtype", "low": low}
    if store and _keep(timing):
        store_entry(key, entry)
    return {**entry, "cached": False}


def wins(entry: dict[str, Any], margin: float) -> bool:
    """Whether the trial's second variant is faster by more than noise: the median of the per-round speed-ups is
    at least ``margin`` and beats 1 by more than their round-to-round spread, the load held steady, and the fastest
    rounds of the two agree it is faster."""
    best = entry.get("best_ratio")
    return verdict(entry, margin).faster and (not isinstance(best, (int, float)) or best >= 1.0)


def _speed(entry: dict[str, Any], margin: float, of: str) -> str:
    """"1.42x float32's speed here (± 0.03 round to round)", and when that is no clear win, why not."""
    judged = verdict(entry, margin)
    text = f"{entry['speedup']:.2f}x {of}'s speed here"
    if judged.spread is None:
        return text
    if judged.speedup is not None and judged.speedup - 1.0 <= judged.spread and judged.speedup >= 1.0:
        return text + f" (± {judged.spread:.2f} round to round: within the spread, no clear win)"
    return text + f" (± {judged.spread:.2f} round to round)"


def _measured(entry: dict[str, Any], batch_size: int | None = None) -> str:
    """How a trial measured: "5 rounds", at how many sequences, and when when it came from the cache."""
    measured = entry.get("batch_measured", batch_size)
    text = f"{entry.get('rounds', '?')} rounds"
    if batch_size is not None and measured != batch_size:
        text += f" at {measured} of {batch_size} sequences"
    return text + (f", cached {_when(entry)}" if entry.get("cached") else "")


def dtype_decision(entry: dict[str, Any], batch_size: int) -> tuple[str, str]:
    """(dtype, reason) from a dtype trial: the 16-bit dtype only where it beat float32 by more than noise."""
    low = entry["low"]
    label = Variant(low).label
    failed = entry.get("failed") or {}
    if "float32" in failed and label not in failed:
        return low, f"auto: float32 {failed['float32']}"
    if label in failed:
        return "float32", f"auto: {label} {failed[label]}"
    speedup = entry.get("speedup")
    if not isinstance(speedup, (int, float)):
        return "float32", "auto: the trial measured nothing, float32"
    if (changed := _load_change(entry)) is not None:
        return "float32", (f"auto: float32: the machine's load changed while timing {label}, twice "
                           f"({changed.describe()}); not cached, the next run measures again")
    how, speed = _measured(entry, batch_size), _speed(entry, BF16_MIN_SPEEDUP, "float32")
    if wins(entry, BF16_MIN_SPEEDUP):
        return low, f"auto: measured {speed}, {how}"
    return "float32", f"auto: {label} measured {speed}, {how}"


def step_ms(entry: dict[str, Any], dtype: str, batch_size: int) -> float | None:
    """An eager step of the run's micro-batch in ``dtype``, from a trial that timed it (None if none did)."""
    ms = (entry.get("ms") or {}).get(Variant(dtype).label)
    if not isinstance(ms, (int, float)):
        return None
    return float(ms) * batch_size / max(1, int(entry.get("batch_measured") or batch_size))


# ---------------------------------------------------------------- compile


def compile_entry(device: torch.device, args: ModelArgs, batch_size: int, threads: int, dtype: str,
                  remaining_iters: int | None, *, weight_decay: float, grad_clip: float, step_ms: float | None = None,
                  run_seconds: float | None = None, recalibrate: bool = False, store: bool = True,
                  say: Say = _stderr) -> dict[str, Any]:
    """The cached eager-vs-compiled trial in ``dtype``; measured now when missing and the run is long enough to
    repay a compile at all, judged from ``step_ms`` (an eager step, when known) or a timed step (else
    ``{"skipped": why}``). ``run_seconds``: a run that ends at a time is that long, whatever its step
    (``remaining_iters`` None: not known before a step is timed)."""
    key = trial_key("compile", device, args, batch_size, threads, f"|{dtype}")
    entry = None if recalibrate else cached_trial(key)
    if entry is not None:
        return {**entry, "cached": True}
    b = trial_batch(device, args, batch_size)
    scale = batch_size / b  # a trial at fewer sequences projects the run's step time proportionally

    def too_short(eager_ms: float) -> str | None:
        projected = run_seconds if run_seconds is not None else (remaining_iters or 0) * eager_ms / 1000.0
        if projected < COMPILE_TRIAL_MIN_RUN_S and not recalibrate:
            return f"a ~{fmt.duration(projected)} run is too short to repay a compile"
        say("timing eager against torch.compile steps for this model on this machine (once; the answer is cached)")
        return None

    if remaining_iters is not None and remaining_iters < COMPILE_TRIAL_MIN_ITERS and not recalibrate:
        return {"skipped": f"{remaining_iters:,} iterations are too few to repay a compile"}
    if (short := too_short(step_ms) if step_ms is not None or run_seconds is not None else None) is not None:
        return {"skipped": short}
    timing = time_pair(args, b, device, Variant(dtype), Variant(dtype, compiled=True), weight_decay=weight_decay,
                       grad_clip=grad_clip, stop_if=None if step_ms is not None or run_seconds is not None
                       else lambda ms: too_short(ms * scale))
    if timing.skipped:
        return {"skipped": timing.skipped}
    entry = {**_entry(timing, device_label(device)), "kind": "compile", "dtype": dtype, "scale": scale}
    if store and _keep(timing):
        store_entry(key, entry)
    return {**entry, "cached": False}


def compile_decision(entry: dict[str, Any], remaining_iters: int) -> tuple[bool, str]:
    """(on, reason): on where compiled steps beat eager by more than noise and the run repays the first step."""
    if "skipped" in entry:
        return False, f"auto: {entry['skipped']}"
    eager = Variant(entry.get("dtype", "float32"))
    label = Variant(eager.dtype, compiled=True).label
    failed = entry.get("failed") or {}
    if label in failed:
        return False, f"auto: compiling {failed[label]}"
    speedup = entry.get("speedup")
    if not isinstance(speedup, (int, float)):
        return False, "auto: the trial measured nothing"
    if (changed := _load_change(entry)) is not None:
        return False, (f"auto: off: the machine's load changed while timing the compiled steps, twice "
                       f"({changed.describe()}); not cached, the next run measures again")
    if not wins(entry, COMPILE_MIN_SPEEDUP):
        return False, f"auto: compiled steps measured {_speed(entry, COMPILE_MIN_SPEEDUP, 'eager')}, {_measured(entry)}"
    eager_ms = float(entry["ms"][eager.label]) * float(entry.get("scale", 1.0))
    first_ms = float(entry.get("warm_compile_ms") or entry["first_ms"][label])
    repaid_after = iterations_to_repay(first_ms - float(entry["ms"][label]), eager_ms, speedup) or 0.0
    first = fmt.duration(first_ms / 1000)
    if repaid_after > remaining_iters:
        return False, (f"auto: compiled steps measured {speedup:.2f}x eager's speed, but the {first} compile takes "
                       f"{repaid_after:,.0f} iterations to repay and {remaining_iters:,} are left")
    repaid = max(1, round(repaid_after))
    return True, (f"auto: measured {_speed(entry, COMPILE_MIN_SPEEDUP, 'eager')}, {_measured(entry)}; the {first} "
                  f"compile is repaid after {repaid:,} iteration{'s' * (repaid != 1)}")
