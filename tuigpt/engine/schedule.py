"""The learning-rate schedule: nanoGPT's linear warmup, then cosine decay to min_lr."""

from __future__ import annotations

import math


def lr_at(it: int, *, learning_rate: float, min_lr: float, warmup_iters: int, lr_decay_iters: int,
          decay_lr: bool) -> float:
    """Linear warmup from 0 to learning_rate, then cosine decay to min_lr at lr_decay_iters, then min_lr."""
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it >= lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 → 0
    return min_lr + coeff * (learning_rate - min_lr)


def lr_for(config: object, it: int) -> float:
    """The learning rate of iteration ``it`` under a TrainConfig."""
    c = config
    return lr_at(it, learning_rate=c.learning_rate, min_lr=c.effective_min_lr,  # type: ignore[attr-defined]
                 warmup_iters=c.warmup_iters, lr_decay_iters=c.effective_lr_decay_iters,  # type: ignore[attr-defined]
                 decay_lr=c.decay_lr)  # type: ignore[attr-defined]
