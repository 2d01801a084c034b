"""Choosing the device, the training dtype (and why), and the CPU thread count."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import torch

from tuigpt.run.errors import UserError
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
    """The torch.device for the config's ``device``; a device that is not there is a UserError."""
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


# On CPUs with native bf16, autocast pays off only when the matmuls are big enough to keep the bf16 units
# busy; below that its casts cost more than they save. Measured on a 2-core Sapphire Rapids VM
# (docs/PERFORMANCE.md): width 128 ran 0.68x fp32 speed even at 8k tokens per step, width 256 ran 0.63x at
# 768 tokens but 1.32x at 2,048, width 384 at 16k tokens 2.58x.
CPU_BF16_MIN_WIDTH = 256
CPU_BF16_MIN_TOKENS = 2048  # batch_size x block_size of one micro-batch


def resolve_precision(requested: str, device: torch.device, *, n_embd: int | None = None,
                      tokens_per_micro_batch: int | None = None) -> Precision:
    """The dtype to train in and why; refuses a dtype the device cannot do.

    On a CPU, ``auto`` also weighs the model's width and micro-batch size (when given): bf16 autocast only
    where it measured faster than float32.
    """
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if requested == "auto":
            if bf16:
                return Precision("bfloat16", "auto: GPU supports bf16")
            return Precision("float16", "auto: GPU has no bf16, fp16 with gradient scaling")
        if requested == "bfloat16" and not bf16:
            raise UserError(f"dtype=bfloat16 but {torch.cuda.get_device_name(device)} has no bf16 support: "
                            f"use dtype=float16 or dtype=auto")
        return Precision(requested, "set in config")
    if device.type == "mps":
        if requested == "auto":
            return Precision("float32", "auto: float32 on MPS")
        if requested == "bfloat16":
            raise UserError("dtype=bfloat16 is not supported on mps here: use dtype=float16 or float32")
        return Precision(requested, "set in config")
    # CPU
    info = read_cpu_info()
    if requested == "auto":
        if not info.native_bf16:
            return Precision("float32", f"auto: {info.bf16_reason}, float32")
        if n_embd is not None and n_embd < CPU_BF16_MIN_WIDTH:
            return Precision("float32", f"auto: float32, n_embd {n_embd} < {CPU_BF16_MIN_WIDTH} is too narrow for "
                                        f"bf16 to pay off (CPU has bf16)")
        if tokens_per_micro_batch is not None and tokens_per_micro_batch < CPU_BF16_MIN_TOKENS:
            return Precision("float32", f"auto: float32, {tokens_per_micro_batch} tokens per micro-batch < "
                                        f"{CPU_BF16_MIN_TOKENS} is too few for bf16 to pay off (CPU has bf16)")
        return Precision("bfloat16", f"auto: {info.bf16_reason}, bf16 autocast")
    if requested == "float16":
        raise UserError("dtype=float16 is not supported on CPU (no fast fp16 matmuls, needs loss scaling): "
                        "use dtype=bfloat16 or float32")
    if requested == "bfloat16" and not info.native_bf16:
        return Precision("bfloat16", f"set in config; slow here: {info.bf16_reason}")
    return Precision(requested, "set in config")


def resolve_compile(requested: bool | str, device: torch.device) -> tuple[bool, str]:
    """Whether to torch.compile, and why. ``auto``: on CUDA (1.34x on GPT-2 124M on an H200), off on CPUs,
    where no gain could be measured and a cold compile costs up to a minute (docs/PERFORMANCE.md)."""
    if requested == "auto":
        on = device.type == "cuda"
        return on, "auto: on for CUDA" if on else f"auto: off on {device.type} (no measured gain)"
    if requested and device.type == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
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


def setup_device(config: object, cluster_device: torch.device | None = None,
                 local_world_size: int = 1, micro_batch: int | None = None) -> DeviceSetup:
    """Resolve device, dtype and compile for a TrainConfig, and set torch's CPU threads (the physical cores,
    shared among this host's ranks when num_threads is 0). ``micro_batch``: the sequences one micro-step of this
    rank really runs (batch_size unless several ranks share it)."""
    c = config
    device = cluster_device if cluster_device is not None else resolve_device(c.device)  # type: ignore[attr-defined]
    tokens = (micro_batch or c.batch_size) * c.block_size  # type: ignore[attr-defined]
    precision = resolve_precision(c.dtype, device, n_embd=c.n_embd,  # type: ignore[attr-defined]
                                  tokens_per_micro_batch=tokens)
    compiled, reason = resolve_compile(c.compile, device)  # type: ignore[attr-defined]
    if device.type == "cpu":
        # this host's physical cores, shared among its ranks
        threads = c.num_threads or max(1, default_threads() // max(1, local_world_size))  # type: ignore[attr-defined]
        torch.set_num_threads(threads)
    return DeviceSetup(device, precision, compiled, reason, torch.get_num_threads())
