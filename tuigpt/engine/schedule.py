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


def lr_at_last_iteration(config: object) -> float:
    """The learning rate the run's last optimizer step uses (iteration max_iters): what a schedule answers for the
    end-of-run check below, whichever shape it has."""
    return lr_for(config, config.max_iters - 1)  # type: ignore[attr-defined]


UNFINISHED_DECAY = 0.1  # the last step's LR further above min_lr than this share of the way to the peak: said


def unfinished_schedule(config: object) -> str | None:
    """What to tell the user when the run ends before its schedule does (``--max_iters=400`` on a config with
    ``lr_decay_iters: 1000`` trains its last step at 2.1e-3, not at min_lr), naming the key that fixes it; None when
    the schedule reaches its floor (or is constant by choice: decay_lr false, or a WSD without a cooldown)."""
    c = config
    if not c.decay_lr or (c.schedule == "wsd" and c.cooldown_frac == 0):  # type: ignore[attr-defined]
        return None
    if c.planned:  # type: ignore[attr-defined]  # a run that ends at a time plans its cooldown to its last step
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
        decay = "cosine decay" if c.schedule == "cosine" else "WSD cooldown"  # type: ignore[attr-defined]
        why, fix = (f"lr_decay_iters={c.effective_lr_decay_iters} is beyond max_iters={last}: the {decay} "  # type: ignore[attr-defined]
                    f"is cut short", f"--lr_decay_iters={last}")
    return (f"the learning rate will still be {end:.2e} at the last iteration ({last:,}), {where}: {why}; to end "
            f"at min_lr, add {fix}")
