"""Evaluation: when it happens (:class:`EvalSchedule`), and the mean loss over ``eval_iters`` batches of each split
(or the whole split, when it holds no more) and its bits per byte, with its progress published as it goes."""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Callable

import torch

from tuigpt.engine.data import BatchSampler
from tuigpt.engine.distributed import Cluster
from tuigpt.run.events import EvalProgress, Event
from tuigpt.run.numbers import bits_per_byte

PROGRESS_EVERY = 0.25  # seconds between EvalProgress events: a few a second is enough to read, and costs nothing
# A GPU evaluates several batches of a split in one forward pass, fewer kernel launches for the same batches: the
# baby GPT's eval (200 batches of 64 x 256 a split) took 2.05-2.34 s one batch a pass and 1.76 s eight a pass on an
# H100 (benchmarks/eval_group.py, 4 rounds alternating); its eager forward is bound more by the memory traffic of
# its element-wise kernels than by launches, so the gain is the launches' share. Bounded so the widest tensor of a
# pass (float32 logits, or the MLP's hidden layer) stays within EVAL_GROUP_BYTES: GPT-2's 50k vocabulary at
# 12 x 1024 tokens is 2.5 GB a batch and stays at one.
EVAL_GROUP_MAX = 8
EVAL_GROUP_BYTES = 1 << 30


