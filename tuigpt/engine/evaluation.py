"""Evaluation: the mean loss over ``eval_iters`` batches of each split, with its progress published as it goes."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

import torch

from tuigpt.engine.data import BatchSampler
from tuigpt.engine.distributed import Cluster
from tuigpt.run.events import EvalProgress, Event

PROGRESS_EVERY = 0.25  # seconds between EvalProgress events: a few a second is enough to read, and costs nothing


@torch.no_grad()
def estimate_loss(model: Callable[..., Any], raw_model: torch.nn.Module, sampler: BatchSampler, *, eval_iters: int,
                  seed: int, iter_num: int, rank: int = 0, cluster: Cluster | None = None,
                  autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
                  publish: Callable[[Event], None] | None = None, stop_at: float | None = None) -> dict[str, float]:
    """{"train": ..., "val": ..., "batches": n}: batches fixed by seed and iteration, so every eval of a run (and of
    its resume) sees the same kind of batches; each rank draws its own and the means are averaged over ranks.

    The splits take turns, a batch each, so an eval cut short at ``stop_at`` (a ``time.monotonic()``: a run that
    ends at a time must not overrun its end in an eval) still has both, over the ``batches`` done of each.
    ``publish`` (rank 0's bus) gets an EvalProgress after the first batch and then at most every PROGRESS_EVERY
    seconds: the untrained eval of a big config takes tens of seconds and must not look hung."""
    raw_model.eval()
    total, done = 2 * eval_iters, 0
    started = last = time.perf_counter()
    report = publish if rank == 0 else None
    splits = ("train", "val")
    generators = {split: torch.Generator().manual_seed(seed * 1_000_003 + iter_num * 2 + (split == "val") + (rank << 40))
                  for split in splits}
    losses = {split: torch.zeros(eval_iters) for split in splits}
    k = 0
    try:
        for k in range(eval_iters):
            # a pair of batches that would end past stop_at is not started (judged on the pairs so far)
            if k and stop_at is not None and time.monotonic() + (time.perf_counter() - started) / k > stop_at:
                break
            for split in splits:
                x, y = sampler.get_batch(split, generator=generators[split])
                with autocast():
                    _, loss = model(x, y)
                losses[split][k] = loss.item()
                done += 1
                now = time.perf_counter()
                if report is not None and done < total and (done == 1 or now - last >= PROGRESS_EVERY):
                    last = now
                    report(EvalProgress(iter=iter_num, done=done, total=total, seconds=now - started))
        else:
            k = eval_iters
    finally:
        raw_model.train()
    out = {split: losses[split][:max(1, k)].mean().item() for split in splits}
    out["batches"] = max(1, k)
    if cluster is not None:
        out["train"], out["val"] = cluster.mean([out["train"], out["val"]], "averaging eval losses")
    return out
