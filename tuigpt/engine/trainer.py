"""The training loop as a class: commands in at iteration boundaries, events out.

``Trainer(config)`` does all set-up that can fail on bad input (data, resume checkpoint, device) in the
constructor, so a UserError surfaces before any thread or UI starts. ``run()`` trains in whichever thread
calls it and never waits on a front end. The work itself is elsewhere: one optimizer step
(:mod:`.step`), commands at boundaries (:mod:`.gate`), checkpoint policy (:mod:`.checkpointing`),
generation (:mod:`.sampling`). With a :class:`~tuigpt.engine.distributed.Cluster` (torchrun) this
process is one rank: rank 0 publishes the events and writes the checkpoints, every rank trains.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch

from tuigpt.engine import checkpointing as ckpt
from tuigpt.engine.build import build
from tuigpt.engine.checkpoint import capture_rng_state
from tuigpt.engine.distributed import HEARTBEAT_SECONDS, Cluster, ClusterReport, PeerLost, ddp_options
from tuigpt.engine.evaluation import estimate_loss
from tuigpt.engine.gate import CommandGate
from tuigpt.engine.health import SpikeWatch
from tuigpt.engine.sampling import generate_text, settings
from tuigpt.engine.schedule import lr_for
from tuigpt.engine.step import Stepper
from tuigpt.run.commands import CheckpointNow, Command, Pause, Resume, Sample, SetEvalInterval, Stop, TogglePause
from tuigpt.run.config import TrainConfig
from tuigpt.run.events import (CheckpointWritten, EvalIntervalChanged, EvalResult, EventBus,
                               IterationStats, Notice, RunFailed, RunFinished, RunStarted, RunState, SampleGenerated,
                               StateChanged)
from tuigpt.run.numbers import mfu
from tuigpt.run.rundir import BEST, LAST, RunDir


@dataclass
class Outcome:
    """How run() ended: "done", "stopped", "nan" or "disk"."""

    reason: str
    iter: int
    last_checkpoint: str | None


class Trainer:
    """The training loop of one process (or one rank of several)."""

    def __init__(self, config: TrainConfig, *, config_path: str | None = None, resume: bool = False,
                 peak_flops: float | None = None, peak_label: str = "no peak known", bus: EventBus | None = None,
                 pause_on_trouble: bool = False, cluster: Cluster | None = None) -> None:
        self.cluster = cluster
        self.rank = cluster.rank if cluster is not None else 0
        self.world_size = cluster.world_size if cluster is not None else 1
        self.pause_on_trouble = pause_on_trouble  # NaN or a failed write: pause (monitor) or stop (headless)
        self.config_path = config_path
        self.bus = bus or EventBus()
        self.gate = CommandGate(cluster)
        self.peak_flops, self.peak_label = peak_flops, peak_label
        self.run_dir = RunDir.of(config.out_dir, config.run_name)
        self.resumed = resume
        self.checkpoints = ckpt.CheckpointManager(self.run_dir, self.rank)
        built = build(config, self.checkpoints, resume=resume, cluster=cluster)
        self.config, self.data, self.model_args = built.config, built.data, built.model_args
        self.device, self.precision, self.threads = built.setup.device, built.setup.precision, built.setup.threads
        self.compiled, self.compile_reason = built.setup.compiled, built.setup.compile_reason
        self.raw_model, self.optimizer, self.scaler = built.model, built.optimizer, built.scaler
        self.sampler = built.sampler
        self.iter_num, self.train_seconds = built.iter_num, built.train_seconds
        self.best_val_loss, self.last_val_loss = built.best_val_loss, built.last_val_loss
        self.eval_seconds = self.checkpoint_seconds = 0.0
        self.pending_notices = built.notices
        self.micro_steps = self.config.gradient_accumulation_steps // self.world_size  # per rank, per iteration
        self.model: Callable[..., Any] = torch.compile(self.raw_model) if self.compiled else self.raw_model
        self.eval_model = self.model  # evals and samples never go through DDP (no gradients to sync)
        if cluster is not None:  # the DDP constructor broadcasts rank 0's weights: every replica starts equal
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.model, **ddp_options(self.device, self.compiled,
                                                                            self.micro_steps))
        self.stepper = Stepper(self.model, self.raw_model, self.optimizer, self.scaler, self.sampler, self.precision,
                               self.device, self.micro_steps, self.config.grad_clip, cluster)
        self.eval_interval = self.config.eval_interval
        self.tokens_per_iter = self.config.batch_size * self.config.block_size * self.micro_steps * self.world_size
        self.tokens_seen = self.iter_num * self.tokens_per_iter
        self.flops_per_token = self.raw_model.flops_per_token()
        self.last_checkpoint: str | None = str(self.run_dir.last) if resume else None
        self.state = RunState.STARTING
        self._paused = False
        self._stop: Stop | None = None
        self._halt: str | None = None  # set on trouble in headless mode: "nan" or "disk"
        self._spikes = SpikeWatch()
        self._cluster_report = ClusterReport(cluster) if cluster is not None else None
        self._sampler_states: list[dict[str, Any]] = []

    # ------------------------------------------------------------ public

    def send(self, command: Command) -> None:
        """Queue a command for the next iteration boundary (thread-safe, never blocks)."""
        self.gate.send(command)

    def use_peak(self, flops: float | None, label: str) -> None:
        """Set the peak FLOP/s MFU is measured against (call before run())."""
        self.peak_flops, self.peak_label = flops, label

    @property
    def n_params(self) -> int:
        return self.raw_model.num_params(non_embedding=False)

    def run(self) -> Outcome:
        """Train to max_iters (or until stopped); returns how it ended. Errors are published, then re-raised."""
        started = time.time()
        if self.device.type == "cuda" and self.device.index is not None:
            # the current CUDA device is per thread: collectives and implicit allocations of this rank must use
            # its own GPU from the thread that trains, not cuda:0
            torch.cuda.set_device(self.device)
        try:
            outcome = self._run()
        except Exception as exc:
            tb = traceback.format_exc()
            if isinstance(exc, PeerLost) and self.rank == 0:
                self._save_after_failure()
            self._log_traceback(tb)
            self._set_state(RunState.ERROR)
            self.bus.publish(RunFailed(iter=self.iter_num, message=f"{type(exc).__name__}: {exc}", traceback=tb,
                                       last_checkpoint=self.last_checkpoint))
            raise
        self.bus.publish(RunFinished(iter=self.iter_num, reason=outcome.reason, best_val_loss=self.best_val_loss,
                                     last_val_loss=self.last_val_loss, wall_seconds=time.time() - started,
                                     train_seconds=self.train_seconds, eval_seconds=self.eval_seconds,
                                     checkpoint_seconds=self.checkpoint_seconds, last_checkpoint=self.last_checkpoint,
                                     tokens_seen=self.tokens_seen))
        return outcome

    def train_step(self) -> tuple[float, float]:
        """One optimizer step, counted when applied: (loss, milliseconds)."""
        result = self.stepper.step(lr_for(self.config, self.iter_num))
        if result.applied:
            self.iter_num += 1
            self.tokens_seen += self.tokens_per_iter
            self.train_seconds += result.ms / 1000.0
            if result.parts is not None and self._cluster_report is not None:
                self._cluster_report.add(result.ms, result.parts)
        return result.loss, result.ms

    # ------------------------------------------------------------ the loop

    def _run(self) -> Outcome:
        cfg = self.config
        self.bus.publish(RunStarted(
            run_name=cfg.run_name, run_dir=str(self.run_dir), config_path=self.config_path, config=cfg.to_dict(),
            n_params=self.n_params, device=str(self.device), dtype=self.precision.name,
            dtype_reason=self.precision.reason, start_iter=self.iter_num, max_iters=cfg.max_iters,
            tokens_per_iter=self.tokens_per_iter, flops_per_token=self.flops_per_token,
            peak_flops=self.peak_flops, peak_label=self._peak_text(), eval_interval=self.eval_interval,
            resumed=self.resumed, compiled=self.compiled, compile_reason=self.compile_reason))
        if self.cluster is not None:
            self.pending_notices.insert(0, self.cluster.describe(self.micro_steps, cfg.batch_size, cfg.block_size))
        for message in self.pending_notices:
            self.bus.publish(Notice(level="info", message=message))
        self._set_state(RunState.RUNNING)
        if cfg.eval_only:
            self._evaluate()
            return Outcome("done", self.iter_num, self.last_checkpoint)
        if self.iter_num == 0 and not self.resumed:
            self._evaluate()  # the untrained loss: the curve's starting point
        while self.iter_num < cfg.max_iters:
            self._boundary()
            if self._stop is not None:
                return self._finish_stopped()
            if self._halt is not None:
                break
            loss, ms = self.train_step()
            if not math.isfinite(loss):
                self._trouble("nan", f"loss is {loss} at iteration {self.iter_num + 1}: the step was not applied, so "
                              f"the weights and checkpoints stay finite (lower learning_rate, or check the data)")
                continue
            if (spike := self._spikes.check(self.iter_num, loss)) is not None:
                self.bus.publish(Notice(level="warning", message=spike))
            self._publish_iteration(loss, ms)
            if self.cluster is not None and self.iter_num % cfg.log_interval == 0:
                self._gather_cluster_stats()
            if self.iter_num % self.eval_interval == 0 or self.iter_num == cfg.max_iters:
                self._evaluate()
        else:
            # the last boundary, on every rank: a halt from the last eval's checkpoint, a checkpoint or a sample
            # asked for during the last step
            self._boundary()
            if self._stop is not None:
                return self._finish_stopped()
        if self._halt is not None:
            self._set_state(RunState.ERROR)
            return Outcome(self._halt, self.iter_num, self.last_checkpoint)
        self._set_state(RunState.DONE)
        return Outcome("done", self.iter_num, self.last_checkpoint)

    def _boundary(self) -> None:
        """Apply the commands that arrived; while paused, wait here (never inside a step). With several ranks
        rank 0 re-broadcasts at least every HEARTBEAT_SECONDS, so no waiting rank reaches ddp_timeout."""
        while True:
            waiting = self._paused and self._stop is None and self._halt is None
            commands, halt = self.gate.exchange(HEARTBEAT_SECONDS if waiting else 0.0, self._halt)
            for command in commands:
                self._apply(command)
            if halt is not None and self._halt is None:
                self._halt = halt
            if not (self._paused and self._stop is None and self._halt is None):
                return

    def _apply(self, command: Command) -> None:
        if isinstance(command, TogglePause):
            command = Resume() if self._paused else Pause()
        if isinstance(command, Pause) and not self._paused:
            self._paused = True
            self._set_state(RunState.PAUSED)
        elif isinstance(command, Resume) and self._paused:
            self._paused = False
            self._set_state(RunState.RUNNING)
        elif isinstance(command, CheckpointNow):
            self._gather_sampler_states()
            self._checkpoint("command")
        elif isinstance(command, Sample):
            if self.rank == 0:  # the others go on to the next step and wait for rank 0 in its all-reduce
                self._sample(command)
        elif isinstance(command, SetEvalInterval):
            self.eval_interval = max(1, int(command.interval))
            next_eval = (self.iter_num // self.eval_interval + 1) * self.eval_interval
            self.bus.publish(EvalIntervalChanged(eval_interval=self.eval_interval,
                                                 next_eval_iter=min(next_eval, self.config.max_iters)))
        elif isinstance(command, Stop):
            self._stop = command
            self._paused = False

    def _trouble(self, reason: str, message: str) -> None:
        """Something the user must decide on: pause (monitor) or end the run with ``reason`` (headless). Rank 0
        decides for every rank: its pause or halt goes out with the next command exchange."""
        if self.rank != 0:
            return
        if self.pause_on_trouble:
            self.bus.publish(Notice(level="error", message=message + " | paused: p resumes, q quits"))
            self.gate.push_front(Pause())
        else:
            self.bus.publish(Notice(level="error", message=message + " | run stopped"))
            self._halt = reason

    def _finish_stopped(self) -> Outcome:
        if self._stop is not None and self._stop.save:
            self._gather_sampler_states()
            self._checkpoint("stop")
        self._set_state(RunState.STOPPED)
        return Outcome("stopped", self.iter_num, self.last_checkpoint)

    def _set_state(self, state: RunState) -> None:
        self.state = state
        self.bus.publish(StateChanged(state=state, iter=self.iter_num))

    def _back_to_work(self) -> None:
        if self._halt is None:
            self._set_state(RunState.PAUSED if self._paused else RunState.RUNNING)

    def _publish_iteration(self, loss: float, ms: float) -> None:
        tokens_per_sec = self.tokens_per_iter / (ms / 1000.0) if ms > 0 else 0.0
        # tokens_per_iter counts every rank's tokens; MFU is per device: FLOP/s / world_size / one device's peak
        peak = self.peak_flops * self.world_size if self.peak_flops else self.peak_flops
        self.bus.publish(IterationStats(
            iter=self.iter_num, loss=loss, lr=self.optimizer.param_groups[0]["lr"], ms_per_iter=ms,
            tokens_per_sec=tokens_per_sec, mfu=mfu(self.flops_per_token, tokens_per_sec, peak),
            tokens_seen=self.tokens_seen, train_seconds=self.train_seconds))

    def _peak_text(self) -> str:
        if self.world_size == 1 or not self.peak_flops:
            return self.peak_label
        return f"{self.peak_label} (per device; MFU = all ranks' FLOP/s / {self.world_size} / this peak)"

    def _gather_cluster_stats(self) -> None:
        """Every rank's mean timings since the last gather (a collective); rank 0 publishes them."""
        assert self._cluster_report is not None
        stats, warnings = self._cluster_report.gather(self.iter_num)
        if stats is not None:
            self.bus.publish(stats)
        for warning in warnings:
            self.bus.publish(Notice(level="warning", message=warning))

    # ------------------------------------------------------------ eval, sample, checkpoint

    def estimate_loss(self) -> dict[str, float]:
        """Mean loss over eval_iters batches per split (see :func:`.evaluation.estimate_loss`)."""
        return estimate_loss(self.eval_model, self.raw_model, self.sampler, eval_iters=self.config.eval_iters,
                             seed=self.config.seed, iter_num=self.iter_num, rank=self.rank, cluster=self.cluster,
                             autocast=self.stepper.autocast)

    def _evaluate(self) -> None:
        self._set_state(RunState.EVALUATING)
        t0 = time.perf_counter()
        losses = self.estimate_loss()
        seconds = time.perf_counter() - t0
        self.eval_seconds += seconds
        val = losses["val"]
        is_best = math.isfinite(val) and (self.best_val_loss is None or val < self.best_val_loss)
        if is_best:
            self.best_val_loss = val
        self.last_val_loss = val
        self.bus.publish(EvalResult(iter=self.iter_num, train_loss=losses["train"], val_loss=val,
                                    best_val_loss=self.best_val_loss if self.best_val_loss is not None else val,
                                    is_best=is_best, seconds=seconds))
        if not self.config.eval_only and (self.iter_num > 0 or self.resumed):
            if self.checkpoints.wanted_at_eval(self.config, is_best):
                self._gather_sampler_states()
                if self._checkpoint("eval") and is_best:
                    self._checkpoint("best", name=BEST)
        self._back_to_work()

    def _sample(self, command: Sample) -> None:
        """Generate text for a front end; a failure is reported and training goes on."""
        cfg = self.config
        self._set_state(RunState.SAMPLING)
        t0 = time.perf_counter()
        try:
            out = generate_text(self.raw_model, self.data.tokenizer, command.prompt,
                                **settings(command.max_new_tokens, command.temperature, command.top_k, cfg.to_dict()),
                                generator=torch.Generator(device=self.device).manual_seed(cfg.seed + self.iter_num),
                                autocast=self.stepper.autocast())
        except Exception as exc:  # sampling must never end the run
            self.bus.publish(Notice(level="warning", message=f"sampling failed, training goes on: "
                                    f"{type(exc).__name__}: {str(exc)[:200]}"))
        else:
            if out.unknown:
                self.bus.publish(Notice(level="warning", message=f"sample prompt: {len(out.unknown)} character(s) "
                                        f"not in the vocabulary were left out: {out.unknown[:40]!r}"))
            self.bus.publish(SampleGenerated(iter=self.iter_num, prompt=out.prompt, text=out.text,
                                             seconds=time.perf_counter() - t0))
        self._back_to_work()

    def checkpoint_state(self) -> dict[str, Any]:
        return ckpt.make_state(
            model=self.raw_model, optimizer=self.optimizer, scaler=self.scaler, model_args=self.model_args.to_dict(),
            config=self.config, iter_num=self.iter_num, best_val_loss=self.best_val_loss,
            last_val_loss=self.last_val_loss, data=self.data, rng=capture_rng_state(),
            sampler=self.sampler.state_dict(),
            samplers=self._sampler_states if self.cluster is not None else [self.sampler.state_dict()],
            world_size=self.world_size, train_seconds=self.train_seconds)

    def _gather_sampler_states(self) -> None:
        """Before a checkpoint, on every rank: rank 0 collects every rank's sampler state (a collective)."""
        if self.cluster is not None:
            self._sampler_states = self.cluster.gather_objects(self.sampler.state_dict(),
                                                               "gathering batch-sampler states")

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
            self.bus.publish(Notice(level="error", message=f"could not write last.pt after the failure: {exc!r}"))

    def _checkpoint(self, reason: str, name: str = LAST) -> bool:
        """Write a checkpoint atomically; False when it could not be written (reported as trouble)."""
        if self.rank != 0:  # rank 0 holds the same weights and writes for everyone
            return True
        if not ckpt.finite(self.raw_model):
            self.bus.publish(Notice(level="error", message=f"weights are not finite at iteration {self.iter_num}: "
                                    f"{name} not overwritten"))
            return False
        self._set_state(RunState.CHECKPOINTING)
        try:
            path, seconds = self.checkpoints.write(self.checkpoint_state(), name)
        except OSError as exc:
            self._back_to_work()
            self._trouble("disk", f"could not write {self.run_dir.path / name} ({exc.strerror or exc}); the "
                          f"previous checkpoint is untouched: free disk space or fix the folder's permissions")
            return False
        self.checkpoint_seconds += seconds
        if name == LAST:
            self.last_checkpoint = str(path)
        self.bus.publish(CheckpointWritten(iter=self.iter_num, path=str(path), reason=reason, seconds=seconds))
        self._back_to_work()
        return True

    def _log_traceback(self, tb: str) -> None:
        try:
            self.run_dir.path.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir.train_log, "a", encoding="utf-8") as f:
                who = f" on rank {self.rank}" if self.cluster is not None else ""
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} unexpected error{who} at iteration "
                        f"{self.iter_num}\n")
                f.write(tb)
        except OSError:
            pass
