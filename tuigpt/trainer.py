"""The training loop as a class: commands in at iteration boundaries, events out.

``Trainer(config)`` does all set-up that can fail on bad input (data, resume
checkpoint, device) in the constructor, so a UserError surfaces before any
thread or UI starts. ``run()`` trains in whichever thread calls it; it never
waits on a front end.
"""

from __future__ import annotations

import collections
import contextlib
import math
import queue
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from tuigpt.checkpoint import FORMAT_VERSION, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from tuigpt.config import TrainConfig, config_from_dict
from tuigpt.data import BatchSampler, TokenData, load_dataset
from tuigpt.device import Precision, default_threads, resolve_compile, resolve_device, resolve_precision
from tuigpt.distributed import (HEARTBEAT_SECONDS, MAX_COMMANDS, Cluster, PeerLost, StepTimer, StragglerWatch,
                                TimingWindow, cluster_summary, decode_commands, encode_commands, first_line,
                                is_broadcast, local_threads, rank_seed, reseed, split_step)
from tuigpt.errors import UserError
from tuigpt.events import (CheckpointNow, CheckpointWritten, ClusterStats, Command, EvalIntervalChanged, EvalResult,
                           EventBus, HistoryLoaded, IterationStats, Notice, Pause, Resume, RunFailed,
                           RunFinished, RunStarted, RunState, Sample, SampleGenerated, SetEvalInterval, StateChanged,
                           Stop, TogglePause)
from tuigpt.memory import check_fits
from tuigpt.metrics import lr_at, mfu
from tuigpt.metrics_log import METRICS_FILE, cut_after, load_history
from tuigpt.model import GPT, ModelArgs

SPIKE_FACTOR = 3.0  # a loss this many times the recent median is reported as a spike

# Keys whose change makes a checkpoint unusable (shape of the model, meaning of the tokens).
INCOMPATIBLE_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "dataset", "tokenizer")
# Keys a resume may change; the change is applied and reported.
RESUMABLE_KEYS = ("max_iters", "eval_interval", "log_interval", "eval_iters", "warmup_iters", "lr_decay_iters",
                  "min_lr", "learning_rate", "decay_lr", "batch_size", "gradient_accumulation_steps", "grad_clip",
                  "dropout", "weight_decay", "always_save_checkpoint", "sample_max_new_tokens",
                  "sample_temperature", "sample_top_k", "num_threads", "compile", "telemetry_interval",
                  "device", "dtype", "data_path", "out_dir", "eval_only", "ddp_backend", "ddp_timeout")


@dataclass
class Outcome:
    """How run() ended: "done", "stopped", "nan" or "failed"."""

    reason: str
    iter: int
    last_checkpoint: str | None


