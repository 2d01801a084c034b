"""What happens when a loss or gradient goes NaN/Inf: the forensics, and the ``on_nan`` policy.

The step that went bad was not applied (see :mod:`.step`), so the weights in memory are still finite.
``pause`` waits for the user (the monitor's default), ``stop`` ends the run with exit code 3 (headless
default), ``rewind`` puts the run back on its last good checkpoint (last.pt), draws and leaves out the
offending iteration's batches, and multiplies the learning rate by ``nan_lr_factor`` — at most
``nan_max_rewinds`` times, then it pauses or stops as the front end's default would.
"""

from __future__ import annotations

import collections
from typing import Any

import torch

from tuigpt.engine import checkpointing as ckpt
from tuigpt.engine.checkpoint import load_checkpoint
from tuigpt.engine.data import BatchSampler
from tuigpt.engine.step import StepResult
from tuigpt.run.config import TrainConfig
from tuigpt.run.errors import UserError
from tuigpt.run.events import IterationStats, NanDetected, Rewound

RECENT_STEPS = 8  # good steps (loss, grad norm, lr) a NaN report shows
RECENT_LAYERS = 3  # good logged steps whose per-group norms a NaN report shows


def resolve_on_nan(on_nan: str, pause_on_trouble: bool) -> str:
    """``auto``: pause where a user watches (the monitor), stop where nobody does (headless)."""
    if on_nan == "auto":
        return "pause" if pause_on_trouble else "stop"
    return on_nan


class NanGuard:
    """Remembers the last good steps, writes the NaN report, and applies on_nan."""

    def __init__(self, config: TrainConfig, pause_on_trouble: bool, world_size: int = 1, lr_scale: float = 1.0,
                 rewinds: int = 0) -> None:
        self.mode = resolve_on_nan(config.on_nan, pause_on_trouble)
        if self.mode == "rewind" and world_size > 1:
            raise UserError("on_nan: rewind restores last.pt on one process only; with several ranks use "
                            "on_nan: pause or on_nan: stop")
        self.fallback = "pause" if pause_on_trouble else "stop"
        self.max_rewinds, self.factor = config.nan_max_rewinds, config.nan_lr_factor
        self.lr_scale, self.rewinds = lr_scale, rewinds  # a resumed run keeps its lowered learning rate
        self.skip: set[int] = set()  # iterations whose batches are drawn and left out
        self._steps: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_STEPS)
        self._layers: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_LAYERS)

    def good(self, stats: IterationStats) -> None:
        """An applied step (called for every iteration: a few floats)."""
        self._steps.append({"iter": stats.iter, "loss": stats.loss, "grad_norm": stats.grad_norm, "lr": stats.lr})
        if stats.layers is not None:
            self._layers.append({"iter": stats.iter, "layers": stats.layers})

    def action(self) -> str:
        """What to do with this NaN: the mode, or the fallback once the rewinds are used up."""
        if self.mode == "rewind" and self.rewinds >= self.max_rewinds:
            return self.fallback
        return self.mode

    def report(self, iteration: int, lr: float, result: StepResult) -> NanDetected:
        """The forensics of a bad step (what it was, the last good steps, where its batches came from) and the
        action taken."""
        return NanDetected(iter=iteration, cause=result.bad or "loss", loss=result.loss, grad_norm=result.grad_norm,
                           lr=lr, layers=result.layers or [], recent=list(self._steps),
                           recent_layers=list(self._layers), batch_starts=result.batch_starts or [],
                           action=self.action())

    def message(self, event: NanDetected) -> str:
        """The one line the NaN's Notice says (the iteration and what was not applied)."""
        what = f"loss is {event.loss}" if event.cause == "loss" else f"gradient norm is {event.grad_norm}"
        text = (f"{what} at iteration {event.iter}: the step was not applied, so the weights and checkpoints stay "
                f"finite")
        if event.action == "rewind":
            return text + f" | rewinding to the last checkpoint ({self.rewinds + 1} of {self.max_rewinds})"
        if self.mode == "rewind":
            text += f"; {self.rewinds} rewind(s) did not help"
        return text + " (lower learning_rate, or check the data)"

    def skip_batches(self, iteration: int, sampler: BatchSampler, micro_steps: int) -> None:
        """Before the step that becomes ``iteration``: draw and leave out the batches that made it go bad."""
        if iteration in self.skip:
            for _ in range(micro_steps):
                sampler.get_batch("train")

    def rewind(self, bad_iter: int, run_dir_last: Any, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, sampler: BatchSampler, config: TrainConfig,
               current_iter: int) -> Rewound:
        """Restore last.pt (when there is one; else keep the finite weights in memory and drop the optimizer's
        moments) into the live objects, and lower the learning rate. Rewound.iter is where training goes on."""
        checkpoint = None
        if run_dir_last.exists():
            checkpoint = load_checkpoint(run_dir_last)
            ckpt.restore_weights(checkpoint, run_dir_last, model, optimizer, scaler, config)
            ckpt.restore_rng(checkpoint, 0, config.seed, int(checkpoint["iter_num"]))
            if "sampler" in checkpoint and checkpoint["config"]["batch_size"] == config.batch_size:
                sampler.load_state_dict(checkpoint["sampler"])
        else:
            optimizer.state.clear()  # no checkpoint yet: keep the weights, forget the moments that blew up
        self.rewinds += 1
        self.lr_scale *= self.factor
        self.skip.add(bad_iter)
        self._steps.clear()
        self._layers.clear()
        iteration = int(checkpoint["iter_num"]) if checkpoint is not None else current_iter
        return Rewound(from_iter=bad_iter, iter=iteration, checkpoint=str(run_dir_last) if checkpoint else None,
                       lr_scale=self.lr_scale, rewinds=self.rewinds, max_rewinds=self.max_rewinds,
                       skipped=sorted(self.skip))
