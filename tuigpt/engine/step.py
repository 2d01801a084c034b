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
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from tuigpt.engine.data import BatchSampler
from tuigpt.engine.device import Precision
from tuigpt.engine.distributed import Cluster, PeerLost, first_line
from tuigpt.engine.health import HealthProbe
from tuigpt.engine.rank_timing import StepTimer, split_step


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

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.precision.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.precision.torch_dtype)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self, lr: float, detail: bool = False) -> StepResult:
        """One optimizer step at learning rate ``lr``; ``detail``: per-group norms and the update ratio too."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        timer = self._timer
        if self.cluster is not None:
            self.start_sampler_state = self.sampler.state_dict()
        self.sync()
        t0 = time.perf_counter()
        if timer is not None:
            timer.start()
            timer.mark()
        loss_sum = torch.zeros((), device=self.device)
        starts: list[torch.Tensor] = []
        for micro in range(self.micro_steps):
            loss_sum += self.micro_step(micro == self.micro_steps - 1, timer, starts)
        self.sampler.prefetch()  # the next step's first batch, drawn and copied while this backward runs
        if self.cluster is not None:
            loss_sum = self.cluster.mean_tensor(loss_sum, "averaging the loss")
        result = self.update(loss_sum, detail)
        self.sync()
        result.ms = (time.perf_counter() - t0) * 1000.0
        if timer is not None and result.applied:
            result.parts = split_step(timer.intervals(), self.micro_steps)
        if result.applied:
            self.start_sampler_state = None
        else:
            result.batch_starts = [s.tolist() for s in starts]
        self.last = result
        return result

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
    def update(self, loss_sum: torch.Tensor, detail: bool = False) -> StepResult:
        """Clip and step, unless the loss or the gradient is not finite: then the update is skipped.

        With a fused AdamW (CUDA, and CPUs where torch has the kernel) and no float16 scaler, the finiteness check
        stays on the device: the fused kernel takes a ``found_inf`` flag and skips the whole update (step count
        included) where it is set, so the loss and the norm are read in one sync at the end of the step instead of
        one before the optimizer too (on a GPU that sync left it idle while the optimizer step was launched)."""
        self.scaler.unscale_(self.optimizer)  # no-op without float16: the norms are of the true gradients
        probe = self.probe
        # per-group norms cost what the global norm does (one foreach norm); the global one is their root sum
        group_grads = probe.group_norms(probe.grads())
        total = group_grads.square().sum().sqrt()
        if self.grad_clip:  # queued before the sync, as clip_grad_norm_ would be; group_grads are from before it
            torch.nn.utils.clip_grads_with_norm_(probe.params, self.grad_clip, total)
        on_device = self._skips_on_device
        if on_device:
            self.optimizer.found_inf = (~(torch.isfinite(loss_sum) & torch.isfinite(total))).float()
            self.optimizer.grad_scale = None
        else:
            checked = self._checked(loss_sum, total, group_grads)
            if not checked.applied:
                self.optimizer.zero_grad(set_to_none=True)  # the update is skipped: its gradients go
                return checked
        weights = before = group_weights = None
        if detail:
            weights = [p.detach() for p in probe.params]
            group_weights = probe.group_norms(weights)
            before = [w.clone() for w in weights]
        try:
            self.scaler.step(self.optimizer)
        finally:
            if on_device:
                del self.optimizer.found_inf, self.optimizer.grad_scale
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        result = self._checked(loss_sum, total, group_grads) if on_device else checked
        if not result.applied:
            return result  # the kernel skipped the update: the weights are as they were
        if weights is not None and before is not None and group_weights is not None:
            torch._foreach_sub_(before, weights)  # before - after: the update, negated
            group_updates = probe.group_norms(before)
            table = torch.stack([group_grads, group_weights, group_updates]).tolist()
            weight_total = sum(w * w for w in table[1]) ** 0.5
            result.update_ratio = sum(d * d for d in table[2]) ** 0.5 / weight_total if weight_total else None
            ratios = [d / w if w else 0.0 for d, w in zip(table[2], table[1])]
            result.layers = probe.layers(grad=table[0], weight=table[1], update=ratios)
        return result

    @property
    def _skips_on_device(self) -> bool:
        # the groups, not the defaults: a loaded optimizer state (a nanoGPT checkpoint's) brings its own flag
        fused = all(group.get("fused") for group in self.optimizer.param_groups)
        return fused and not self.scaler.is_enabled()

    def _checked(self, loss_sum: torch.Tensor, total: torch.Tensor, group_grads: torch.Tensor) -> StepResult:
        """Read the loss and the gradient norm (one device sync); a result not applied where either is not finite
        (the per-group norms kept for the forensics)."""
        loss_value, grad_norm = torch.stack([loss_sum.float(), total.float()]).tolist()
        clipped = grad_norm > self.grad_clip if self.grad_clip else None
        bad = "loss" if not math.isfinite(loss_value) else None
        if bad is None and not math.isfinite(grad_norm) and not self.scaler.is_enabled():
            bad = "gradient"  # (with float16 the scaler skips such steps itself and lowers its scale)
        if bad is None:
            return StepResult(loss_value, 0.0, True, grad_norm=grad_norm, clipped=clipped)
        layers = self.probe.layers(grad=group_grads.tolist())  # which group went bad (norms from before clipping)
        return StepResult(loss_value, 0.0, False, grad_norm=grad_norm, clipped=clipped, layers=layers, bad=bad)
