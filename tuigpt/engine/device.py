"""Choosing the device, the training dtype (and why), and the CPU thread count."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any, Callable

import torch

from tuigpt.engine import auto
from tuigpt.engine.model import ModelArgs
from tuigpt.run.config import valid_device
from tuigpt.run.errors import UserError
from tuigpt.run.fmt import duration, shown
from tuigpt.telemetry.cpuinfo import read_cpu_info

_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Precision:
    name: str  # float32 | bfloat16 | float16
    reason: str  # shown to the user next to the dtype

    @property
    def torch_dtype(self) -> torch.dtype:
        return _TORCH_DTYPES[self.name]

    @property
    def autocast(self) -> bool:
        """Whether training runs under torch.autocast (weights stay float32)."""
        return self.name != "float32"


def resolve_device(requested: str) -> torch.device:
    """The torch.device for the config's ``device`` (or `tuigpt sample --device`); a device that is not there, or
    that tuigpt does not run on (``meta``, a typo), is a UserError."""
    if not valid_device(requested):
        raise UserError(f"device {shown(requested)} is not one tuigpt runs on: use auto, cpu, cuda, cuda:N or mps")
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())  # indexed: set_device needs it
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device={requested} but CUDA is not available (CPU-only torch build or no NVIDIA GPU): "
                            f"use device=cpu or device=auto")
        index = int(requested.partition(":")[2] or torch.cuda.current_device())
        if index >= torch.cuda.device_count():
            raise UserError(f"device={requested} but this machine has {torch.cuda.device_count()} CUDA device(s): "
                            f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
        return torch.device("cuda", index)
    if requested == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError("device=mps but Apple's MPS backend is not available here: use device=cpu or device=auto")
    return torch.device(requested)


def resolve_precision(requested: str, device: torch.device,
                      measure: Callable[[str], tuple[str, str]] | None = None) -> Precision:
    """The dtype to train in and why; refuses a dtype the device cannot do.

    ``auto`` times float32 against the device's 16-bit dtype (``measure(low)`` returns the winner and why: see
    :mod:`tuigpt.engine.auto`); a CPU without bf16 instructions never tries bf16, MPS trains in float32.
    """
    if requested == "auto":
        low, why = auto.low_precision_candidate(device)
        if low is None:
            return Precision("float32", f"auto: float32, {why}" if device.type == "cpu" else f"auto: {why}")
        if measure is None:  # nothing to time with (no model yet): the safe choice, said as such
            return Precision("float32", f"auto: float32 (not measured; {why})")
        return Precision(*measure(low))
    if device.type == "cuda":
        if requested == "bfloat16" and not torch.cuda.is_bf16_supported(including_emulation=False):
            raise UserError(f"dtype=bfloat16 but {torch.cuda.get_device_name(device)} has no bf16 support: "
                            f"use dtype=float16 or dtype=auto")
        return Precision(requested, "set in config")
    if device.type == "mps":
        if requested == "bfloat16":
            raise UserError("dtype=bfloat16 is not supported on mps here: use dtype=float16 or float32")
        return Precision(requested, "set in config")
    if requested == "float16":
        raise UserError("dtype=float16 is not supported on CPU (no fast fp16 matmuls, needs loss scaling): "
                        "use dtype=bfloat16 or float32")
    info = read_cpu_info()
    if requested == "bfloat16" and not info.native_bf16:
        return Precision("bfloat16", f"set in config; slow here: {info.bf16_reason}")
    return Precision(requested, "set in config")


def can_compile(device: torch.device) -> bool:
    """Whether torch.compile can run here: inductor needs a C++ compiler on CPU; MPS is not supported."""
    if device.type == "cpu":
        return any(shutil.which(c) for c in ("c++", "g++", "clang++"))
    return device.type != "mps"


def resolve_compile(requested: bool | str, device: torch.device,
                    measure: Callable[[], tuple[bool, str]] | None = None) -> tuple[bool, str]:
    """Whether to torch.compile, and why. ``auto`` times eager against compiled steps (``measure``: see
    :mod:`tuigpt.engine.auto`) where a compiler is there; true on a CPU without a C++ compiler is a UserError."""
    has_compiler = can_compile(device)
    if requested == "auto":
        if device.type == "mps":
            return False, "auto: not on mps"
        if not has_compiler:
            return False, "auto: no C++ compiler on PATH for inductor's CPU backend (c++, g++, clang++)"
        if measure is None:
            return False, "auto: not measured"
        return measure()
    if requested and not has_compiler:
        raise UserError("compile: true on CPU needs a C++ compiler for torch.compile's inductor backend, and none "
                        "is on PATH (c++, g++, clang++): install one (e.g. apt install g++) or set compile: false")
    return bool(requested), "set in config"


def default_threads() -> int:
    """All physical cores: SMT siblings share the FMA units and only add contention."""
    return read_cpu_info().physical_cores


@dataclass(frozen=True)
class DeviceSetup:
    """Where and how a run trains, each choice with the reason shown to the user."""

    device: torch.device
    precision: Precision
    compiled: bool
    compile_reason: str
    threads: int


def setup_device(config: Any, args: ModelArgs, cluster: Any = None, split: Any = None, *,
                 remaining_iters: int | None = None, recalibrate: bool = False, store: bool = True) -> DeviceSetup:
    """Resolve device, threads, dtype and compile for a TrainConfig and the model it trains.

    Threads come first (the physical cores, shared among this host's ranks when num_threads is 0) because the
    trials behind ``auto`` time the run with the threads it will train with. With several ranks rank 0 measures
    (or reads its cache) and every rank uses its answers. ``recalibrate`` measures again what is cached.
    ``split`` (a :class:`~tuigpt.run.numbers.BatchSplit`): what one rank's micro-step really runs; by default
    the config's batch_size and accumulation on one process.
    """
    c = config
    micro_batch = split.micro_batch if split is not None else c.batch_size
    micro_steps = split.micro_steps if split is not None else c.gradient_accumulation_steps
    device = cluster.device if cluster is not None else resolve_device(c.device)
    if device.type == "cpu":
        local = cluster.local_world_size if cluster is not None else 1
        torch.set_num_threads(c.num_threads or max(1, default_threads() // max(1, local)))
    threads = torch.get_num_threads()
    if device.type == "cuda":
        # float32 matmuls and convolutions on tensor cores (TF32), as nanoGPT does: under autocast only the few
        # float32 ops (the loss) use them; a float32 run is several times faster
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    rank0 = cluster is None or cluster.rank == 0
    trial = dict(weight_decay=c.weight_decay, grad_clip=c.grad_clip, recalibrate=recalibrate, store=store)
    measured: dict[str, Any] = {}  # the dtype trial, whose step times spare the compile trial a timing

    def dtype_trial(low: str) -> tuple[str, str]:
        measured.update(auto.dtype_entry(device, args, micro_batch, threads, low, **trial))
        return auto.dtype_decision(measured, micro_batch)

    # with several ranks only rank 0 measures (the others wait for its answers in the gather below)
    precision = resolve_precision(c.dtype, device, dtype_trial if rank0 else None)
    remaining = c.max_iters if remaining_iters is None else remaining_iters

    def compile_trial() -> tuple[bool, str]:
        nonlocal remaining
        eager = auto.step_ms(measured, precision.name, micro_batch)
        seconds = None
        if c.time_budget is not None or c.deadline is not None:
            # a run that ends at a time is as long as its time (an 8-hour run was judged "a ~8s run" from 100
            # iterations); its iterations are that time at an eager step, max_iters capping them
            seconds = planned_seconds(c)
            if seconds < auto.COMPILE_TRIAL_MIN_RUN_S:  # a cached "on" too: a cold compile cache ate a 1-minute run
                return False, f"auto: a {duration(seconds)} run is too short to repay a compile"
            remaining = _capped(planned_iterations(seconds, eager, micro_steps), c.max_iters) if eager else None
        entry = auto.compile_entry(device, args, micro_batch, threads, precision.name,
                                   remaining * micro_steps if remaining is not None else None, run_seconds=seconds,
                                   step_ms=eager, **trial)
        if remaining is None:  # (the trial timed the eager step)
            timed = auto.step_ms(entry, precision.name, micro_batch)
            remaining = _capped(planned_iterations(seconds or 0.0, timed, micro_steps), c.max_iters) if timed else 0
        return auto.compile_decision(entry, remaining * micro_steps)

    compiled, reason = resolve_compile(c.compile, device, compile_trial if rank0 else None)
    if cluster is not None:  # one decision for every rank: rank 0's (the others wait here while it times)
        what = (f"agreeing on dtype and compile (rank 0 times dtype/compile auto once per shape: if that outlasts "
                f"ddp_timeout, {c.ddp_timeout:g} s, raise ddp_timeout or set dtype and compile in the config)")
        precision, compiled, reason = cluster.gather_objects((precision, compiled, reason), what)[0]
    return DeviceSetup(device, precision, compiled, reason, threads)


# ---------------------------------------------------------------- what the command line asks of torch


@dataclass(frozen=True)
class TorchInfo:
    """`tuigpt info`'s torch section."""

    version: str
    threads: int  # intra-op threads
    cuda_names: list[str]  # the CUDA devices torch sees (none: no usable GPU)


def torch_info() -> TorchInfo:
    try:
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
            if torch.cuda.is_available() else []
    except Exception:  # a broken driver is a machine without a usable GPU here
        names = []
    return TorchInfo(torch.__version__, torch.get_num_threads(), names)


def reset_peak_memory(device: torch.device) -> None:
    """Start counting a CUDA device's peak allocation afresh (nothing elsewhere)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int | None:
    """The peak bytes torch allocated on a CUDA device since the last reset; None elsewhere."""
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def release_memory() -> None:
    """Give cached CUDA blocks back (between benchmark rows: a row that ran out must not starve the next)."""
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # a broken driver: nothing to give back
        pass


def forget_compiled() -> None:
    """Drop torch.compile's graphs: each timed row compiles afresh, and none hits the recompile limit."""
    torch._dynamo.reset()


def planned_seconds(config: Any) -> float:
    """How long a run that ends at a time trains: its budget, or the time until its deadline."""
    import time

    from tuigpt.run.deadline import parse_duration, resolve_deadline

    if config.time_budget is not None:
        return parse_duration(config.time_budget)
    return resolve_deadline(config.deadline, time.time()) - time.time()


def planned_iterations(seconds: float, step_ms: float, micro_steps: int) -> int:
    """The iterations ``seconds`` hold at ``step_ms`` per micro-step."""
    return max(0, int(seconds * 1000.0 / (step_ms * micro_steps)))


def _capped(iterations: int, cap: int | None) -> int:
    return iterations if cap is None else min(iterations, cap)
