"""Timing two ways of running one training step on this machine: the measurement behind `dtype: auto` and
`compile: auto`, and one row of `tuigpt tune`.

A trial builds the run's model twice (same shape, same optimizer as training), warms each variant up, then times
fwd+bwd+clip+AdamW steps of the two in alternating rounds (a-b, b-a, ...) so that another process slowing the
machine down hits both alike, and reports the median over rounds of the per-round speed-up. Each round also records
how much of our CPUs other processes used meanwhile: when that moved during the rounds (:mod:`tuigpt.run.rounds`),
the rounds are timed again once, and a second change is kept in ``load_change`` for the decision to refuse on. The
global RNG is left as it was: a run that measures first trains exactly as one that read the answer from the cache.
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from tuigpt.engine.model import GPT, ModelArgs
from tuigpt.run.rounds import LoadChange, load_change
from tuigpt.telemetry.load import MIN_WINDOW_SECONDS, LoadMeter

_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ROUND_SECONDS = 0.3  # a round times at least this long per variant (several steps when a step is short)
MAX_STEPS_PER_ROUND = 20
NOISY_SPREAD = 1.25  # rounds whose speed-ups differ by more than this (max/min) are worth more rounds


@dataclass(frozen=True)
class Variant:
    dtype: str  # float32 | bfloat16 | float16 (the last two under autocast)
    compiled: bool = False

    @property
    def label(self) -> str:
        name = {"float32": "float32", "bfloat16": "bf16 autocast", "float16": "fp16 autocast"}[self.dtype]
        return name + (" compiled" if self.compiled else "")


@dataclass
class Timing:
    """What a trial measured; ``speedup`` > 1 means ``b`` is faster than ``a``."""

    a: Variant
    b: Variant
    batch_size: int  # sequences per timed micro-batch
    ms: dict[str, float] = field(default_factory=dict)  # median ms/step per variant label
    best_ms: dict[str, float] = field(default_factory=dict)  # the fastest round of each: least disturbed
    first_ms: dict[str, float] = field(default_factory=dict)  # the first step of each (compile included)
    warm_compile_ms: float | None = None  # b compiled again with inductor's cache warm: a later run's first step
    ratios: list[float] = field(default_factory=list)  # per round: a's ms / b's ms
    seconds: float = 0.0  # the trial's own wall-clock
    failed: dict[str, str] = field(default_factory=dict)  # variant label -> why it could not run ("does not fit")
    skipped: str | None = None  # why the trial stopped after a's warm-up (stop_if said so)
    loads: list[float | None] = field(default_factory=list)  # per round: others' share of our CPUs (None: unknown)
    stretches: list[float | None] = field(default_factory=list)  # per round: the slowdown waiting for a CPU
    cpus: int = 1  # how many CPUs those shares are of
    load_change: LoadChange | None = None  # the load moved during the rounds, twice: no answer to trust
    retimed: LoadChange | None = None  # the first rounds saw the load move and were timed again

    @property
    def speedup(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def best_ratio(self) -> float | None:
        """a's fastest round over b's: other processes only ever slow a round down, so the fastest rounds are the
        least disturbed; a second estimate beside the median that a decision can require to agree."""
        if len(self.best_ms) < 2:
            return None
        return self.best_ms[self.a.label] / self.best_ms[self.b.label]

    @property
    def rounds(self) -> int:
        return len(self.ratios)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the allocator's RuntimeError text on CPU and other devices."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate" in text)


def failure_text(exc: BaseException) -> str:
    if is_out_of_memory(exc):
        return "does not fit"
    line = (str(exc).strip().splitlines() or [""])[0]
    return f"failed: {type(exc).__name__}: {line[:160]}"


class _Runner:
    """One variant: its own model and optimizer, and a step that does what Stepper.step does."""

    def __init__(self, variant: Variant, args: ModelArgs, device: torch.device, weight_decay: float,
                 grad_clip: float) -> None:
        self.variant, self.device, self.grad_clip = variant, device, grad_clip
        torch.manual_seed(0)
        self.raw = GPT(args).to(device)
        self.optimizer = self.raw.make_optimizer(weight_decay, 1e-4, (0.9, 0.95), device.type)
        self.scaler = torch.amp.GradScaler(device.type, enabled=variant.dtype == "float16")
        self.model: Callable[..., Any] = torch.compile(self.raw) if variant.compiled else self.raw

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        ctx = (torch.autocast(self.device.type, dtype=_TORCH_DTYPES[self.variant.dtype])
               if self.variant.dtype != "float32" else contextlib.nullcontext())
        with ctx:
            _, loss = self.model(x, y)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.raw.parameters(), self.grad_clip)
        value = loss.item()  # synchronises the device, as a real step does
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return value

    def timed(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
        """Mean milliseconds per step over ``steps`` steps."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step(x, y)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return (time.perf_counter() - t0) * 1000.0 / steps


