"""Evaluation: the mean loss over ``eval_iters`` batches of each split."""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from tuigpt.engine.data import BatchSampler
from tuigpt.engine.distributed import Cluster


@torch.no_grad()
def estimate_loss(model: Callable[..., Any], raw_model: torch.nn.Module, sampler: BatchSampler, *, eval_iters: int,
                  seed: int, iter_num: int, rank: int = 0, cluster: Cluster | None = None,
                  autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
                  ) -> dict[str, float]:
    """{"train": ..., "val": ...}: batches fixed by seed and iteration, so every eval of a run (and of its resume)
    sees the same kind of batches; each rank draws its own and the means are averaged over ranks."""
    raw_model.eval()
    out = {}
    try:
        for split in ("train", "val"):
            g = torch.Generator().manual_seed(seed * 1_000_003 + iter_num * 2 + (split == "val") + (rank << 40))
            losses = torch.zeros(eval_iters)
            for k in range(eval_iters):
                x, y = sampler.get_batch(split, generator=g)
                with autocast():
                    _, loss = model(x, y)
                losses[k] = loss.item()
            out[split] = losses.mean().item()
    finally:
        raw_model.train()
    if cluster is not None:
        out["train"], out["val"] = cluster.mean([out["train"], out["val"]], "averaging eval losses")
    return out
