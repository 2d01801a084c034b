"""One optimizer step, for one process or one rank of several.

A step runs ``micro_steps`` forward/backward passes on micro-batches (gradient accumulation), then clips
and applies the update. With several ranks the model is wrapped in DistributedDataParallel: the gradient
all-reduce runs on the last micro-step only (``no_sync`` on the others), the loss is averaged over ranks
so every rank takes the same NaN decision, and marks inside the step time data, compute and exposed
communication for the Cluster pane. A non-finite loss or gradient skips the update: the weights stay as they
were, and the step's per-group gradient norms and batch positions are kept for the NaN forensics.

Health numbers cost little: the gradient norm is the one clipping computes anyway (every step, summed from
per-group norms, read in the same device sync as the loss); weight norms and the update-to-weight ratio
‖Δw‖/‖w‖ (one copy of the weights) only when ``detail`` is asked for, on logged iterations.

A step is launched (:meth:`Stepper.launch`: its work queued on the device, the numbers to read copied to
the host behind it) and read (:meth:`Stepper.read`: wait for it, take the numbers). On a GPU the trainer
queues the next step before it reads this one (``after``), so the GPU never idles while the host publishes a
step: the next step is skipped on the device when this one turns out not finite, and :meth:`Stepper.cancel`
then puts its batches back, so a bad step ends exactly where it would have without the step behind it.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from tuigpt.engine.data import BatchSampler
from tuigpt.engine.device import Precision
from tuigpt.engine.distributed import Cluster, PeerLost, first_line
from tuigpt.engine.health import HealthProbe
from tuigpt.engine.rank_timing import StepTimer, split_step
from tuigpt.run.errors import UserError


@dataclass
class StepResult:
    loss: float  # mean over micro-batches (and ranks)
    ms: float  # wall time of the whole step, the device synchronised
    applied: bool  # False when the loss or gradient was not finite and the update was skipped
    parts: dict[str, float] | None = None  # data/compute/comm/backward ms with several ranks
    grad_norm: float | None = None  # global gradient norm before clipping
    clipped: bool | None = None  # None: clipping is off
    update_ratio: float | None = None  # ‖Δw‖/‖w‖ (detail steps)
    layers: list[dict[str, Any]] | None = None  # per group: grad, weight, update (detail); grad only when bad
    bad: str | None = None  # "loss" or "gradient" when not finite
    batch_starts: list[list[int]] | None = None  # the windows' token offsets, per micro-step (when bad)
    lr: float = 0.0  # the learning rate the step ran at
    wants_boundary: bool = False  # several ranks: rank 0 had commands or trouble waiting when the step was launched


@dataclass
class Launched:
    """A step queued on the device and not read yet: what :meth:`Stepper.read` needs to finish it."""

    lr: float
    detail: bool
    readout: torch.Tensor  # [loss, grad norm, wants boundary, per-group grad norms, (detail: weight and update
    # norms)], on its way to the host
    flag: torch.Tensor | None  # on the device, 1.0 where the kernel skips this update (it or the step before bad)
    result: StepResult | None  # already known: the optimizer could not skip on the device, the step checked itself
    starts: list[torch.Tensor]
    t0: float  # perf_counter at launch (after a sync), for devices without events
    start: Any  # CUDA event the step's time is measured from: its own start, or the end of the step before it
    end: Any  # CUDA event recorded after the readout's copy
    marks: list[Any] | None  # the cluster's step timer marks
    sampler_state: dict[str, Any] | None  # before this step's batches: where cancel() puts the sampler back
    start_sampler_state: dict[str, Any] | None  # several ranks: the same, for a failure checkpoint


def run_ahead_setting(environ: dict[str, str] | None = None) -> bool | None:
    """TUIGPT_RUN_AHEAD: True (1), False (0) or None (unset: by device); any other value is a UserError."""
    value = (os.environ if environ is None else environ).get("TUIGPT_RUN_AHEAD", "").strip()
    if value in ("0", "1"):
        return value == "1"
    if value:
        raise UserError(f"TUIGPT_RUN_AHEAD={value!r} is not 0 or 1: use 0 (off), 1 (on) or leave it unset "
                        f"(on for CUDA)")
    return None


def run_ahead_default(device: torch.device, environ: dict[str, str] | None = None) -> bool:
    """Queue the next step before reading this one: on CUDA (the host's work between steps then overlaps the
    GPU's), not on a CPU (nothing to overlap). TUIGPT_RUN_AHEAD=0/1 overrides it (benchmarks compare the two)."""
    setting = run_ahead_setting(environ)
    return device.type == "cuda" if setting is None else setting


class Stepper:
    """Runs optimizer steps; holds nothing but what a step needs."""

    def __init__(self, model: Callable[..., Any], raw_model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, sampler: BatchSampler, precision: Precision, device: torch.device,
                 micro_steps: int, grad_clip: float, cluster: Cluster | None = None) -> None:
        self.model = model
        self.raw_model = raw_model
        self.optimizer = optimizer
        self.scaler = scaler
        self.sampler = sampler
        self.precision = precision
        self.device = device
        self.micro_steps = micro_steps
        self.grad_clip = grad_clip
        self.cluster = cluster
        self._timer = StepTimer(device) if cluster is not None else None
        self.probe = HealthProbe(raw_model)
        self.last = StepResult(float("nan"), 0.0, False)  # the latest step's whole result
        self.start_sampler_state: dict[str, Any] | None = None  # several ranks: what a failure checkpoint saves
        self.runs_ahead = run_ahead_default(device)
        self._no_boundary = torch.zeros((), device=device)  # the readout's "wants boundary" of a single process

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.precision.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.precision.torch_dtype)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @property
    def can_run_ahead(self) -> bool:
        """Whether a step may be launched behind one not read yet (the optimizer must skip on the device)."""
        return self.runs_ahead and self._skips_on_device

    def step(self, lr: float, detail: bool = False) -> StepResult:
        """One optimizer step at learning rate ``lr``, read at once; ``detail``: per-group norms and the update
        ratio too."""
        return self.read(self.launch(lr, detail))

    def launch(self, lr: float, detail: bool = False, after: Launched | None = None,
               wants_boundary: bool = False) -> Launched:
        """Queue one optimizer step; ``after``: the step before it, launched and not read yet (needs
        :attr:`can_run_ahead`): this one is skipped on the device if that one turns out not finite.
        ``wants_boundary`` (rank 0 of several): commands or trouble wait, so every rank must hold a boundary soon;
        it rides in the loss's all-reduce and every rank reads it with the step."""
        if after is not None and not self.can_run_ahead:
            raise RuntimeError("a step can only be queued behind another when the optimizer skips on the device")
        # the state before this step's batches: for cancel() (queued behind another) and a failure checkpoint (ranks)
        state = self.sampler.state_dict() if after is not None or self.cluster is not None else None
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        timer = self._timer
        if self.cluster is not None:
            self.start_sampler_state = state
        cuda = self.device.type == "cuda"
        start: Any = None
        if after is None:
            self.sync()
            if cuda:
                start = torch.cuda.Event(enable_timing=True)
                start.record()
        else:
            start = after.end
        t0 = time.perf_counter()
        if timer is not None:
            timer.start()
            timer.mark()
        loss_sum = torch.zeros((), device=self.device)
        starts: list[torch.Tensor] = []
        for micro in range(self.micro_steps):
            loss_sum += self.micro_step(micro == self.micro_steps - 1, timer, starts)
        self.sampler.prefetch()  # the next step's first batch, drawn and copied while this backward runs
        wanted = self._no_boundary
        if self.cluster is not None:
            flag = torch.full((), float(wants_boundary), device=self.device)
            summed = self.cluster.sum_tensor(torch.stack([loss_sum.float(), flag]), "averaging the loss")
            loss_sum, wanted = summed[0] / self.cluster.world_size, summed[1]
        readout, flag, result = self.update(loss_sum, detail, None if after is None else after.flag, wanted)
        end = None
        if cuda:
            host = torch.empty(readout.shape, dtype=readout.dtype, pin_memory=True)
            host.copy_(readout, non_blocking=True)
            readout = host
            end = torch.cuda.Event(enable_timing=True)
            end.record()
        return Launched(lr, detail, readout, flag, result, starts, t0, start, end,
                        timer.marks if timer is not None else None, state if after is not None else None,
                        state if self.cluster is not None else None)

    def read(self, launched: Launched) -> StepResult:
        """Wait for a launched step and take its numbers: its whole result (also kept as :attr:`last`)."""
        if launched.end is not None:
            launched.end.synchronize()
        values = launched.readout.tolist()
        if launched.result is not None:
            result = launched.result
        else:
            groups = len(self.probe.names)
            result = self._result(values[0], values[1], values[3:3 + groups])
            if result.applied and launched.detail:
                table = [values[3:3 + groups], values[3 + groups:3 + 2 * groups], values[3 + 2 * groups:]]
                weight_total = sum(w * w for w in table[1]) ** 0.5
                result.update_ratio = sum(d * d for d in table[2]) ** 0.5 / weight_total if weight_total else None
                ratios = [d / w if w else 0.0 for d, w in zip(table[2], table[1])]
                result.layers = self.probe.layers(grad=table[0], weight=table[1], update=ratios)
        result.lr, result.wants_boundary = launched.lr, values[2] > 0
        if launched.end is not None:
            result.ms = launched.start.elapsed_time(launched.end)
        else:
            result.ms = (time.perf_counter() - launched.t0) * 1000.0
        if self._timer is not None and launched.marks is not None and result.applied:
            result.parts = split_step(self._timer.intervals(launched.marks), self.micro_steps)
        if result.applied:
            if self.start_sampler_state is launched.start_sampler_state:  # not the state of a step queued behind
                self.start_sampler_state = None
        else:
            result.batch_starts = [s.tolist() for s in launched.starts]
        self.last = result
        return result

    def cancel(self, launched: Launched) -> None:
        """Drop a step queued behind one that turned out not finite: the device skipped its update (the flag it
        was launched with), and its batches go back to the sampler, as if it had never been launched."""
        if launched.end is not None:
            launched.end.synchronize()
        if launched.sampler_state is not None:
            self.sampler.load_state_dict(launched.sampler_state)

    def micro_step(self, last: bool, timer: StepTimer | None = None,
                   starts: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Forward and backward of the next batch, the loss divided by micro_steps; with several ranks the
        gradients are all-reduced only when ``last``. Marks ``timer`` after the batch, the forward and the backward;
        appends the batch's sample positions to ``starts`` (NaN forensics)."""
        x, y = self.sampler.get_batch("train")
        if starts is not None:
            starts.append(self.sampler.last_starts["train"])
        if timer is not None:
            timer.mark()
        with self._gradient_sync(last):
            with self.autocast():
                _, loss = self.model(x, y)
                loss = loss / self.micro_steps
            if timer is not None:
                timer.mark()
            self._backward(loss, last)
        if timer is not None:
            timer.mark()
        return loss.detach()

    def _gradient_sync(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """DDP all-reduces gradients in the backward of the last micro-step only."""
        if self.cluster is None or last:
            return contextlib.nullcontext()
        return self.model.no_sync()  # type: ignore[attr-defined]

    def _backward(self, loss: torch.Tensor, last: bool) -> None:
        if self.cluster is None or not last:
            self.scaler.scale(loss).backward()
            return
        try:
            self.scaler.scale(loss).backward()
        except RuntimeError as exc:  # the all-reduce inside this backward found the group gone
            raise PeerLost(f"rank {self.cluster.rank} lost the group in the gradient all-reduce "
                           f"({first_line(exc)})") from exc

    @torch.no_grad()
    def update(self, loss_sum: torch.Tensor, detail: bool = False, flag_before: torch.Tensor | None = None,
               wanted: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, StepResult | None]:
        """Clip and step, unless the loss or the gradient is not finite: then the update is skipped. Returns what
        to read ([loss, norm, ``wanted``, per-group norms, (detail: weight norms, update norms)], on the device),
        the skip flag and, where the step had to check before stepping, its result.

        With a fused AdamW (CUDA, and CPUs where torch has the kernel) and no float16 scaler, the finiteness check
        stays on the device: the fused kernel takes a ``found_inf`` flag and skips the whole update (step count
        included) where it is set, so the loss and the norm are read in one sync at the end of the step instead of
        one before the optimizer too (on a GPU that sync left it idle while the optimizer step was launched).
        ``flag_before``: the flag of the step launched before this one and not read yet; where it is set this
        step is skipped too."""
        self.scaler.unscale_(self.optimizer)  # no-op without float16: the norms are of the true gradients
        probe = self.probe
        # per-group norms cost what the global norm does (one foreach norm); the global one is their root sum
        group_grads = probe.group_norms(probe.grads())
        total = group_grads.square().sum().sqrt()
        if self.grad_clip:  # queued before the sync, as clip_grad_norm_ would be; group_grads are from before it
            torch.nn.utils.clip_grads_with_norm_(probe.params, self.grad_clip, total)
        if wanted is None:
            wanted = self._no_boundary
        head = [loss_sum.float().reshape(1), total.float().reshape(1), wanted.float().reshape(1), group_grads]
        flag = None
        if self._skips_on_device:
            flag = (~(torch.isfinite(loss_sum) & torch.isfinite(total))).float()
            if flag_before is not None:
                flag = torch.maximum(flag, flag_before)
            self.optimizer.found_inf = flag
            self.optimizer.grad_scale = None
        else:
            checked = self._result(*torch.cat(head).tolist()[:2], group_grads.tolist())
            if not checked.applied:
                self.optimizer.zero_grad(set_to_none=True)  # the update is skipped: its gradients go
                return torch.cat(head), None, checked
        before = None
        if detail:
            weights = [p.detach() for p in probe.params]
            head.append(probe.group_norms(weights))
            before = [w.clone() for w in weights]
        try:
            self.scaler.step(self.optimizer)
        finally:
            if flag is not None:
                del self.optimizer.found_inf, self.optimizer.grad_scale
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if before is not None:
            torch._foreach_sub_(before, [p.detach() for p in probe.params])  # before - after: the update, negated
            head.append(probe.group_norms(before))
        return torch.cat(head), flag, None

    @property
    def _skips_on_device(self) -> bool:
        # an optimizer may say so itself (Muon's groups skip with torch.where); else AdamW's groups, not its
        # defaults: a loaded optimizer state (a nanoGPT checkpoint's) brings its own flag
        skips = getattr(self.optimizer, "skips_on_device", None)
        if skips is None:
            skips = all(group.get("fused") for group in self.optimizer.param_groups)
        return bool(skips) and not self.scaler.is_enabled()

    def _result(self, loss_value: float, grad_norm: float, group_grads: list[float]) -> StepResult:
        """A step's result from its loss and gradient norm: not applied where either is not finite (the per-group
        norms kept for the forensics)."""
        clipped = grad_norm > self.grad_clip if self.grad_clip else None
        bad = "loss" if not math.isfinite(loss_value) else None
        if bad is None and not math.isfinite(grad_norm) and not self.scaler.is_enabled():
            bad = "gradient"  # (with float16 the scaler skips such steps itself and lowers its scale)
        if bad is None:
            return StepResult(loss_value, 0.0, True, grad_norm=grad_norm, clipped=clipped)
        layers = self.probe.layers(grad=group_grads)  # which group went bad (norms from before clipping)
        return StepResult(loss_value, 0.0, False, grad_norm=grad_norm, clipped=clipped, layers=layers, bad=bad)
