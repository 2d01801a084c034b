"""Evaluation: when it happens (:class:`EvalSchedule`), and the mean loss over ``eval_iters`` batches of each split
and its bits per byte, with its progress published as it goes."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

import torch

from tuigpt.engine.data import BatchSampler
from tuigpt.engine.distributed import Cluster
from tuigpt.run.events import EvalProgress, Event
from tuigpt.run.numbers import bits_per_byte

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
                  publish: Callable[[Event], None] | None = None) -> dict[str, float | None]:
    """{"train": ..., "val": ..., "train_bpb": ..., "val_bpb": ...}: batches fixed by seed and iteration, so every
    eval of a run (and of its resume) sees the same kind of batches; each rank draws its own and the means are
    averaged over ranks. Bits per byte divide the summed loss of the predicted tokens by the bytes they spell, from
    the tokenizer's bytes per token (nanochat's evaluate_bpb): targets that spell no text (end-of-text) are left out
    of both. One forward pass a batch gives every target's loss (``reduction="none"``) for both.

    ``publish`` (rank 0's bus) gets an EvalProgress after the first batch and then at most every PROGRESS_EVERY
    seconds: the untrained eval of a big config takes tens of seconds and must not look hung."""
    raw_model.eval()
    means: dict[str, float] = {}
    sums: list[float] = []  # nats and bytes of each split, summed over its batches
    token_bytes: torch.Tensor | None = None
    total, done = 2 * eval_iters, 0
    started = last = time.perf_counter()
    report = publish if rank == 0 else None
    try:
        for split in ("train", "val"):
            g = torch.Generator().manual_seed(seed * 1_000_003 + iter_num * 2 + (split == "val") + (rank << 40))
            losses: list[torch.Tensor] = []
            for _ in range(eval_iters):
                x, y = sampler.get_batch(split, generator=g)
                if token_bytes is None:
                    token_bytes = torch.from_numpy(sampler.data.tokenizer.token_bytes()).to(y.device)
                with autocast():
                    _, per_token = model(x, y, reduction="none")
                # kept on the device and read once a split: a read a batch (nanoGPT's loss.item()) left a GPU idle
                # while the host queued the next batch, and the evals of the baby GPT took twice as long
                losses.append(batch_loss(per_token, token_bytes[y]))
                done += 1
                now = time.perf_counter()
                if report is not None and done < total and (done == 1 or now - last >= PROGRESS_EVERY):
                    last = now
                    report(EvalProgress(iter=iter_num, done=done, total=total, seconds=now - started))
            stacked = torch.stack(losses)  # (eval_iters, 3): mean, nats, bytes of each batch
            mean, nats, n_bytes = torch.stack([stacked[:, 0].mean(), stacked[:, 1].sum(), stacked[:, 2].sum()]).tolist()
            means[split] = mean
            sums += [nats, n_bytes]
    finally:
        raw_model.train()
    values = [means["train"], means["val"], *sums]
    if cluster is not None:  # a mean of sums over equal batch counts: the ratio is the sum's over every rank
        values = cluster.mean(values, "averaging eval losses")
    train, val, train_nats, train_bytes, val_nats, val_bytes = values
    return {"train": train, "val": val, "train_bpb": bits_per_byte(train_nats, train_bytes),
            "val_bpb": bits_per_byte(val_nats, val_bytes)}


def batch_loss(per_token: torch.Tensor, spelled: torch.Tensor) -> torch.Tensor:
    """[mean loss, summed loss in nats, UTF-8 bytes] of a batch, on the device, from each target's loss and the bytes
    each target spells. Targets that spell nothing (end-of-text) count in neither sum, as in nanochat's evaluate_bpb;
    the mean is the usual loss over every target."""
    spelled = spelled.reshape(-1)
    per_token = per_token.reshape(-1).float()
    return torch.stack([per_token.mean(), (per_token * (spelled > 0)).sum(), spelled.sum().to(per_token.dtype)])