class EvalSchedule:
    """Every ``interval`` iterations and at max_iters (the curve's last point); the user may change the interval
    while the run trains (the `e`/`E`/`i` keys, SetEvalInterval). The trainer's is the one the run goes by; front
    ends know it from RunStarted and EvalIntervalChanged."""

    def __init__(self, interval: int, end: Callable[[], int]) -> None:
        self.interval = max(1, interval)
        self.end = end  # the run's last iteration: max_iters, or a plan's, which moves as the run goes

    def should_eval(self, step: int) -> bool:
        return step % self.interval == 0 or step == self.end()

    def change(self, interval: int, step: int) -> int:
        """Evaluate every ``interval`` from ``step`` on; the next iteration that evaluates."""
        self.interval = max(1, int(interval))
        return min((step // self.interval + 1) * self.interval, self.end())


@torch.no_grad()
def estimate_loss(model: Callable[..., Any], raw_model: torch.nn.Module, sampler: BatchSampler, *, eval_iters: int,
                  seed: int, iter_num: int, rank: int = 0, cluster: Cluster | None = None,
                  autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
                  publish: Callable[[Event], None] | None = None, stop_at: float | None = None
                  ) -> dict[str, float | None]:
    """{"train", "val", "train_bpb", "val_bpb", "batches": done, "planned": n}: the mean loss of each split over
    ``eval_iters`` batches of random windows, fixed by seed and iteration, so every eval of a run (and of its resume)
    sees the same kind of batches; each rank draws its own and the sums are averaged over ranks. A split that holds
    no more windows than that (:func:`whole_windows`) is read whole instead, every window once: its exact loss, the
    same on every rank. Bits per byte divide the summed loss of the predicted tokens by the bytes they spell
    (nanochat's evaluate_bpb): targets that spell no text (end-of-text) are left out of both. One forward pass a
    batch gives every target's loss (``reduction="none"``) for both.

    The splits take turns, a group of batches each (:func:`eval_group`: one batch on a CPU), so an eval cut short at
    ``stop_at`` (a ``time.monotonic()``: a run that ends at a time must not overrun its end in an eval) still has
    both, over the ``batches`` done (whole groups; a whole split's windows are read in an order shuffled once per
    run, so a cut one is a random part of it). Without ``stop_at`` the losses stay on the device and are read once:
    a read a batch (nanoGPT's loss.item()) left a GPU idle while the host queued the next batch, and the evals of
    the baby GPT took twice as long; with it, each group is read before the next is judged, so the clock sees the
    device's work.
    ``publish`` (rank 0's bus) gets an EvalProgress after the first group and then at most every PROGRESS_EVERY
    seconds: the untrained eval of a big config takes tens of seconds and must not look hung."""
    raw_model.eval()
    token_bytes: torch.Tensor | None = None
    group = eval_group(raw_model, sampler, eval_iters)
    rows = group * sampler.batch_size
    splits = ("train", "val")
    passes, orders, generators = {}, {}, {}
    for split in splits:
        whole = whole_windows(len(sampler.tokens(split)), sampler.block_size, sampler.batch_size, eval_iters)
        if whole:  # the same order every eval of the run: a cut eval reads the same random part each time
            shuffle = torch.Generator().manual_seed(seed * 1_000_003 + (split == "val") + 7)
            orders[split] = torch.randperm(whole, generator=shuffle) * sampler.block_size
            passes[split] = -(-whole // rows)
        else:
            generators[split] = torch.Generator().manual_seed(
                seed * 1_000_003 + iter_num * 2 + (split == "val") + (rank << 40))
            passes[split] = eval_iters // group
    total, done = group * sum(passes.values()), 0
    started = last = time.perf_counter()
    report = publish if rank == 0 else None
    sums: dict[str, list[torch.Tensor]] = {split: [] for split in splits}  # [loss, targets, nats, bytes] a pass
    try:
        for k in range(max(passes.values())):
            # a group of batches that would end past stop_at is not started (judged on the groups so far)
            if k and stop_at is not None and time.monotonic() + (time.perf_counter() - started) / k > stop_at:
                break
            for split in splits:
                if k >= passes[split]:
                    continue
                if split in orders:
                    x, y = sampler.read(split, orders[split][k * rows:(k + 1) * rows], rows)
                else:
                    x, y = grouped_batch(sampler, split, group, generators[split])
                if token_bytes is None:
                    token_bytes = torch.from_numpy(sampler.data.tokenizer.token_bytes()).to(y.device)
                with autocast():
                    _, per_token = model(x, y, reduction="none")
                sums[split].append(batch_loss(per_token, y, token_bytes))
                done += group
                now = time.perf_counter()
                if report is not None and done < total and (done == group or now - last >= PROGRESS_EVERY):
                    last = now
                    report(EvalProgress(iter=iter_num, done=done, total=total, seconds=now - started))
            if stop_at is not None:
                sums["val"][-1].tolist()  # the group is done before the clock is read again
        values = torch.stack([torch.stack(sums[split]).sum(0) for split in splits]).flatten().tolist()
    finally:
        raw_model.train()
    if cluster is not None:  # the sums over every rank's own batches (the same on every rank for a whole split)
        values = cluster.mean(values, "averaging eval losses")
    train_sum, train_n, train_nats, train_bytes, val_sum, val_n, val_nats, val_bytes = values
    return {"train": train_sum / train_n, "val": val_sum / val_n, "train_bpb": bits_per_byte(train_nats, train_bytes),
            "val_bpb": bits_per_byte(val_nats, val_bytes), "batches": float(done), "planned": float(total)}


def whole_windows(n_tokens: int, block_size: int, batch_size: int, eval_iters: int) -> int:
    """How many windows an eval reads a split of ``n_tokens`` in whole, or 0 when it samples the split. eval_iters
    batches of random windows from a split that holds no more windows than that read the same text over and over
    (the baby GPT's val split, 111,540 tokens, is 435 windows of 256; 200 batches of 64 sample 12,800, each of its
    windows ~29 times): its consecutive windows, each once, give the loss those samples estimate (every target
    after 0 to block_size - 1 tokens of its window, as in a random one) exactly, and cost less."""
    windows = (n_tokens - 1) // block_size
    return windows if windows <= eval_iters * batch_size else 0


def eval_batches(raw_model: torch.nn.Module, sampler: BatchSampler, eval_iters: int) -> int:
    """The batches an eval computes, both splits: eval_iters of a sampled split, a whole split's windows in
    batches (its last group filled out); what an eval's cost is counted in (the plan, `bench`)."""
    group = eval_group(raw_model, sampler, eval_iters)
    rows = group * sampler.batch_size
    count = 0
    for split in ("train", "val"):
        whole = whole_windows(len(sampler.tokens(split)), sampler.block_size, sampler.batch_size, eval_iters)
        count += group * -(-whole // rows) if whole else eval_iters
    return count


def eval_group(raw_model: torch.nn.Module, sampler: BatchSampler, eval_iters: int) -> int:
    """How many batches of a split one eval forward pass takes: one on a CPU (its forward is arithmetic-bound: a
    bigger batch costs in proportion), on a GPU up to EVAL_GROUP_MAX within EVAL_GROUP_BYTES; always a divisor of
    eval_iters, so every pass has one shape (a compiled model compiles it once) and the groups' mean is the
    batches'."""
    args = getattr(raw_model, "args", None)
    if sampler.device.type != "cuda" or args is None:
        return 1
    widest = sampler.batch_size * sampler.block_size * 4 * max(args.vocab_size, 4 * args.n_embd)
    cap = max(1, min(EVAL_GROUP_MAX, EVAL_GROUP_BYTES // widest))
    return max(d for d in range(1, cap + 1) if eval_iters % d == 0)


def grouped_batch(sampler: BatchSampler, split: str, group: int,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``group`` batches of ``split`` drawn one after another, as one batch (group x batch_size rows)."""
    if group == 1:
        return sampler.get_batch(split, generator=generator)
    xs, ys = zip(*(sampler.get_batch(split, generator=generator) for _ in range(group)))
    return torch.cat(xs), torch.cat(ys)


def batch_loss(per_token: torch.Tensor, targets: torch.Tensor, token_bytes: torch.Tensor) -> torch.Tensor:
    """[summed loss, targets, summed loss in nats of the targets that spell text, UTF-8 bytes] of a batch, on the
    device, from each target's loss and the bytes each token spells. Ignored targets (-1: rows that fill out a
    batch) count in none; targets that spell nothing (end-of-text) count in the loss but not in bits per byte, as
    in nanochat's evaluate_bpb."""
    targets = targets.reshape(-1)
    kept = targets >= 0
    spelled = torch.where(kept, token_bytes[targets.clamp(min=0)], 0)
    per_token = per_token.reshape(-1).float() * kept
    return torch.stack([per_token.sum(), kept.sum().to(per_token.dtype), (per_token * (spelled > 0)).sum(),
                        spelled.sum().to(per_token.dtype)])


@torch.no_grad()
def forward_ms(model: Callable[..., Any], raw_model: torch.nn.Module, sampler: BatchSampler,
               autocast: Callable[[], contextlib.AbstractContextManager[Any]], device: torch.device,
               repeats: int, eval_iters: int) -> float:
    """Milliseconds of one forward-only batch in eval mode under the run's autocast, as an eval computes it (in
    groups of :func:`eval_group` batches a pass: a pass's time over its batches), for `bench`'s eval estimate: the
    median of ``repeats``, after one untimed (eval-mode recompile, allocation), each read back from the device
    before the clock stops."""
    raw_model.eval()
    group = eval_group(raw_model, sampler, eval_iters)
    samples = []
    try:
        for i in range(repeats + 1):
            x, y = grouped_batch(sampler, "val", group)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            with autocast():
                _, loss = model(x, y)
            loss.item()
            if i:
                samples.append((time.perf_counter() - t0) * 1000.0 / group)
    finally:
        raw_model.train()
    return statistics.median(samples)
