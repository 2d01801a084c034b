"""The learning-rate schedule: linear warmup, then nanoGPT's cosine decay to min_lr (``cosine``), or a
warmup-stable-decay schedule (``wsd``): the peak held, then a cooldown over the last ``cooldown_frac`` of the run,
linear or cosine to min_lr.

WSD is the schedule of the modded-nanogpt speedrun and of nanochat (``--warmdown-ratio``): the model trains at the
peak rate as long as it can and the loss drops in the cooldown, so a run can be planned, stopped or extended until
the cooldown starts (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
Durations", arXiv:2405.18392, for linear vs cosine cooldowns).
"""

from __future__ import annotations

import math

from tuigpt.run.plan import Cooldown, cooldown_start

__all__ = ["cooldown_from", "cooldown_start", "lr_at", "lr_for", "lr_planned"]


def lr_at(it: int, *, learning_rate: float, min_lr: float, warmup_iters: int, lr_decay_iters: int,
          decay_lr: bool, schedule: str = "cosine", cooldown_frac: float = 0.2, cooldown_shape: str = "linear") -> float:
    """The learning rate of step index ``it`` (0 is the first step): linear warmup from 0 to learning_rate, then
    ``cosine`` decay to min_lr at lr_decay_iters, or ``wsd``: learning_rate until the cooldown, then
    ``cooldown_shape`` (linear or cosine) down to min_lr at lr_decay_iters; min_lr after."""
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it >= lr_decay_iters:
        return min_lr
    if schedule == "wsd":
        start = cooldown_start(warmup_iters=warmup_iters, lr_decay_iters=lr_decay_iters, cooldown_frac=cooldown_frac)
        return _cooled(Cooldown(start, lr_decay_iters, start).progress(it), learning_rate, min_lr, cooldown_shape)
    ratio = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 → 0
    return min_lr + coeff * (learning_rate - min_lr)


def _cooled(progress: float, learning_rate: float, min_lr: float, shape: str) -> float:
    """The learning rate ``progress`` (0 → 1) into a cooldown from learning_rate to min_lr."""
    coeff = 1.0 - progress if shape == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_lr + coeff * (learning_rate - min_lr)


def lr_planned(config: object, it: int, cooldown: Cooldown | None) -> float:
    """The learning rate of step index ``it`` in a run that ends at a time: the warmup, the peak until its
    planner begins the cooldown (``cooldown`` None until then), then down to min_lr where the plan ends."""
    c = config
    if not c.decay_lr:  # type: ignore[attr-defined]
        return c.learning_rate  # type: ignore[attr-defined]
    peak = c.learning_rate  # type: ignore[attr-defined]
    warm = lambda i: peak * (i + 1) / (c.warmup_iters + 1) if i < c.warmup_iters else peak  # noqa: E731
    if cooldown is None or it < cooldown.start:
        return warm(it)
    # from the learning rate the run had where the cooldown began (the peak, or the warmup's when it began early)
    return _cooled(cooldown.progress(it), warm(cooldown.start), c.effective_min_lr, c.cooldown_shape)  # type: ignore[attr-defined]


def lr_for(config: object, it: int) -> float:
    """The learning rate of step index ``it`` under a TrainConfig."""
    c = config
    return lr_at(it, learning_rate=c.learning_rate, min_lr=c.effective_min_lr,  # type: ignore[attr-defined]
                 warmup_iters=c.warmup_iters, lr_decay_iters=c.effective_lr_decay_iters,  # type: ignore[attr-defined]
                 decay_lr=c.decay_lr, schedule=c.schedule, cooldown_frac=c.cooldown_frac,  # type: ignore[attr-defined]
                 cooldown_shape=c.cooldown_shape)  # type: ignore[attr-defined]


def cooldown_from(config: object) -> int | None:
    """After how many iterations WSD's cooldown begins (the learning rate falls from there to min_lr), or None
    when the config has no cooldown (cosine, decay off)."""
    c = config
    if c.schedule != "wsd" or not c.decay_lr:  # type: ignore[attr-defined]
        return None
    return cooldown_start(warmup_iters=c.warmup_iters, lr_decay_iters=c.effective_lr_decay_iters,  # type: ignore[attr-defined]
                          cooldown_frac=c.cooldown_frac)  # type: ignore[attr-defined]
