"""The training loop as a class: commands in at iteration boundaries, events out.

``Trainer(config)`` does all set-up that can fail on bad input in the constructor, so a UserError surfaces
before any thread or UI starts; ``run()`` trains in whichever thread calls it and never waits on a front end.
The work itself is elsewhere: :mod:`.step`, :mod:`.gate` (commands), :mod:`.checkpointing`, :mod:`.sampling`,
:mod:`.nan_guard`. With a :class:`~.distributed.Cluster` (torchrun) this process is one rank: rank 0
publishes the events and writes the checkpoints, every rank trains.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch

from tuigpt.engine import checkpointing as ckpt
from tuigpt.engine.build import build
from tuigpt.engine.chores import Chores
from tuigpt.engine.distributed import HEARTBEAT_SECONDS, Cluster, PeerLost
from tuigpt.engine.gate import CommandGate
from tuigpt.engine.health import LossWatch, PlateauWatch, StallWatch
from tuigpt.engine.nan_guard import NanGuard
from tuigpt.engine.rank_timing import ClusterReport
from tuigpt.engine.planner import Planner, make_planner, planned_config
from tuigpt.engine.schedule import cooldown_from, lr_for, lr_planned
from tuigpt.engine.step import Launched, Stepper, StepResult, run_ahead_setting
from tuigpt.run import events as ev
from tuigpt.run import fmt
from tuigpt.run.commands import CheckpointNow, Command, Pause, Resume, Sample, SetEvalInterval, Stop, TogglePause
from tuigpt.run.config import TrainConfig
from tuigpt.run.lock import RunLock
from tuigpt.run.numbers import ClipRate, mfu
from tuigpt.run.rundir import STABLE, RunDir, modes


@dataclass
class Outcome:
    """How run() ended: "done", "stopped", "nan" or "disk"."""

    reason: str
    iter: int
    last_checkpoint: str | None


class Trainer(Chores):
    """The training loop of one process (or one rank of several)."""

    def __init__(self, config: TrainConfig, *, config_path: str | None = None, resume: bool = False,
                 peak_flops: float | None = None, peak_label: str = "no peak known", bus: ev.EventBus | None = None,
                 pause_on_trouble: bool = False, cluster: Cluster | None = None, lock: RunLock | None = None) -> None:
        run_ahead_setting()  # a bad TUIGPT_RUN_AHEAD fails here, before the run directory is touched
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
        try:
            built = build(config, self.checkpoints, resume=resume, cluster=cluster)
        except BaseException:
            self.close(remove_dir=True)  # a start that failed leaves no trace
            raise
        self.config, self.data, self.model_args = built.config, built.data, built.model_args
        self.device, self.precision, self.threads = built.setup.device, built.setup.precision, built.setup.threads
        self.compiled, self.compile_reason = built.setup.compiled, built.setup.compile_reason
        self.raw_model, self.optimizer, self.scaler, self.sampler = built.model, built.optimizer, built.scaler, built.sampler
        self.iter_num, self.train_seconds = built.iter_num, built.train_seconds
        self.best_val_loss, self.last_val_loss = built.best_val_loss, built.last_val_loss
        self.eval_seconds = self.checkpoint_seconds = 0.0
        self.pending_notices: list[str | ev.Notice] = list(built.notices)
        if self.lock is not None and self.lock.warning:
            self.pending_notices.append(self.lock.warning)
        self.split, self.micro_steps = built.split, built.split.micro_steps  # this rank's share of an iteration
        self.model: Callable[..., Any] = torch.compile(self.raw_model) if self.compiled else self.raw_model
        self.eval_model = self.model  # evals and samples never go through DDP (no gradients to sync)
        if cluster is not None:
            self.model = cluster.wrap(self.model, self.compiled, self.micro_steps)
        self.stepper = Stepper(self.model, self.raw_model, self.optimizer, self.scaler, self.sampler, self.precision,
                               self.device, self.micro_steps, self.config.grad_clip, cluster)
        self.eval_interval = self.config.eval_interval
        self.tokens_per_iter = self.split.micro_batch * self.config.block_size * self.micro_steps * self.world_size
        self.tokens_seen = self.iter_num * self.tokens_per_iter
        self.flops_per_token = self.raw_model.flops_per_token()
        self.last_checkpoint: str | None = str(self.run_dir.last) if resume else None
        self.state = ev.RunState.STARTING
        self._paused = False
        self._stop: Stop | None = None
        self._halt: str | None = None  # set on trouble in headless mode: "nan" or "disk"
        self._write_failure: str | None = None  # a sink could not write (see report_write_failure)
        self._loss_watch, self._clip_rate = LossWatch(), ClipRate()
        self.guard = NanGuard(self.config, pause_on_trouble, self.world_size, built.lr_scale, built.nan_rewinds)
        # rank 0 watches for stalls (a hung collective stalls every rank)
        self._stall = StallWatch(self.bus.publish, self.config.stall_factor if self.rank == 0 else 0.0,
                                 self.config.stall_min_seconds)
        self.bus.subscribe(self._stall)
        if self.rank == 0:  # rank 0 judges evals and the clock; what it sends reaches every rank through the gate
            self.bus.subscribe(PlateauWatch(self.bus.publish, self.send, self.config.plateau_evals,
                                            self.config.plateau_stop, self.config.max_iters))
            self.bus.subscribe(ckpt.CheckpointTimer(self.send, self.config.checkpoint_every_minutes))
        self._cluster_report = ClusterReport(cluster) if cluster is not None else None
        self._sampler_states: list[dict[str, Any]] = []
        self._ahead: Launched | None = None  # the next step, queued on the device before the last one was read
        self._boundary_wanted = False  # several ranks: rank 0 asked, with the last step read, for a boundary
        try:  # a run that ends at a time plans its length as it goes (and refuses a time already spent)
            self.config, notes = planned_config(self.config)
            self.pending_notices += notes
            self.planner: Planner | None = make_planner(self.config, built.plan_state, self.iter_num,
                                                        self.micro_steps, self.n_params, self.bus.publish, cluster)
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
        """Release the run directory's lock if this trainer took it (idempotent)."""
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
        started = time.time()
        if self.device.type == "cuda" and self.device.index is not None:
            # the current CUDA device is per thread: collectives and implicit allocations of this rank must use
            # its own GPU from the thread that trains, not cuda:0
            torch.cuda.set_device(self.device)
        try:
            self._stall.start()
            outcome = self._run()
        except Exception as exc:
            tb = traceback.format_exc()
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
        self.bus.publish(ev.RunFinished(iter=self.iter_num, reason=outcome.reason, best_val_loss=self.best_val_loss,
                                     last_val_loss=self.last_val_loss, wall_seconds=time.time() - started,
                                     train_seconds=self.train_seconds, eval_seconds=self.eval_seconds,
                                     checkpoint_seconds=self.checkpoint_seconds, last_checkpoint=self.last_checkpoint,
                                     tokens_seen=self.tokens_seen))
        self.close()
        return outcome

    def train_step(self, run_ahead: bool = True) -> tuple[float, float]:
        """One optimizer step, counted when applied: (loss, milliseconds); the whole result: ``stepper.last``.

        On a GPU the step after it is queued before this one is read (``run_ahead``, where the boundary between
        them has nothing to do), so the GPU computes while the host publishes; a command that arrives meanwhile
        waits for the boundary after that step (one step later)."""
        upcoming = self.iter_num + 1  # per-group norms on the iterations metrics.jsonl keeps
        launched, self._ahead = self._ahead, None
        if launched is None:
            launched = self._launch(upcoming)
        if run_ahead and self._may_run_ahead(upcoming):
            self._ahead = self._launch(upcoming + 1, after=launched)
        result = self.stepper.read(launched)
        self._boundary_wanted = self._boundary_wanted or result.wants_boundary
        if self._ahead is not None and not result.applied:
            self.stepper.cancel(self._ahead)  # skipped on the device behind the bad step; its batches go back
            self._ahead = None
        if result.applied:
            self.iter_num += 1
            self.tokens_seen += self.tokens_per_iter
            self.train_seconds += result.ms / 1000.0
            if result.parts is not None and self._cluster_report is not None:
                self._cluster_report.add(result.ms, result.parts)
        return result.loss, result.ms

    def _launch(self, iteration: int, after: Launched | None = None) -> Launched:
        """Queue the step that becomes ``iteration`` (``after``: behind a step not read yet)."""
        self.guard.skip_batches(iteration, self.sampler, self.micro_steps)
        wants = self.rank == 0 and self.cluster is not None and (self.gate.waiting() or self._write_failure is not None)
        return self.stepper.launch(self._lr(iteration - 1) * self.guard.lr_scale,
                                   detail=iteration % self.config.log_interval == 0, after=after, wants_boundary=wants)

    def _may_run_ahead(self, upcoming: int) -> bool:
        """Whether the step after ``upcoming`` may be queued before ``upcoming`` is read: the boundary between them
        must have nothing to do (no eval, no end, nothing queued, no trouble, not paused). Every rank of several
        must decide alike: what waits on rank 0 reaches them with a step (``wants_boundary``), so they hold a
        boundary after the step they are reading."""
        if self.cluster is not None:
            quiet = not self._boundary_wanted
        else:
            quiet = not self.gate.waiting() and self._write_failure is None
        return (self.stepper.can_run_ahead and quiet and upcoming < self.max_iters
                and upcoming % self.eval_interval != 0 and self._halt is None and self._stop is None
                and not self._paused)

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
        self.bus.publish(ev.RunStarted(
            run_name=cfg.run_name, run_dir=str(self.run_dir), config_path=self.config_path, config=cfg.to_dict(),
            n_params=self.n_params, device=str(self.device), dtype=self.precision.name,
            dtype_reason=self.precision.reason, start_iter=self.iter_num, max_iters=cfg.max_iters or 0,
            tokens_per_iter=self.tokens_per_iter, flops_per_token=self.flops_per_token,
            peak_flops=self.peak_flops, peak_label=fmt.peak_label(self.peak_label, self.peak_flops, self.world_size),
            eval_interval=self.eval_interval, resumed=self.resumed, compiled=self.compiled,
            compile_reason=self.compile_reason, cooldown_from=None if self.planner else cooldown_from(cfg),
            end_kind=self.planner.end.kind if self.planner else "", end_text=self.planner.end.text if self.planner
            else "", deadline=self.planner.deadline_wall() if self.planner else None))
        if self.cluster is not None:
            self.pending_notices.insert(0, self.cluster.describe(self.split, cfg))
        for notice in self.pending_notices:
            self.bus.publish(notice if isinstance(notice, ev.Notice) else ev.Notice(level="info", message=notice))
        self._set_state(ev.RunState.RUNNING)
        if cfg.eval_only:
            self._evaluate()
            return Outcome("done", self.iter_num, self.last_checkpoint)
        if self.iter_num == 0 and not self.resumed:
            self._evaluate()  # the untrained loss: the curve's starting point
        while self.iter_num < self.max_iters:
            self._boundary()
            if self._stop is not None:
                return self._finish_stopped()
            if self._halt is not None:
                break
            loss, ms = self.train_step()
            if not self.stepper.last.applied:
                self._not_finite(self.stepper.last)
                continue
            for event in self._loss_watch.check(self.iter_num, loss):
                self.bus.publish(event)
            self._publish_iteration(loss, ms)
            if self.planner is not None and self.planner.stepped(self.iter_num):
                self._gather_sampler_states()  # the cooldown begins: stable.pt keeps the model before it
                self._checkpoint("cooldown", name=STABLE)
            if self._cluster_report is not None and self.iter_num % cfg.log_interval == 0:
                for event in self._cluster_report.gather_events(self.iter_num):  # a collective: every rank
                    self.bus.publish(event)
            if self.iter_num % self.eval_interval == 0 or self.iter_num == self.max_iters:
                self._evaluate()
        else:
            if self.planner is not None and self.planner.last_eval_iter != self.iter_num and self._halt is None:
                self._evaluate()  # the plan ended the run between evals (a pause ate its time): the final eval
            # the last boundary, on every rank: a halt from the last eval's checkpoint, a checkpoint or a sample
            # asked for during the last step
            self._boundary()
            if self._stop is not None:
                return self._finish_stopped()
        if self._halt is not None:
            self._set_state(ev.RunState.ERROR)
            return Outcome(self._halt, self.iter_num, self.last_checkpoint)
        self._set_state(ev.RunState.DONE)
        return Outcome("done", self.iter_num, self.last_checkpoint)

    def _boundary(self) -> None:
        """Apply the commands that arrived; while paused, wait here (never inside a step). With several ranks
        rank 0 re-broadcasts at least every HEARTBEAT_SECONDS, so no waiting rank reaches ddp_timeout. While a
        step is queued ahead nothing is taken: it was queued because nothing waited; what came since waits one step."""
        if self._ahead is not None:
            return
        self._boundary_wanted = False
        if self._write_failure is not None:
            message, self._write_failure = self._write_failure, None
            self._trouble("disk", message)
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
            self.eval_interval = max(1, int(command.interval))
            if self.planner is not None:
                self.planner.set_eval_interval(self.eval_interval, self.iter_num)
            next_eval = (self.iter_num // self.eval_interval + 1) * self.eval_interval
            self.bus.publish(ev.EvalIntervalChanged(eval_interval=self.eval_interval,
                                                 next_eval_iter=min(next_eval, self.max_iters)))
        elif isinstance(command, Stop):
            self._stop = command
            self._paused = False

    def _not_finite(self, result: StepResult) -> None:
        """A NaN/Inf loss or gradient (the step was not applied; every rank saw it): the forensics, then on_nan."""
        report = self.guard.report(self.iter_num + 1, result.lr, result)
        self.bus.publish(report)
        if report.action != "rewind":
            self._trouble("nan", self.guard.message(report), pause=report.action == "pause")
            return
        self.bus.publish(ev.Notice(level="error", message=self.guard.message(report)))
        rewound = self.guard.rewind(report.iter, self.run_dir.last, self.raw_model, self.optimizer, self.scaler,
                                    self.sampler, self.config, self.iter_num)
        self.iter_num, self.tokens_seen = rewound.iter, rewound.iter * self.tokens_per_iter
        self.bus.publish(rewound)

    def _trouble(self, reason: str, message: str, topic: str = "", pause: bool | None = None) -> None:
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
        if self._stop is not None and self._stop.save:
            self._gather_sampler_states()
            self._checkpoint("stop")
        self._set_state(ev.RunState.STOPPED)
        return Outcome("stopped", self.iter_num, self.last_checkpoint)

    def _set_state(self, state: ev.RunState) -> None:
        self.state = state
        if self.planner is not None and state != ev.RunState.RUNNING:
            self.planner.busy()  # an eval, a checkpoint, a sample or a pause: not a step's time
        self.bus.publish(ev.StateChanged(state=state, iter=self.iter_num))

    def _back_to_work(self) -> None:
        if self._halt is None:
            self._set_state(ev.RunState.PAUSED if self._paused else ev.RunState.RUNNING)

    def _publish_iteration(self, loss: float, ms: float) -> None:
        tokens_per_sec = self.tokens_per_iter / (ms / 1000.0) if ms > 0 else 0.0
        # tokens_per_iter counts every rank's tokens; MFU is per device: FLOP/s / world_size / one device's peak
        peak = self.peak_flops * self.world_size if self.peak_flops else self.peak_flops
        step = self.stepper.last
        stats = ev.IterationStats(
            iter=self.iter_num, loss=loss, lr=step.lr, ms_per_iter=ms,
            tokens_per_sec=tokens_per_sec, mfu=mfu(self.flops_per_token, tokens_per_sec, peak),
            tokens_seen=self.tokens_seen, train_seconds=self.train_seconds, grad_norm=step.grad_norm,
            clipped=step.clipped, clip_rate=None if step.clipped is None else self._clip_rate.add(step.clipped),
            update_ratio=step.update_ratio, layers=step.layers)
        self.guard.good(stats)
        self.bus.publish(stats)
