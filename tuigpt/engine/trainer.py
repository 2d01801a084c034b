"""The training loop as a class: commands in at iteration boundaries, events out.

``Trainer(config)`` does all set-up that can fail on bad input in the constructor, so a UserError surfaces
before any thread or UI starts; ``run()`` trains in whichever thread calls it and never waits on a front end.
The loop itself is short (``_run``): a boundary (commands), a step, its events, and what is due after it. The
components decide their own timing (the eval schedule ``evals.should_eval(step)``, the checkpoints
``checkpoints.should_save(step, is_best)``) and do their own work elsewhere: :mod:`.step`, :mod:`.gate` (commands),
:mod:`.evaluation`, :mod:`.checkpointing`, :mod:`.sampling`, :mod:`.nan_guard`. With a
:class:`~.distributed.Cluster` (torchrun) this process is one rank: rank 0 publishes the events and writes the
checkpoints, every rank trains.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from tuigpt.engine import checkpointing as ckpt
from tuigpt.engine.build import build
from tuigpt.engine.checkpoint import capture_rng_state
from tuigpt.engine.checkpoint_writer import CheckpointWriter, state_bytes
from tuigpt.engine.distributed import HEARTBEAT_SECONDS, Cluster, PeerLost
from tuigpt.engine.evaluation import EvalSchedule, estimate_loss, eval_batches
from tuigpt.engine.gate import CommandGate
from tuigpt.engine.health import LossWatch, PlateauWatch, StallWatch
from tuigpt.engine.memory import available_bytes
from tuigpt.engine.nan_guard import NanGuard
from tuigpt.engine.planner import Planner, make_planner, planned_config
from tuigpt.engine.rank_timing import ClusterReport
from tuigpt.engine.sampling import sample_events
from tuigpt.engine.schedule import cooldown_from, lr_for, lr_planned
from tuigpt.engine.step import Stepper, StepResult
from tuigpt.run import events as ev
from tuigpt.run import fmt
from tuigpt.run.commands import CheckpointNow, Command, Pause, Resume, Sample, SetEvalInterval, Stop, TogglePause
from tuigpt.run.config import TrainConfig
from tuigpt.run.lock import RunLock
from tuigpt.run.numbers import ClipRate, mfu
from tuigpt.run.rundir import BEST, LAST, STABLE, RunDir, modes


@dataclass
class Outcome:
    """How run() ended."""

    reason: ev.EndReason
    iter: int
    last_checkpoint: str | None


class Trainer:
    """The training loop of one process (or one rank of several)."""

    def __init__(self, config: TrainConfig, *, config_path: str | None = None, resume: bool = False,
                 peak_flops: float | None = None, peak_label: str = "no peak known", bus: ev.EventBus | None = None,
                 pause_on_trouble: bool = False, cluster: Cluster | None = None, lock: RunLock | None = None) -> None:
        self.cluster = cluster
        self.rank = cluster.rank if cluster is not None else 0
        self.world_size = cluster.world_size if cluster is not None else 1
        self.pause_on_trouble = pause_on_trouble  # NaN or a failed write: pause (monitor) or stop (headless)
        self.config_path = config_path
        self.bus = bus or ev.EventBus()
        self.gate = CommandGate(cluster)
        self.peak_flops, self.peak_label = peak_flops, peak_label
        self.run_dir = RunDir.of(config.out_dir, config.run_name)
        self.resumed = resume
        dir_mode, self.file_mode = modes(config.share_with_group)
        # one writer per run directory, locked before anything in it is touched (rank 0 writes for every rank)
        self._own_lock = lock is None and self.rank == 0  # a lock handed in is the caller's; ours ends with run()
        self.lock = RunLock.acquire(self.run_dir.path, dir_mode) if self._own_lock else lock
        self.checkpoints = ckpt.CheckpointManager(self.run_dir, self.rank, self.file_mode)
        self.checkpoint_writer = CheckpointWriter(background=False)
        try:
            built = build(config, self.checkpoints, resume=resume, cluster=cluster)
        except BaseException:
            self.close(remove_dir=True)  # a start that failed leaves no trace
            raise
        self.config, self.data, self.model_args = built.config, built.data, built.model_args
        self.device, self.precision, self.threads = built.setup.device, built.setup.precision, built.setup.threads
        # an eval's checkpoint is written while the next steps run where the steps wait for a GPU (a CPU's steps
        # use the cores the write would need): engine/checkpoint_writer.py
        self.checkpoint_writer.background = self.device.type == "cuda"
        self._said_foreground = False  # the notice that a state too big for host memory is written in the foreground
        self.compiled, self.compile_reason = built.setup.compiled, built.setup.compile_reason
        self.raw_model, self.optimizer, self.scaler, self.sampler = built.model, built.optimizer, built.scaler, built.sampler
        self.iter_num, self.train_seconds = built.iter_num, built.train_seconds
        self.best_val_loss, self.last_val_loss = built.best_val_loss, built.last_val_loss
        # the run's times over its sessions, continued from the checkpoint (None: one that did not keep its wall time)
        self.eval_seconds, self.checkpoint_seconds = built.eval_seconds, built.checkpoint_seconds
        self.elapsed_before = built.run_seconds if self.resumed else 0.0
        self.session_started = time.time()  # RunStarted's time: where this session's part of the run's time starts
        self.pending_notices: list[str | ev.Notice] = list(built.notices)
        if self.lock is not None and self.lock.warning:
            self.pending_notices.append(self.lock.warning)
        self.split, self.micro_steps = built.split, built.split.micro_steps  # this rank's share of an iteration
        self.model: Callable[..., Any] = torch.compile(self.raw_model) if self.compiled else self.raw_model
        self.eval_model = self.model  # evals and samples never go through DDP (no gradients to sync)
        self.eval_batches = eval_batches(self.raw_model, self.sampler, self.config.eval_iters)  # both splits'
        if cluster is not None:
            self.model = cluster.wrap(self.model, self.compiled, self.micro_steps)
        self.stepper = Stepper(self.model, self.raw_model, self.optimizer, self.scaler, self.sampler, self.precision,
                               self.device, self.micro_steps, self.config.grad_clip, cluster,
                               graphs=self.config.cuda_graphs, compiled=self.compiled)
        self.evals = EvalSchedule(self.config.eval_interval, lambda: self.max_iters)
        self.checkpoints.always = self.config.always_save_checkpoint
        self.checkpoints.at_evals = not self.config.eval_only
        self.tokens_per_iter = self.split.micro_batch * self.config.block_size * self.micro_steps * self.world_size
        self.tokens_seen = self.iter_num * self.tokens_per_iter
        self.flops_per_token = self.raw_model.flops_per_token()
        self.last_checkpoint: str | None = str(self.run_dir.last) if resume else None
        self.state = ev.RunState.STARTING
        self._paused = False
        self._stop: Stop | None = None
        self._halt: ev.EndReason | None = None  # set on trouble in headless mode: NAN or DISK
        self._write_failure: str | None = None  # a sink could not write (see report_write_failure)
        self._loss_watch, self._clip_rate = LossWatch(), ClipRate()
        self.nan_guard = NanGuard(self.config, pause_on_trouble, self.world_size, built.lr_scale, built.nan_rewinds)
        # the untrained model's eval writes a checkpoint too when on_nan: rewind may need to go back to it
        self.checkpoints.at_start = resume or self.nan_guard.mode == "rewind"
        # rank 0 watches for stalls (a hung collective stalls every rank)
        self._stall = StallWatch(self.bus.publish, self.config.stall_factor if self.rank == 0 else 0.0,
                                 self.config.stall_min_seconds)
        self.bus.subscribe(self._stall)
        if self.rank == 0:  # rank 0 judges evals and the clock; what it sends reaches every rank through the gate
            self.bus.subscribe(PlateauWatch(self.bus.publish, self.send, self.config.plateau_evals,
                                            self.config.plateau_stop, lambda: self.max_iters))
            self.bus.subscribe(ckpt.CheckpointTimer(self.send, self.config.checkpoint_every_minutes))
        self._cluster_report = ClusterReport(cluster) if cluster is not None else None
        self._sampler_states: list[dict[str, Any]] = []  # every rank's, gathered by rank 0 before a checkpoint
        try:  # a run that ends at a time plans its length as it goes (and refuses a time already spent)
            self.config, notes = planned_config(self.config)
            self.pending_notices += notes
            self.planner: Planner | None = make_planner(self.config, built.plan_state, self.iter_num,
                                                        self.micro_steps, self.n_params, self.bus.publish, cluster,
                                                        self.eval_batches)
        except BaseException:
            self.close(remove_dir=True)
            raise

    # ------------------------------------------------------------ public

    def send(self, command: Command) -> str | None:
        """Queue a command for the next iteration boundary (thread-safe, never blocks); why it was refused, if."""
        return self.gate.send(command)

    def report_write_failure(self, message: str) -> None:
        """From any thread: a sink could not write (metrics.jsonl, disk full): trouble at the next boundary."""
        self._write_failure = message

    def close(self, remove_dir: bool = False) -> None:
        """Release the run directory's lock if this trainer took it (idempotent), after a checkpoint write in flight
        has ended (a run that failed with one in flight: its file is whole or untouched, never half-written)."""
        try:
            self.checkpoint_writer.collect(wait=True)
        except Exception:  # noqa: BLE001 (the run's own failure is what gets reported)
            pass
        if self._own_lock and self.lock is not None:
            self.lock.release(remove_dir=remove_dir)

    def use_peak(self, flops: float | None, label: str, warning: str | None = None) -> None:
        """Set the peak FLOP/s MFU is measured against (before run()); a ``warning`` is published at the start."""
        self.peak_flops, self.peak_label = flops, label
        if warning:  # e.g. the peak was measured on a busy machine
            self.pending_notices.insert(0, ev.Notice(level="warning", message=warning))

    @property
    def n_params(self) -> int:
        return self.raw_model.num_params(non_embedding=False)

    def run(self) -> Outcome:
        """Train to max_iters (or until stopped); returns how it ended. Errors are published, then re-raised."""
        if self.device.type == "cuda" and self.device.index is not None:
            # the current CUDA device is per thread: collectives and implicit allocations of this rank must use
            # its own GPU from the thread that trains, not cuda:0
            torch.cuda.set_device(self.device)
        try:
            self._stall.start()
            outcome = self._run()
        except Exception as exc:
            tb = traceback.format_exc()
            try:  # a background write that ended: the failure names the newest checkpoint on disk
                self._settle_checkpoint(wait=True)
            except Exception:  # noqa: BLE001 (the run's own failure is what gets reported)
                pass
            if isinstance(exc, PeerLost) and self.rank == 0:
                self._save_after_failure()
            self.run_dir.log_traceback(tb, f" on rank {self.rank}" if self.cluster is not None else "", self.iter_num,
                                       self.file_mode)
            self._set_state(ev.RunState.ERROR)
            self.bus.publish(ev.RunFailed(iter=self.iter_num, message=f"{type(exc).__name__}: {exc}", traceback=tb,
                                       last_checkpoint=self.last_checkpoint))
            self.close()
            raise
        finally:
            self._stall.stop()
        session = time.time() - self.session_started
        self.bus.publish(ev.RunFinished(iter=self.iter_num, reason=outcome.reason, best_val_loss=self.best_val_loss,
                                     last_val_loss=self.last_val_loss, wall_seconds=(self.elapsed_before or 0.0) + session,
                                     session_seconds=session,
                                     train_seconds=self.train_seconds, eval_seconds=self.eval_seconds,
                                     checkpoint_seconds=self.checkpoint_seconds, last_checkpoint=self.last_checkpoint,
                                     tokens_seen=self.tokens_seen))
        self.close()
        return outcome

    def train_step(self) -> StepResult:
        """One optimizer step, counted when applied (a NaN/Inf one is not: see _not_finite)."""
        upcoming = self.iter_num + 1
        self.nan_guard.skip_batches(upcoming, self.sampler, self.micro_steps)
        result = self.stepper.step(self._lr(upcoming - 1) * self.nan_guard.lr_scale,
                                   detail=upcoming % self.config.log_interval == 0)  # the iterations metrics.jsonl keeps
        if self.stepper.graph_note is not None:  # what capturing or timing the step's CUDA graph found
            self.bus.publish(ev.Notice(level="info", message=self.stepper.graph_note))
            self.stepper.graph_note = None
        if result.applied:
            self.iter_num += 1
            self.tokens_seen += self.tokens_per_iter
            self.train_seconds += result.ms / 1000.0
            if result.parts is not None and self._cluster_report is not None:
                self._cluster_report.add(result.ms, result.parts)
        return result

    @property
    def max_iters(self) -> int:
        """Where training stops: the plan's last iteration in a run that ends at a time, else max_iters."""
        return self.planner.total_iters if self.planner is not None else int(self.config.max_iters or 0)

    def _lr(self, it: int) -> float:
        if self.planner is not None:
            return lr_planned(self.config, it, self.planner.cooldown)
        return lr_for(self.config, it)

    # ------------------------------------------------------------ the loop

    def _run(self) -> Outcome:
        cfg = self.config
        started = ev.RunStarted(
            run_name=cfg.run_name, run_dir=str(self.run_dir), config_path=self.config_path, config=cfg.to_dict(),
            n_params=self.n_params, device=str(self.device), dtype=self.precision.name,
            dtype_reason=self.precision.reason, start_iter=self.iter_num, max_iters=cfg.max_iters or 0,
            tokens_per_iter=self.tokens_per_iter, flops_per_token=self.flops_per_token,
            peak_flops=self.peak_flops, peak_label=fmt.peak_label(self.peak_label, self.peak_flops, self.world_size),
            eval_interval=self.evals.interval, resumed=self.resumed, compiled=self.compiled,
            compile_reason=self.compile_reason, cooldown_from=None if self.planner else cooldown_from(cfg),
            tokenizer=self.data.tokenizer.name, bytes_per_token=self.data.bytes_per_token(),
            end_kind=self.planner.end.kind if self.planner else "", end_text=self.planner.end.text if self.planner
            else "", deadline=self.planner.deadline_wall() if self.planner else None,
            elapsed_before=self.elapsed_before, eval_batches=self.eval_batches)
        self.session_started = started.time
        self.bus.publish(started)
        if self.cluster is not None:
            self.pending_notices.insert(0, self.cluster.describe(self.split, cfg))
        for notice in self.pending_notices:  # stamped as published: the events log reads in time order
            self.bus.publish(dataclasses.replace(notice, time=time.time()) if isinstance(notice, ev.Notice)
                             else ev.Notice(level="info", message=notice))
        self._set_state(ev.RunState.RUNNING)
        if cfg.eval_only:
            self._evaluate()
            return Outcome(ev.EndReason.DONE, self.iter_num, self.last_checkpoint)
        if self.iter_num == 0 and not self.resumed:
            self._evaluate()  # the untrained loss: the curve's starting point
        last_lr: float | None = None  # the last applied step's
        while self.iter_num < self.max_iters:
            self._boundary()
            if self._stop is not None:
                return self._finish_stopped()
            if self._halt is not None:
                break
            step = self.train_step()
            if not step.applied:
                self._not_finite(step)
                continue
            for event in self._loss_watch.check(self.iter_num, step.loss):
                self.bus.publish(event)
            self._publish_iteration(step)
            last_lr = step.lr
            if self.planner is not None and self.planner.stepped(self.iter_num):
                self._gather_sampler_states()  # the cooldown begins: stable.pt keeps the model before it
                self._checkpoint("cooldown", name=STABLE)
            if self._cluster_report is not None and self.iter_num % cfg.log_interval == 0:
                for event in self._cluster_report.gather_events(self.iter_num):  # a collective: every rank
                    self.bus.publish(event)
            if self.evals.should_eval(self.iter_num):
                self._evaluate()
        else:
            if self.planner is not None and last_lr is not None:
                self._say_if_cut_short(last_lr)
            if self.planner is not None and self.planner.last_eval_iter != self.iter_num and self._halt is None:
                self._evaluate()  # the plan ended the run between evals (a pause ate its time): the final eval
            self._settle_checkpoint(wait=True)  # the last eval's, written meanwhile: on disk before the run ends
            # the last boundary, on every rank: a halt from the last eval's checkpoint, a checkpoint or a sample
            # asked for during the last step
            self._boundary()
            if self._stop is not None:
                return self._finish_stopped()
        self._settle_checkpoint(wait=True)
        if self._halt is not None:
            self._set_state(ev.RunState.ERROR)
            return Outcome(self._halt, self.iter_num, self.last_checkpoint)
        self._set_state(ev.RunState.DONE)
        return Outcome(ev.EndReason.DONE, self.iter_num, self.last_checkpoint)

    def _say_if_cut_short(self, lr: float) -> None:
        """A plan whose time ran out before its learning rate came down (the steps slowed more than the plan could
        follow: 130 to 2,250 ms a step under a second job) says so: "done, on time" must not hide a model that
        never cooled down."""
        floor, peak = self.config.effective_min_lr, self.config.learning_rate
        if self.rank != 0 or not self.config.decay_lr or lr <= floor + 0.1 * (peak - floor):  # (no decay: no cooldown)
            return
        again = (" stable.pt holds the model from before the cooldown: --resume --time T cools it down again"
                 if self.planner is not None and self.planner.stable_iter is not None else "")
        self.bus.publish(ev.Notice(level="warning", topic="plan", message=(
            f"the cooldown was cut short: the last step ran at lr {lr:.2e}, not min_lr {floor:.2e} (the steps "
            f"slowed near the end more than the plan could follow).{again}")))

    def _boundary(self) -> None:
        """Apply the commands that arrived; while paused, wait here (never inside a step). With several ranks
        rank 0 re-broadcasts at least every HEARTBEAT_SECONDS, so no waiting rank reaches ddp_timeout."""
        if self._write_failure is not None:
            message, self._write_failure = self._write_failure, None
            self._trouble(ev.EndReason.DISK, message)
        while True:
            self._settle_checkpoint(wait=False)  # a background write that ended meanwhile (also while paused)
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
            self._set_state(ev.RunState.PAUSED)
            if self.planner is not None:
                self.planner.paused()
        elif isinstance(command, Resume) and self._paused:
            self._paused = False
            self._set_state(ev.RunState.RUNNING)
            if self.planner is not None:
                self.planner.resumed(self.iter_num)
        elif isinstance(command, CheckpointNow):
            self._gather_sampler_states()
            self._checkpoint(command.reason)
        elif isinstance(command, Sample):
            if self.rank == 0:  # the others go on to the next step and wait for rank 0 in its all-reduce
                self._sample(command)
        elif isinstance(command, SetEvalInterval):
            next_eval = self.evals.change(command.interval, self.iter_num)
            if self.planner is not None:
                self.planner.set_eval_interval(self.evals.interval, self.iter_num)
            self.bus.publish(ev.EvalIntervalChanged(eval_interval=self.evals.interval, next_eval_iter=next_eval))
        elif isinstance(command, Stop):
            self._stop = command
            self._paused = False

    def _not_finite(self, result: StepResult) -> None:
        """A NaN/Inf loss or gradient (the step was not applied; every rank saw it): the forensics, then on_nan."""
        report = self.nan_guard.report(self.iter_num + 1, result.lr, result)
        self.bus.publish(report)
        if report.action != "rewind":
            self._trouble(ev.EndReason.NAN, self.nan_guard.message(report), pause=report.action == "pause")
            return
        self.bus.publish(ev.Notice(level="error", message=self.nan_guard.message(report)))
        self._settle_checkpoint(wait=True)  # the rewind reads last.pt
        rewound = self.nan_guard.rewind(report.iter, self.run_dir.last, self.raw_model, self.optimizer, self.scaler,
                                    self.sampler, self.config, self.iter_num)
        self.iter_num, self.tokens_seen = rewound.iter, rewound.iter * self.tokens_per_iter
        self.bus.publish(rewound)

    def _trouble(self, reason: ev.EndReason, message: str, topic: str = "", pause: bool | None = None) -> None:
        """Something the user must decide on: pause (monitor) or end the run with ``reason`` (headless). Rank 0
        decides for every rank: its pause or halt goes out with the next command exchange."""
        if self.rank != 0:
            return
        if self.pause_on_trouble if pause is None else pause:
            self.bus.publish(ev.Notice(level="error", message=message + " | paused: p resumes, q quits", topic=topic))
            self.gate.push_front(Pause())
        else:
            self.bus.publish(ev.Notice(level="error", message=message + " | run stopped", topic=topic))
            self._halt = reason

    def _finish_stopped(self) -> Outcome:
        self._settle_checkpoint(wait=True)
        if self._stop is not None and self._stop.save:
            self._gather_sampler_states()
            if not self._checkpoint("stop") and self._halt is not None:
                # the stop's checkpoint could not be written (a full disk): the run ends as that (exit 4, said in
                # one line), not as if it had been saved; the previous last.pt is untouched
                self._set_state(ev.RunState.ERROR)
                return Outcome(self._halt, self.iter_num, self.last_checkpoint)
        self._set_state(ev.RunState.STOPPED)
        return Outcome(ev.EndReason.STOPPED, self.iter_num, self.last_checkpoint)

    def _set_state(self, state: ev.RunState) -> None:
        self.state = state
        if self.planner is not None and state != ev.RunState.RUNNING:
            self.planner.busy()  # an eval, a checkpoint, a sample or a pause: not a step's time
        self.bus.publish(ev.StateChanged(state=state, iter=self.iter_num))

    def _back_to_work(self) -> None:
        if self._halt is None:
            self._set_state(ev.RunState.PAUSED if self._paused else ev.RunState.RUNNING)

    def _publish_iteration(self, step: StepResult) -> None:
        ms = step.ms
        tokens_per_sec = self.tokens_per_iter / (ms / 1000.0) if ms > 0 else 0.0
        # tokens_per_iter counts every rank's tokens; MFU is per device: FLOP/s / world_size / one device's peak
        peak = self.peak_flops * self.world_size if self.peak_flops else self.peak_flops
        stats = ev.IterationStats(
            iter=self.iter_num, loss=step.loss, lr=step.lr, ms_per_iter=ms,
            tokens_per_sec=tokens_per_sec, mfu=mfu(self.flops_per_token, tokens_per_sec, peak),
            tokens_seen=self.tokens_seen, train_seconds=self.train_seconds, grad_norm=step.grad_norm,
            clipped=step.clipped, clip_rate=None if step.clipped is None else self._clip_rate.add(step.clipped),
            update_ratio=step.update_ratio, layers=step.layers)
        self.nan_guard.good(stats)
        self.bus.publish(stats)

    # ------------------------------------------------------------ at an eval, on command, at the end

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
                                    is_best=is_best, seconds=seconds, train_bpb=losses["train_bpb"],
                                    val_bpb=losses["val_bpb"]))
        final = self.planner is not None and self.planner.ends_at(self.iter_num)  # a plan's last model
        if self.checkpoints.should_save(self.iter_num, is_best) or (final and not self.config.eval_only):
            self._gather_sampler_states()
            if self.checkpoint_writer.background and not final and self._host_copy_fits():
                self._checkpoint_in_background(is_best)  # (a plan's last write is timed in its end: foreground)
            elif self._checkpoint("eval") and is_best:
                self._checkpoint("best", name=BEST, same_as=LAST)
        if self.config.sample_every_eval and self.rank == 0 and not self.config.eval_only:
            self._sample(Sample(), timeline=True)  # the same prompt and seed each time: only the model changes
        if self.planner is not None:  # what the eval cost, with its checkpoints and sample: the plan's eval cost
            batches, planned = int(losses["batches"] or 0), int(losses["planned"] or 0)
            self.planner.evaluated(self.iter_num, time.perf_counter() - t0, batches)
            if batches < planned and self.rank == 0:
                self.bus.publish(ev.Notice(level="warning", topic="plan", message=(
                    f"the eval at iteration {self.iter_num:,} was cut to {batches} of its {planned} batches to "
                    f"end on time")))
            if not final and self.iter_num >= self.planner.total_iters and not self.config.eval_only:
                # what this eval wrote (or its sample) took the time that was left: the run ends here after all,
                # and last.pt must hold this model with its plan marked finished (a resume plans anew from it)
                self._gather_sampler_states()
                self._checkpoint("eval")
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
            times={"run_seconds": (self.elapsed_before or 0.0) + time.time() - self.session_started,
                   "eval_seconds": self.eval_seconds, "checkpoint_seconds": self.checkpoint_seconds},
            plan=self.planner.state_dict(self.iter_num) if self.planner is not None else None,
            health={"lr_scale": self.nan_guard.lr_scale, "nan_rewinds": self.nan_guard.rewinds})

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

    def _checkpoint(self, reason: str, name: str = LAST, same_as: str | None = None) -> bool:
        """Write a checkpoint atomically; False when it could not be written (reported as trouble). ``same_as``: the
        checkpoint just written holds this model (last.pt, written at the eval that made it best.pt), so ``name``
        becomes a hard link to it where the file system allows: the baby GPT's best.pt took 0.27 s a write on an
        H100 host, GPT-2 124M's 1.5 GB several seconds, for bytes already on disk."""
        if not self._may_checkpoint(name):
            return self.rank != 0
        self._set_state(ev.RunState.CHECKPOINTING)
        try:
            linked = self.checkpoints.link(same_as, name) if same_as is not None else None
            path, seconds = linked or self.checkpoints.write(self.checkpoint_state(), name)
        except OSError as exc:
            self._back_to_work()
            self._disk_trouble(name, exc)
            return False
        self._written(self.iter_num, path, reason, seconds, None)
        self._back_to_work()
        return True

    def _may_checkpoint(self, name: str) -> bool:
        """Whether this process writes ``name`` now: rank 0 (it holds the same weights and writes for everyone),
        once the write in flight has ended (files are written in order), and only a finite state."""
        if self.rank != 0:
            return False
        self._settle_checkpoint(wait=True)
        if (bad := ckpt.not_finite(self.raw_model, self.optimizer)) is not None:
            self.bus.publish(ev.Notice(level="error", message=f"{bad} is not finite at iteration {self.iter_num}: "
                                       f"{name} not overwritten", topic="checkpoint"))
            return False
        return True

    def _host_copy_fits(self) -> bool:
        """Whether the state's host copy fits beside what else the host holds; when not, the eval's checkpoint is
        written in the foreground (said once: a model that big on a machine with that little memory)."""
        why = self.checkpoint_writer.takes(state_bytes(self.raw_model, self.optimizer),
                                           available_bytes(torch.device("cpu")))
        if why is not None and not self._said_foreground:
            self._said_foreground = True
            self.bus.publish(ev.Notice(level="info", topic="checkpoint", message=(
                f"checkpoints are written in the foreground, training waiting for them: {why}")))
        return why is None

    def _checkpoint_in_background(self, is_best: bool) -> None:
        """An eval's last.pt (and best.pt, the same file, when val improved) copied to host memory now and written
        while the next steps run; reported when it is on disk (:meth:`_settle_checkpoint`)."""
        if not self._may_checkpoint(LAST):
            return
        self._set_state(ev.RunState.CHECKPOINTING)
        writes = [("eval", lambda state: self.checkpoints.write(state, LAST))]
        if is_best:
            writes.append(("best", lambda state: self.checkpoints.link(LAST, BEST)
                           or self.checkpoints.write(state, BEST)))
        self.checkpoint_writer.submit(self.iter_num, self.checkpoint_state(), writes)
        self._back_to_work()

    def _settle_checkpoint(self, wait: bool) -> None:
        """Report the background write once it has ended (``wait``: wait for it): its files, or the disk's refusal
        (trouble, as a foreground write's)."""
        result = self.checkpoint_writer.collect(wait)
        if result is None:
            return
        held: float | None = result.held_seconds  # the training thread's share: the first file's
        for written in result.written:
            self._written(result.iter, written.path, written.reason, written.seconds, held)
            held = 0.0
        if result.error is not None:
            self._disk_trouble(BEST if result.written else LAST, result.error)

    def _written(self, iter_num: int, path: Path, reason: str, seconds: float, held: float | None) -> None:
        """A checkpoint file is on disk: counted (the run's time: what it held training up, ``held``; None: all of
        it), the plan told what a write costs, and published."""
        self.checkpoint_seconds += seconds if held is None else held
        if self.planner is not None:
            self.planner.checkpointed(seconds)  # a plan's last write is in the foreground: it costs the whole
        if path.name == LAST:
            self.last_checkpoint = str(path)
        self.bus.publish(ev.CheckpointWritten(iter=iter_num, path=str(path), reason=reason, seconds=seconds,
                                              waited=held))

    def _disk_trouble(self, name: str, exc: OSError) -> None:
        self._trouble(ev.EndReason.DISK, f"could not write {self.run_dir.path / name} ({exc.strerror or exc}); the "
                      f"previous checkpoint is untouched: free disk space or fix the folder's permissions",
                      topic="checkpoint")
