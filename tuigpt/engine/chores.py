"""What a trainer does at an eval: the eval itself, the timeline sample, and checkpoints (also on command,
on stop, and after losing the group). A mixin of :class:`~.trainer.Trainer`, kept apart so the loop reads in
one screen; it uses the trainer's attributes and its ``_set_state``, ``_back_to_work`` and ``_trouble``.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tuigpt.engine import checkpointing as ckpt
from tuigpt.engine.checkpoint import capture_rng_state
from tuigpt.engine.evaluation import estimate_loss
from tuigpt.engine.sampling import sample_events
from tuigpt.run import events as ev
from tuigpt.run.commands import Sample, Stop
from tuigpt.run.rundir import BEST, LAST


class Chores:
    """Eval, sample and checkpoint for the Trainer (see the module docstring)."""


    def _evaluate(self) -> None:
        self._set_state(ev.RunState.EVALUATING)
        t0 = time.perf_counter()
        losses = estimate_loss(self.eval_model, self.raw_model, self.sampler, eval_iters=self.config.eval_iters,
                               seed=self.config.seed, iter_num=self.iter_num, rank=self.rank, cluster=self.cluster,
                               autocast=self.stepper.autocast, publish=self.bus.publish,
                               stop_at=self.planner.eval_stop_at() if self.planner is not None else None)
        seconds = time.perf_counter() - t0
        self.eval_seconds += seconds
        val = losses["val"]
        is_best = math.isfinite(val) and (self.best_val_loss is None or val < self.best_val_loss)
        if is_best:
            self.best_val_loss = val
        self.last_val_loss = val
        self.bus.publish(ev.EvalResult(iter=self.iter_num, train_loss=losses["train"], val_loss=val,
                                    best_val_loss=self.best_val_loss if self.best_val_loss is not None else val,
                                    is_best=is_best, seconds=seconds))
        # on_nan: rewind needs a good checkpoint to go back to, the untrained one included
        if not self.config.eval_only and (self.iter_num > 0 or self.resumed or self.guard.mode == "rewind"):
            final = self.planner is not None and self.iter_num >= self.planner.total_iters  # a plan's last model
            if self.checkpoints.wanted_at_eval(self.config, is_best) or final:
                self._gather_sampler_states()
                if self._checkpoint("eval") and is_best:
                    self._checkpoint("best", name=BEST)
        if self.config.sample_every_eval and self.rank == 0 and not self.config.eval_only:
            self._sample(Sample(), timeline=True)  # the same prompt and seed each time: only the model changes
        if self.planner is not None:  # what the eval cost, with its checkpoints and sample: the plan's eval cost
            self.planner.evaluated(self.iter_num, time.perf_counter() - t0, int(losses["batches"]))
            if losses["batches"] < self.config.eval_iters and self.rank == 0:
                self.bus.publish(ev.Notice(level="warning", topic="plan", message=(
                    f"the eval at iteration {self.iter_num:,} was cut to {int(losses['batches'])} of "
                    f"{self.config.eval_iters} batches a split to end on time")))
        self._back_to_work()

    def _sample(self, command: Sample, timeline: bool = False) -> None:
        """Generate text for a front end; a failure is reported and training goes on."""
        self._set_state(ev.RunState.SAMPLING)
        seed = self.config.seed + (0 if timeline else self.iter_num)
        for event in sample_events(self.raw_model, self.data.tokenizer, command, self.config.to_dict(), seed,
                                   self.iter_num, self.stepper.autocast(), timeline):
            self.bus.publish(event)
        self._back_to_work()

    def checkpoint_state(self) -> dict[str, Any]:
        return ckpt.make_state(
            model=self.raw_model, optimizer=self.optimizer, scaler=self.scaler, model_args=self.model_args.to_dict(),
            config=self.config, iter_num=self.iter_num, best_val_loss=self.best_val_loss,
            last_val_loss=self.last_val_loss, data=self.data, rng=capture_rng_state(), sampler=self.sampler.state_dict(),
            samplers=self._sampler_states if self.cluster is not None else [self.sampler.state_dict()],
            world_size=self.world_size, train_seconds=self.train_seconds,
            health={"lr_scale": self.guard.lr_scale, "nan_rewinds": self.guard.rewinds},
            plan=self.planner.state_dict(self.iter_num) if self.planner is not None else None)

    def _gather_sampler_states(self) -> None:
        """Before a checkpoint, on every rank: rank 0 collects every rank's sampler state (a collective)."""
        if self.cluster is not None:
            self._sampler_states = self.cluster.gather_objects(self.sampler.state_dict(), "gathering sampler states")

    def _save_after_failure(self) -> None:
        """Rank 0 after losing the group: its replica is the model at iter_num (no step was half applied), so it
        writes last.pt without any collective; the other ranks' sampler states are unknown."""
        if self.iter_num == 0 and not self.resumed:
            return
        self._sampler_states = [self.stepper.start_sampler_state or self.sampler.state_dict()]
        self._stop = Stop(save=True)  # a trouble pause must not wait for a command now
        try:
            self._checkpoint("failure")
        except Exception as exc:  # the failure itself is what gets reported
            self.bus.publish(ev.Notice(level="error", message=f"could not write last.pt after the failure: {exc!r}"))

    def _checkpoint(self, reason: str, name: str = LAST) -> bool:
        """Write a checkpoint atomically; False when it could not be written (reported as trouble)."""
        if self.rank != 0:  # rank 0 holds the same weights and writes for everyone
            return True
        if (bad := ckpt.not_finite(self.raw_model, self.optimizer)) is not None:
            self.bus.publish(ev.Notice(level="error", message=f"{bad} is not finite at iteration {self.iter_num}: "
                                       f"{name} not overwritten", topic="checkpoint"))
            return False
        self._set_state(ev.RunState.CHECKPOINTING)
        try:
            path, seconds = self.checkpoints.write(self.checkpoint_state(), name)
        except OSError as exc:
            self._back_to_work()
            self._trouble("disk", f"could not write {self.run_dir.path / name} ({exc.strerror or exc}); the "
                          f"previous checkpoint is untouched: free disk space or fix the folder's permissions",
                          topic="checkpoint")
            return False
        self.checkpoint_seconds += seconds
        if self.planner is not None:
            self.planner.checkpointed(seconds)
        if name == LAST:
            self.last_checkpoint = str(path)
        self.bus.publish(ev.CheckpointWritten(iter=self.iter_num, path=str(path), reason=reason, seconds=seconds))
        self._back_to_work()
        return True