def time_pair(args: ModelArgs, batch_size: int, device: torch.device, a: Variant, b: Variant, *,
              weight_decay: float = 0.1, grad_clip: float = 1.0, budget_seconds: float = 6.0, min_rounds: int = 3,
              max_rounds: int = 9, round_seconds: float = ROUND_SECONDS,
              stop_if: Callable[[float], str | None] | None = None) -> Timing:
    """Time ``a`` against ``b`` on random tokens of the run's shape.

    ``stop_if`` sees a's warm step in ms and may end the trial there with a reason (e.g. a run too short to
    repay a compile). A variant that runs out of memory or fails is recorded in ``failed``, never raised.
    """
    started = time.perf_counter()
    timing = Timing(a, b, batch_size)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        runners: dict[str, _Runner] = {}
        x = torch.randint(args.vocab_size, (batch_size, args.block_size), device=device)
        y = torch.randint(args.vocab_size, (batch_size, args.block_size), device=device)
        warm: dict[str, float] = {}
        try:
            for variant in (a, b):
                try:
                    runner = _Runner(variant, args, device, weight_decay, grad_clip)
                    t0 = time.perf_counter()
                    runner.step(x, y)
                    timing.first_ms[variant.label] = (time.perf_counter() - t0) * 1000.0
                    warm[variant.label] = runner.timed(x, y, 1)  # allocator and autotuning settled
                    runners[variant.label] = runner
                except Exception as exc:  # noqa: BLE001 - OOM, a compiler error: the variant cannot run here
                    timing.failed[variant.label] = failure_text(exc)
                    _release(device)
                    continue
                if variant is a and stop_if is not None:
                    timing.skipped = stop_if(warm[a.label])
                    if timing.skipped is not None:
                        return timing
            if len(runners) == 2:
                slower = max(1e-3, *warm.values())
                steps = max(1, min(MAX_STEPS_PER_ROUND, math.ceil(round_seconds * 1000.0 / slower)))
                _rounds(timing, runners[a.label], runners[b.label], x, y, steps, started, budget_seconds,
                        min_rounds, max_rounds)
                if timing.load_change is not None:  # time again once, from scratch: the first rounds are void
                    timing.retimed, timing.load_change = timing.load_change, None
                    timing.ratios, timing.loads, timing.stretches = [], [], []
                    _rounds(timing, runners[a.label], runners[b.label], x, y, steps, time.perf_counter(),
                            budget_seconds, min_rounds, max_rounds)
                if b.compiled and not a.compiled:
                    timing.warm_compile_ms = _warm_compile(b, args, device, weight_decay, grad_clip, x, y)
        finally:
            runners.clear()
            if a.compiled or b.compiled:
                torch._dynamo.reset()  # the trial's compiled code must not linger in the run's caches
            _release(device)
    timing.seconds = time.perf_counter() - started
    return timing


def _rounds(timing: Timing, ra: _Runner, rb: _Runner, x: torch.Tensor, y: torch.Tensor, steps: int,
            started: float, budget: float, min_rounds: int, max_rounds: int) -> None:
    per_variant: dict[str, list[float]] = {ra.variant.label: [], rb.variant.label: []}

    def more() -> bool:
        """Until min_rounds and the budget are spent; twice the budget while the rounds still disagree widely."""
        elapsed = time.perf_counter() - started
        spread = max(timing.ratios) / min(timing.ratios) if timing.ratios else 1.0
        return timing.rounds < max_rounds and (timing.rounds < min_rounds or elapsed < budget
                                               or (elapsed < 2 * budget and spread > NOISY_SPREAD))

    while more():
        order = (ra, rb) if timing.rounds % 2 == 0 else (rb, ra)
        meter = LoadMeter()
        ms = {r.variant.label: r.timed(x, y, steps) for r in order}
        load = meter.stop(MIN_WINDOW_SECONDS)
        timing.loads.append(load.others if load is not None else None)
        timing.stretches.append(load.stretch if load is not None else None)
        timing.cpus = load.cpus if load is not None else timing.cpus
        for label, value in ms.items():
            per_variant[label].append(value)
        timing.ratios.append(ms[ra.variant.label] / ms[rb.variant.label])
    timing.ms = {label: statistics.median(values) for label, values in per_variant.items()}
    timing.best_ms = {label: min(values) for label, values in per_variant.items()}
    timing.load_change = load_change(timing.loads, timing.cpus, timing.stretches)


def _warm_compile(variant: Variant, args: ModelArgs, device: torch.device, weight_decay: float, grad_clip: float,
                  x: torch.Tensor, y: torch.Tensor) -> float | None:
    """The first step of a fresh compile now that inductor's on-disk cache holds this graph: what the run pays."""
    torch._dynamo.reset()
    try:
        runner = _Runner(variant, args, device, weight_decay, grad_clip)
        t0 = time.perf_counter()
        runner.step(x, y)
        return (time.perf_counter() - t0) * 1000.0
    except Exception:  # noqa: BLE001 - it compiled a moment ago; a failure now only loses this figure
        return None


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