class Trainer:
    """The training loop. With a :class:`~tuigpt.distributed.Cluster` (torchrun), this process is one rank of a
    data-parallel run: rank 0 publishes the events and writes the checkpoints, every rank trains."""

    def __init__(self, config: TrainConfig, *, config_path: str | None = None, resume: bool = False,
                 peak_flops: float | None = None, peak_label: str = "no peak known",
                 bus: EventBus | None = None, pause_on_trouble: bool = False,
                 cluster: Cluster | None = None) -> None:
        self.config = config
        self.cluster = cluster
        self.rank = cluster.rank if cluster is not None else 0
        self.world_size = cluster.world_size if cluster is not None else 1
        if config.gradient_accumulation_steps % self.world_size:
            raise UserError(f"gradient_accumulation_steps={config.gradient_accumulation_steps} is not divisible by "
                            f"the {self.world_size} ranks: each rank runs gradient_accumulation_steps / ranks "
                            f"micro-steps; use a multiple of {self.world_size}")
        self.micro_steps = config.gradient_accumulation_steps // self.world_size  # per rank, per iteration
        # NaN loss or a failed checkpoint write: pause for the user to decide (monitor), or stop (headless)
        self.pause_on_trouble = pause_on_trouble
        self.config_path = config_path
        self.bus = bus or EventBus()
        self.commands: queue.Queue[Command] = queue.Queue()
        self.peak_flops = peak_flops
        self.peak_label = peak_label
        self.run_dir = Path(config.out_dir) / config.run_name
        self.resumed = resume
        self.pending_notices: list[str] = []

        self._remove_stale_temp_files()
        checkpoint = self._load_resume_checkpoint() if resume else None
        if not resume and (self.run_dir / "last.pt").exists():
            raise UserError(f"{self.run_dir} already holds a run (last.pt): continue it with --resume, start a new "
                            f"one with --run_name=NEW_NAME, or delete that folder")

        self.device = cluster.device if cluster is not None else resolve_device(config.device)
        self.precision: Precision = resolve_precision(config.dtype, self.device, n_embd=config.n_embd,
                                                      tokens_per_micro_batch=config.batch_size * config.block_size)
        self.compiled, self.compile_reason = resolve_compile(config.compile, self.device)
        if self.device.type == "cpu":
            threads = config.num_threads or default_threads()
            if cluster is not None and not config.num_threads:  # this host's cores, shared among its ranks
                threads = local_threads(default_threads(), cluster.local_world_size)
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()

        torch.manual_seed(config.seed)
        self.data: TokenData = load_dataset(config.dataset, config.data_path, config.tokenizer)
        self.data.check_block_size(config.block_size)
        if checkpoint is not None and checkpoint["tokenizer"] != self.data.tokenizer.to_meta():
            raise UserError(f"cannot resume {self.run_dir}: the data's tokenizer vocabulary differs from the "
                            f"checkpoint's (different text or tokenizer); resume with the original data")
        vocab = self.data.tokenizer.vocab_size
        if vocab > 1024:  # pad large vocabularies to a multiple of 64 for faster matmuls (nanoGPT's 50304)
            vocab = (vocab + 63) // 64 * 64
        self.model_args = ModelArgs(vocab_size=vocab, block_size=config.block_size, n_layer=config.n_layer,
                                    n_head=config.n_head, n_embd=config.n_embd, dropout=config.dropout,
                                    bias=config.bias)
        check_fits(self.model_args, config.batch_size, self.precision.autocast, self.device)
        self.raw_model = GPT(self.model_args).to(self.device)
        self.optimizer = torch.optim.AdamW(self.raw_model.param_groups(config.weight_decay), lr=config.learning_rate,
                                           betas=(config.beta1, config.beta2),
                                           fused=True if self.device.type == "cuda" else None)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.name == "float16")
        self.sampler = BatchSampler(self.data, config.block_size, config.batch_size, self.device,
                                    seed=rank_seed(config.seed, self.rank))
        if self.rank:  # the same initial weights everywhere, but each rank its own dropout masks
            torch.manual_seed(config.seed + 1_000_003 * self.rank)

        self.iter_num = 0
        self.best_val_loss: float | None = None
        self.last_val_loss: float | None = None
        self.history: list[dict[str, Any]] = []
        if checkpoint is not None:
            self._restore(checkpoint)
        self.model: Callable[..., Any] = self.raw_model
        if self.compiled:
            self.model = torch.compile(self.raw_model)
        self.eval_model = self.model  # evals and samples never go through DDP (no gradients to sync)
        if cluster is not None:
            from torch.nn.parallel import DistributedDataParallel

            # the constructor broadcasts rank 0's weights, so every replica starts equal
            self.model = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type ==
                                                 "cuda" else None)
        self.eval_interval = config.eval_interval
        self.tokens_per_iter = config.batch_size * config.block_size * config.gradient_accumulation_steps
        self.flops_per_token = self.raw_model.flops_per_token()
        self.last_checkpoint: str | None = str(self.run_dir / "last.pt") if checkpoint is not None else None
        self.state = RunState.STARTING
        self._paused = False
        self._stop: Stop | None = None
        self._halt: str | None = None  # set by _trouble in headless mode: "nan" or "disk"
        self._recent_losses: collections.deque[float] = collections.deque(maxlen=50)
        self.train_seconds = self.eval_seconds = self.checkpoint_seconds = 0.0
        self.tokens_seen = self.iter_num * self.tokens_per_iter
        # several ranks: commands not yet broadcast, timings between gathers, sampler states for checkpoints
        self._backlog: collections.deque[Command] = collections.deque()
        self._timer = StepTimer(self.device)
        self._timings = TimingWindow()
        self._stragglers = StragglerWatch()
        self._sampler_states: list[dict[str, Any]] = []
        self._step_start_sampler: dict[str, Any] | None = None

    # ------------------------------------------------------------ public

    def send(self, command: Command) -> None:
        """Queue a command for the next iteration boundary (thread-safe, never blocks)."""
        self.commands.put(command)

    def use_peak(self, flops: float | None, label: str) -> None:
        """Set the peak FLOP/s MFU is measured against (call before run())."""
        self.peak_flops = flops
        self.peak_label = label

    @property
    def n_params(self) -> int:
        return self.raw_model.num_params(non_embedding=False)

    def run(self) -> Outcome:
        """Train to max_iters (or until stopped); returns how it ended. Errors are published, then re-raised."""
        started = time.time()
        if self.device.type == "cuda" and self.device.index is not None:
            # the current CUDA device is per thread: collectives on CPU objects (all_gather_object) and any
            # implicit allocation must use this rank's GPU from the thread that trains, not cuda:0
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
        if outcome.reason in ("done", "stopped"):
            self.bus.publish(RunFinished(iter=self.iter_num, reason=outcome.reason, best_val_loss=self.best_val_loss,
                                         last_val_loss=self.last_val_loss, wall_seconds=time.time() - started,
                                         train_seconds=self.train_seconds, eval_seconds=self.eval_seconds,
                                         checkpoint_seconds=self.checkpoint_seconds,
                                         last_checkpoint=self.last_checkpoint, tokens_seen=self.tokens_seen))
        return outcome

    # ------------------------------------------------------------ the loop

    def _run(self) -> Outcome:
        cfg = self.config
        self.bus.publish(RunStarted(
            run_name=cfg.run_name, run_dir=str(self.run_dir), config_path=self.config_path, config=cfg.to_dict(),
            n_params=self.n_params, device=str(self.device), dtype=self.precision.name,
            dtype_reason=self.precision.reason, start_iter=self.iter_num, max_iters=cfg.max_iters,
            tokens_per_iter=self.tokens_per_iter, flops_per_token=self.flops_per_token,
            peak_flops=self.peak_flops, peak_label=self._peak_text(), eval_interval=self.eval_interval,
            resumed=self.resumed))
        if self.cluster is not None:
            c = self.cluster
            hosts = sorted(set(c.hosts))
            self.pending_notices.insert(0, f"data parallel: {c.world_size} ranks on {len(hosts)} host(s) "
                                        f"({', '.join(hosts)}), {c.backend}; each rank runs {self.micro_steps} "
                                        f"micro-step(s) of {cfg.batch_size} x {cfg.block_size} tokens per iteration; "
                                        f"tokens/s count every rank, MFU is per device")
        if self.history:
            self.bus.publish(HistoryLoaded(records=self.history))
            self.history = []  # the front ends have it; don't hold it for the whole run
        for message in self.pending_notices:
            self.bus.publish(Notice(level="info", message=message))
        self._set_state(RunState.RUNNING)

        if cfg.eval_only:
            self._evaluate()
            return Outcome("done", self.iter_num, self.last_checkpoint)
        if self.iter_num == 0 and not self.resumed:
            self._evaluate()  # the untrained loss: the curve's starting point
        while self.iter_num < cfg.max_iters:
            self._handle_commands()
            if self._stop is not None:
                return self._finish_stopped()
            if self._halt is not None:
                break
            loss, ms = self.train_step()
            if not math.isfinite(loss):
                self._trouble("nan", f"loss is {loss} at iteration {self.iter_num + 1}: the step was not applied, so "
                              f"the weights and checkpoints stay finite (lower learning_rate, or check the data)")
                continue
            self._watch_for_spikes(loss)
            self._publish_iteration(loss, ms)
            if self.cluster is not None and self.iter_num % cfg.log_interval == 0:
                self._gather_cluster_stats()
            if self.iter_num % self.eval_interval == 0 or self.iter_num == cfg.max_iters:
                self._evaluate()
        else:
            if self.cluster is not None:
                # the last boundary, on every rank: it carries a halt from the last eval's checkpoint too
                self._handle_commands()
                if self._stop is not None:
                    return self._finish_stopped()
        if self._halt is not None:
            self._set_state(RunState.ERROR)
            return Outcome(self._halt, self.iter_num, self.last_checkpoint)
        if self.cluster is None:
            self._handle_commands()  # a checkpoint or sample asked for during the last step
        self._set_state(RunState.DONE)
        return Outcome("done", self.iter_num, self.last_checkpoint)

    def _trouble(self, reason: str, message: str) -> None:
        """Something the user must decide on: pause (monitor) or end the run with ``reason`` (headless)."""
        if self.cluster is not None:
            # rank 0 decides for every rank: its pause or halt goes out with the next command broadcast
            if self.rank == 0:
                if self.pause_on_trouble:
                    self.bus.publish(Notice(level="error", message=message + " | paused: p resumes, q quits"))
                    self._backlog.appendleft(Pause())
                else:
                    self.bus.publish(Notice(level="error", message=message + " | run stopped"))
                    self._halt = reason
            return
        if self.pause_on_trouble:
            self.bus.publish(Notice(level="error", message=message + " | paused: p resumes, q quits"))
            self._apply(Pause())
        else:
            self.bus.publish(Notice(level="error", message=message + " | run stopped"))
            self._halt = reason

    def _watch_for_spikes(self, loss: float) -> None:
        """Warn when a loss is over SPIKE_FACTOR x the median of the recent ones."""
        recent = self._recent_losses
        if len(recent) >= 20:
            median = sorted(recent)[len(recent) // 2]
            if loss > SPIKE_FACTOR * median:
                self.bus.publish(Notice(level="warning", message=f"loss spike at iteration {self.iter_num}: "
                                        f"{loss:.4f} is {loss / median:.1f}x the recent median {median:.4f}"))
        recent.append(loss)

    def train_step(self) -> tuple[float, float]:
        """One optimizer step over gradient_accumulation_steps micro-batches: (loss, milliseconds)."""
        if self.cluster is not None:
            return self._ddp_step()
        cfg = self.config
        lr = self._lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._sync()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device)
        for _ in range(cfg.gradient_accumulation_steps):
            x, y = self.sampler.get_batch("train")
            with self._autocast():
                _, loss = self.model(x, y)
                loss = loss / cfg.gradient_accumulation_steps
            self.scaler.scale(loss).backward()
            loss_sum += loss.detach()
        loss_value, ms, stepped = self._optimizer_step(loss_sum, t0)
        if stepped:
            self._count_step(ms)
        return loss_value, ms

    def _optimizer_step(self, loss_sum: torch.Tensor, t0: float) -> tuple[float, float, bool]:
        """Clip and step, unless the loss is not finite: then the gradients are dropped and the weights stay
        as they were. (loss, milliseconds since t0, whether the step was applied)."""
        if self.config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.config.grad_clip)
        loss_value = loss_sum.item()  # synchronises the device, and lets a NaN loss skip the update
        if not math.isfinite(loss_value):  # with several ranks the loss is their mean: the same decision
            self.optimizer.zero_grad(set_to_none=True)
            return loss_value, (time.perf_counter() - t0) * 1000.0, False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self._sync()
        return loss_value, (time.perf_counter() - t0) * 1000.0, True

    def _count_step(self, ms: float) -> None:
        self.iter_num += 1
        self.tokens_seen += self.tokens_per_iter
        self.train_seconds += ms / 1000.0

    def _ddp_step(self) -> tuple[float, float]:
        """train_step on one rank of several: gas / world micro-steps here, the gradient all-reduce (DDP) only
        on the last, the loss averaged over ranks so every rank takes the same NaN decision."""
        lr = self._lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        assert self.cluster is not None
        self._sync()
        self._step_start_sampler = self.sampler.state_dict()  # what a failure checkpoint saves for this rank
        timer = self._timer
        timer.start()
        t0 = time.perf_counter()
        timer.mark()
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(self.micro_steps):
            x, y = self.sampler.get_batch("train")
            timer.mark()
            last = micro == self.micro_steps - 1
            with contextlib.nullcontext() if last else self.model.no_sync():  # type: ignore[attr-defined]
                with self._autocast():
                    _, loss = self.model(x, y)
                    loss = loss / self.micro_steps
                timer.mark()
                try:
                    self.scaler.scale(loss).backward()
                except RuntimeError as exc:
                    if not last:
                        raise
                    raise PeerLost(f"rank {self.rank} lost the group in the gradient all-reduce "
                                   f"({first_line(exc)})") from exc
            timer.mark()
            loss_sum += loss.detach()
        loss_sum = self.cluster.mean_tensor(loss_sum, "averaging the loss")
        loss_value, ms, stepped = self._optimizer_step(loss_sum, t0)
        if stepped:
            self._timings.add(ms, split_step(timer.intervals(), self.micro_steps))
            self._step_start_sampler = None
            self._count_step(ms)
        return loss_value, ms

    def _gather_cluster_stats(self) -> None:
        """Every rank's mean timings since the last gather, in one all_gather; rank 0 publishes them."""
        assert self.cluster is not None
        ranks = self.cluster.gather_timings(self._timings.means())
        self._timings.reset()
        if self.rank != 0:
            return
        ratio, comm_over_compute = cluster_summary(ranks)
        straggler, warnings = self._stragglers.check(ranks)
        self.bus.publish(ClusterStats(iter=self.iter_num, ranks=ranks, slowest_over_fastest=round(ratio, 4),
                                      comm_over_compute=None if comm_over_compute is None else
                                      round(comm_over_compute, 4), straggler=straggler,
                                      backend=self.cluster.backend))
        for warning in warnings:
            self.bus.publish(Notice(level="warning", message=warning))

    def _peak_text(self) -> str:
        if self.world_size == 1 or not self.peak_flops:
            return self.peak_label
        return f"{self.peak_label} (per device; MFU = all ranks' FLOP/s / {self.world_size} / this peak)"

    def _publish_iteration(self, loss: float, ms: float) -> None:
        tokens_per_sec = self.tokens_per_iter / (ms / 1000.0) if ms > 0 else 0.0
        # tokens_per_iter counts every rank's tokens; MFU is per device: FLOP/s / world_size / one device's peak
        peak = self.peak_flops * self.world_size if self.peak_flops else self.peak_flops
        self.bus.publish(IterationStats(
            iter=self.iter_num, loss=loss, lr=self.optimizer.param_groups[0]["lr"], ms_per_iter=ms,
            tokens_per_sec=tokens_per_sec, mfu=mfu(self.flops_per_token, tokens_per_sec, peak),
            tokens_seen=self.tokens_seen, train_seconds=self.train_seconds))

    def _lr(self) -> float:
        cfg = self.config
        return lr_at(self.iter_num, learning_rate=cfg.learning_rate, min_lr=cfg.effective_min_lr,
                     warmup_iters=cfg.warmup_iters, lr_decay_iters=cfg.effective_lr_decay_iters,
                     decay_lr=cfg.decay_lr)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.precision.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.precision.torch_dtype)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------ commands

    def _handle_commands(self) -> None:
        """Apply queued commands; while paused, wait here (never inside a step)."""
        if self.cluster is not None:
            self._exchange_commands()
            return
        while True:
            try:
                command = self.commands.get(timeout=0.1) if self._paused and self._stop is None else \
                    self.commands.get_nowait()
            except queue.Empty:
                if self._paused and self._stop is None:
                    continue
                return
            self._apply(command)

    def _exchange_commands(self) -> None:
        """The iteration boundary of a multi-rank run: rank 0 broadcasts its queued commands (and a halt), every
        rank applies them in the same order. While paused this repeats at least every HEARTBEAT_SECONDS, so
        the other ranks, waiting in the broadcast, never reach ddp_timeout."""
        assert self.cluster is not None
        size = 1 + 2 * MAX_COMMANDS
        while True:
            waiting = self._paused and self._stop is None and self._halt is None
            local: list[Command] = []
            words = None
            if self.rank == 0:
                local = self._take_commands(wait=HEARTBEAT_SECONDS if waiting else 0.0)
                words = encode_commands([c for c in local if is_broadcast(c)], self._halt)
            commands, halt = decode_commands(self.cluster.broadcast_words(words, size))
            for command in local if self.rank == 0 else commands:
                self._apply(command)
            if halt is not None and self._halt is None:
                self._halt = halt
            if not (self._paused and self._stop is None and self._halt is None):
                return

    def _take_commands(self, wait: float) -> list[Command]:
        """Up to MAX_COMMANDS - 1 broadcast commands (room for a halt) from the backlog and the queue, waiting
        up to ``wait`` seconds for the first; samples ride along (rank 0 runs them alone)."""
        taken: list[Command] = []
        shared = 0
        deadline = time.monotonic() + wait
        while shared < MAX_COMMANDS - 1:
            if self._backlog:
                command = self._backlog.popleft()
            else:
                left = deadline - time.monotonic()
                try:
                    command = self.commands.get(timeout=left) if left > 0 and not taken else self.commands.get_nowait()
                except queue.Empty:
                    break
            taken.append(command)
            shared += is_broadcast(command)
        return taken

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
        if self._halt is not None:
            return
        self._set_state(RunState.PAUSED if self._paused else RunState.RUNNING)

    # ------------------------------------------------------------ eval, sample, checkpoint

    @torch.no_grad()
    def estimate_loss(self) -> dict[str, float]:
        """Mean loss over eval_iters batches per split, from batches fixed by seed and iteration."""
        self.raw_model.eval()
        out = {}
        try:
            for split in ("train", "val"):
                # each rank its own batches (rank 0 the same as a 1-process run); the means are averaged below
                g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.iter_num * 2 + (split == "val")
                                                  + (self.rank << 40))
                losses = torch.zeros(self.config.eval_iters)
                for k in range(self.config.eval_iters):
                    x, y = self.sampler.get_batch(split, generator=g)
                    with self._autocast():
                        _, loss = self.eval_model(x, y)
                    losses[k] = loss.item()
                out[split] = losses.mean().item()
        finally:
            self.raw_model.train()
        if self.cluster is not None:
            out["train"], out["val"] = self.cluster.mean([out["train"], out["val"]], "averaging eval losses")
        return out

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
            if self.config.always_save_checkpoint or is_best:
                self._gather_sampler_states()
            saved = self._checkpoint("eval") if self.config.always_save_checkpoint or is_best else True
            if is_best and saved:
                self._checkpoint("best", name="best.pt")
        self._back_to_work()

    def _sample(self, command: Sample) -> None:
        cfg = self.config
        self._set_state(RunState.SAMPLING)
        t0 = time.perf_counter()
        tokenizer = self.data.tokenizer
        ids = tokenizer.encode(command.prompt) or [0]
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        g = torch.Generator(device=self.device).manual_seed(cfg.seed + self.iter_num)
        self.raw_model.eval()
        try:
            with self._autocast():
                out = self.raw_model.generate(idx, command.max_new_tokens or cfg.sample_max_new_tokens,
                                              temperature=command.temperature or cfg.sample_temperature,
                                              top_k=command.top_k if command.top_k is not None else cfg.sample_top_k,
                                              generator=g)
        finally:
            self.raw_model.train()
        new_ids = [i for i in out[0, len(ids):].tolist() if i < tokenizer.vocab_size]
        self.bus.publish(SampleGenerated(iter=self.iter_num, prompt=command.prompt, text=tokenizer.decode(new_ids),
                                         seconds=time.perf_counter() - t0))
        self._back_to_work()

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "model_args": self.model_args.to_dict(),
            "config": self.config.to_dict(),
            "iter_num": self.iter_num,
            "best_val_loss": self.best_val_loss,
            "last_val_loss": self.last_val_loss,
            "tokenizer": self.data.tokenizer.to_meta(),
            "dataset": self.data.dataset,
            "rng": capture_rng_state(),
            "sampler": self.sampler.state_dict(),
            # one state per rank (rank 0's is "sampler" too); a resume on another world size reseeds the rest
            "samplers": self._sampler_states if self.cluster is not None else [self.sampler.state_dict()],
            "world_size": self.world_size,
            "train_seconds": self.train_seconds,
        }

    def _gather_sampler_states(self) -> None:
        """Before a checkpoint, on every rank: rank 0 collects every rank's sampler state (a collective)."""
        if self.cluster is not None:
            self._sampler_states = self.cluster.gather_objects(self.sampler.state_dict(),
                                                               "gathering batch-sampler states")

    def _save_after_failure(self) -> None:
        """Rank 0 after losing the group: its replica is the model at iter_num (no step was half applied), so
        it writes last.pt without any collective; the other ranks' sampler states are unknown."""
        if self.iter_num == 0 and not self.resumed:
            return
        self._sampler_states = [self._step_start_sampler or self.sampler.state_dict()]
        self._stop = Stop(save=True)  # a trouble pause must not wait for a command now
        try:
            self._checkpoint("failure")
        except Exception as exc:  # the failure itself is what gets reported
            self.bus.publish(Notice(level="error", message=f"could not write last.pt after the failure: {exc!r}"))

    def _checkpoint(self, reason: str, name: str = "last.pt") -> bool:
        """Write a checkpoint atomically; False when it could not be written (reported as trouble)."""
        if self.rank != 0:  # rank 0 holds the same weights and writes for everyone
            return True
        path = self.run_dir / name
        if not all(torch.isfinite(p).all() for p in self.raw_model.parameters()):
            self.bus.publish(Notice(level="error", message=f"weights are not finite at iteration {self.iter_num}: "
                                    f"{path.name} not overwritten"))
            return False
        self._set_state(RunState.CHECKPOINTING)
        t0 = time.perf_counter()
        try:
            save_checkpoint(self.checkpoint_state(), path)
        except OSError as exc:
            self._back_to_work()
            self._trouble("disk", f"could not write {path} ({exc.strerror or exc}); the previous checkpoint is "
                          f"untouched: free disk space or fix the folder's permissions")
            return False
        seconds = time.perf_counter() - t0
        self.checkpoint_seconds += seconds
        if name == "last.pt":
            self.last_checkpoint = str(path)
        self.bus.publish(CheckpointWritten(iter=self.iter_num, path=str(path), reason=reason, seconds=seconds))
        self._back_to_work()
        return True

    # ------------------------------------------------------------ resume

    def _load_resume_checkpoint(self) -> dict[str, Any]:
        path = self.run_dir / "last.pt"
        if not path.exists():
            raise UserError(f"nothing to resume: {path} does not exist (train without --resume first, or check "
                            f"run_name/out_dir)")
        checkpoint = load_checkpoint(path)
        saved = config_from_dict(checkpoint["config"], str(path))
        for key in INCOMPATIBLE_KEYS:
            old, new = getattr(saved, key), getattr(self.config, key)
            if old != new:
                raise UserError(f"cannot resume {self.run_dir}: {key} was {old!r} in the checkpoint but is {new!r} "
                                f"now; use {key}={old!r} or start a new run with --run_name=NEW_NAME")
        for key in RESUMABLE_KEYS:
            old, new = getattr(saved, key), getattr(self.config, key)
            if old != new:
                note = " (changes the tokens per iteration)" if key in ("batch_size", "gradient_accumulation_steps") else ""
                self.pending_notices.append(f"resume: {key} changed from {old!r} to {new!r}{note}")
        if checkpoint["iter_num"] >= self.config.max_iters and not self.config.eval_only:
            raise UserError(f"the run in {self.run_dir} already reached iteration {checkpoint['iter_num']}: "
                            f"raise max_iters (e.g. --max_iters={checkpoint['iter_num'] * 2}) to train further")
        return checkpoint

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        saved_args = ModelArgs(**checkpoint["model_args"])
        if saved_args.vocab_size != self.model_args.vocab_size:
            raise UserError(f"cannot resume {self.run_dir}: vocabulary size {saved_args.vocab_size} in the "
                            f"checkpoint, {self.model_args.vocab_size} now; resume with the original data")
        try:
            self.raw_model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            if "scaler" in checkpoint:
                self.scaler.load_state_dict(checkpoint["scaler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise UserError(f"checkpoint {self.run_dir / 'last.pt'} does not fit this model "
                            f"({str(exc).splitlines()[0][:120]})") from None
        # keep the resumed run's hyper-parameters (learning rate, betas) from the config, not the checkpoint
        for group in self.optimizer.param_groups:
            group["betas"] = (self.config.beta1, self.config.beta2)
            group["weight_decay"] = self.config.weight_decay if group["weight_decay"] else 0.0
        self.iter_num = int(checkpoint["iter_num"])
        self.best_val_loss = checkpoint.get("best_val_loss")
        self.last_val_loss = checkpoint.get("last_val_loss")
        self.train_seconds = float(checkpoint.get("train_seconds", 0.0))
        if "rng" in checkpoint and self.rank == 0:
            restore_rng_state(checkpoint["rng"])
        elif self.rank:  # the other ranks' RNGs were not saved: a fresh, per-rank dropout stream
            torch.manual_seed(reseed(self.config.seed, self.rank, self.iter_num))
        if "sampler" in checkpoint and self.config.batch_size == checkpoint["config"]["batch_size"]:
            self._restore_sampler(checkpoint)
        cut_after(self.run_dir / METRICS_FILE, self.iter_num)
        self.history = load_history(self.run_dir / METRICS_FILE)

    def _restore_sampler(self, checkpoint: dict[str, Any]) -> None:
        """This rank's saved sampler state, or a deterministic fresh seed when the checkpoint came from fewer ranks."""
        states = checkpoint.get("samplers") or [checkpoint["sampler"]]
        saved_world = int(checkpoint.get("world_size", 1))
        if self.rank < len(states):
            self.sampler.load_state_dict(states[self.rank])
        else:
            self.sampler = BatchSampler(self.data, self.config.block_size, self.config.batch_size, self.device,
                                        seed=reseed(self.config.seed, self.rank, self.iter_num))
        if saved_world != self.world_size or len(states) < self.world_size:
            fresh = list(range(len(states), self.world_size))
            note = (f"; rank(s) {', '.join(map(str, fresh))} had no saved batch-sampler state and start from "
                    f"seeds derived from seed and iteration {self.iter_num}" if fresh else "")
            self.pending_notices.append(f"resume: the checkpoint was written by {saved_world} rank(s) with "
                                        f"{len(states)} saved batch stream(s), this run has {self.world_size}"
                                        f"{note}")

    def _remove_stale_temp_files(self) -> None:
        """Temp files of a checkpoint write that a kill interrupted (the real files are intact)."""
        for stale in self.run_dir.glob(".*.pt.*.tmp"):
            stale.unlink(missing_ok=True)

    def _log_traceback(self, tb: str) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir / "train.log", "a", encoding="utf-8") as f:
                who = f" on rank {self.rank}" if self.cluster is not None else ""
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} unexpected error{who} at iteration "
                        f"{self.iter_num}\n")
                f.write(tb)
        except OSError:
            pass

