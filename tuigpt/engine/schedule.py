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


def lr_at_last_iteration(config: object) -> float:
    """The learning rate the run's last optimizer step uses (iteration max_iters): what a schedule answers for the
    end-of-run check below, whichever shape it has."""
    return lr_for(config, config.max_iters - 1)  # type: ignore[attr-defined]


UNFINISHED_DECAY = 0.1  # the last step's LR further above min_lr than this share of the way to the peak: said


def unfinished_schedule(config: object) -> str | None:
    """What to tell the user when the run ends before its schedule does (``--max_iters=400`` on a config with
    ``lr_decay_iters: 1000`` trains its last step at 2.1e-3, not at min_lr), naming the key that fixes it; None when
    the schedule reaches its floor (or is constant by choice: decay_lr false)."""
    c = config
    if not c.decay_lr:  # type: ignore[attr-defined]
        return None
    peak, floor, end = c.learning_rate, c.effective_min_lr, lr_at_last_iteration(c)  # type: ignore[attr-defined]
    if peak <= floor or end - floor <= UNFINISHED_DECAY * (peak - floor):
        return None
    last = c.max_iters  # type: ignore[attr-defined]
    where = f"{(end - floor) / (peak - floor):.0%} of the way from min_lr {floor:.2e} to learning_rate {peak:.2e}"
    if last <= c.warmup_iters:  # type: ignore[attr-defined]
        why, fix = (f"warmup_iters={c.warmup_iters} is not shorter than max_iters={last}: the run ends while the "  # type: ignore[attr-defined]
                    f"learning rate still rises", f"--warmup_iters={max(0, last // 10)}")
    else:
        why, fix = (f"lr_decay_iters={c.effective_lr_decay_iters} is beyond max_iters={last}: the cosine decay "  # type: ignore[attr-defined]
                    f"is cut short", f"--lr_decay_iters={last}")
    return (f"the learning rate will still be {end:.2e} at the last iteration ({last:,}), {where}: {why}; to end "
            f"at min_lr, add {fix}")
