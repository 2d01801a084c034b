"""Evaluation: when it happens (:class:`EvalSchedule`), and the mean loss over ``eval_iters`` batches of each split,
with its progress published as it goes."""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Callable

import torch

from tuigpt.engine.data import BatchSampler
from tuigpt.engine.distributed import Cluster
from tuigpt.run.events import EvalProgress, Event

PROGRESS_EVERY = 0.25  # seconds between EvalProgress events: a few a second is enough to read, and costs nothing


class EvalSchedule:
    """Every ``interval`` iterations and at max_iters (the curve's last point); the user may change the interval
    while the run trains (the `e`/`E`/`i` keys, SetEvalInterval). The trainer's is the one the run goes by; front
    ends know it from RunStarted and EvalIntervalChanged."""

    def __init__(self, interval: int, max_iters: int) -> None:
        self.interval = max(1, interval)
        self.max_iters = max_iters

    def should_eval(self, step: int) -> bool:
        return step % self.interval == 0 or step == self.max_iters

    def change(self, interval: int, step: int) -> int:
        """Evaluate every ``interval`` from ``step`` on; the next iteration that evaluates."""
        self.interval = max(1, int(interval))
        return min((step // self.interval + 1) * self.interval, self.max_iters)


@torch.no_grad()
def estimate_loss(model: Callable[..., Any], raw_model: torch.nn.Module, sampler: BatchSampler, *, eval_iters: int,
                  seed: int, iter_num: int, rank: int = 0, cluster: Cluster | None = None,
                  autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
                  publish: Callable[[Event], None] | None = None) -> dict[str, float]:
    """{"train": ..., "val": ...}: batches fixed by seed and iteration, so every eval of a run (and of its resume)
    sees the same kind of batches; each rank draws its own and the means are averaged over ranks.

    ``publish`` (rank 0's bus) gets an EvalProgress after the first batch and then at most every PROGRESS_EVERY
    seconds: the untrained eval of a big config takes tens of seconds and must not look hung."""
    raw_model.eval()
    out = {}
    total, done = 2 * eval_iters, 0
    started = last = time.perf_counter()
    report = publish if rank == 0 else None
    try:
        for split in ("train", "val"):
            g = torch.Generator().manual_seed(seed * 1_000_003 + iter_num * 2 + (split == "val") + (rank << 40))
            losses = torch.zeros(eval_iters)
            for k in range(eval_iters):
                x, y = sampler.get_batch(split, generator=g)
                with autocast():
                    _, loss = model(x, y)
                losses[k] = loss.item()
                done += 1
                now = time.perf_counter()
                if report is not None and done < total and (done == 1 or now - last >= PROGRESS_EVERY):
                    last = now
                    report(EvalProgress(iter=iter_num, done=done, total=total, seconds=now - started))
            out[split] = losses.mean().item()
    finally:
        raw_model.train()
    if cluster is not None:
        out["train"], out["val"] = cluster.mean([out["train"], out["val"]], "averaging eval losses")
    return out


@torch.no_grad()
def forward_ms(model: Callable[..., Any], raw_model: torch.nn.Module, sampler: BatchSampler,
               autocast: Callable[[], contextlib.AbstractContextManager[Any]], device: torch.device,
               repeats: int) -> float:
    """Milliseconds of one forward-only batch in eval mode under the run's autocast (what an eval batch costs):
    the median of ``repeats``, after one untimed (eval-mode recompile, allocation)."""
    raw_model.eval()
    samples = []
    try:
        for i in range(repeats + 1):
            x, y = sampler.get_batch("val")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            with autocast():
                _, loss = model(x, y)
            loss.item()
            if i:
                samples.append((time.perf_counter() - t0) * 1000.0)
    finally:
        raw_model.train()
    return statistics.median(samples)
