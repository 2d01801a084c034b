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

A step ends in one read of the device: the loss, the gradient norm and the per-group norms come back together.
Queueing the next step before reading this one (run-ahead) was tried and removed: on an H100 it made GPT-2 124M
steps 1.009x faster (eager bf16, `tuigpt bench`, 1.007x and 1.011x in two alternating rounds) and the 10.7M baby
GPT's 1.037x then 0.859x, noise larger than the effect, for a boundary protocol across ranks (docs/PERFORMANCE.md).
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
    lr: float = 0.0  # the learning rate the step ran at


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
        """One optimizer step at learning rate ``lr``, its numbers read at the end (also kept as :attr:`last`);
        ``detail``: per-group norms and the update ratio too."""
        if self.cluster is not None:  # where a failure checkpoint puts this rank's batches back to, mid-step
            self.start_sampler_state = self.sampler.state_dict()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        timer = self._timer
        cuda = self.device.type == "cuda"
        self.sync()
        start = end = None
        if cuda:
            start = torch.cuda.Event(enable_timing=True)
            start.record()
        t0 = time.perf_counter()
        if timer is not None:
            timer.start()
            timer.mark()
        loss_sum = torch.zeros((), device=self.device)
        starts: list[torch.Tensor] = []
        for micro in range(self.micro_steps):
            loss_sum += self.micro_step(micro == self.micro_steps - 1, timer, starts)
        self.sampler.prefetch()  # the next step's first batch, drawn and copied while this backward runs
        if self.cluster is not None:  # every rank takes the same NaN decision
            loss_sum = self.cluster.sum_tensor(loss_sum, "averaging the loss") / self.cluster.world_size
        readout, result = self.update(loss_sum, detail)
        if cuda:
            host = torch.empty(readout.shape, dtype=readout.dtype, pin_memory=True)
            host.copy_(readout, non_blocking=True)
            readout = host
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
        values = readout.tolist()
        if result is None:
            groups = len(self.probe.names)
            result = self._result(values[0], values[1], values[2:2 + groups])
            if result.applied and detail:
                table = [values[2:2 + groups], values[2 + groups:2 + 2 * groups], values[2 + 2 * groups:]]
                weight_total = sum(w * w for w in table[1]) ** 0.5
                result.update_ratio = sum(d * d for d in table[2]) ** 0.5 / weight_total if weight_total else None
                ratios = [d / w if w else 0.0 for d, w in zip(table[2], table[1])]
                result.layers = self.probe.layers(grad=table[0], weight=table[1], update=ratios)
        result.lr = lr
        result.ms = start.elapsed_time(end) if cuda else (time.perf_counter() - t0) * 1000.0
        if result.applied:
            if timer is not None:
                result.parts = split_step(timer.intervals(), self.micro_steps)
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
    def update(self, loss_sum: torch.Tensor, detail: bool = False) -> tuple[torch.Tensor, StepResult | None]:
        """Clip and step, unless the loss or the gradient is not finite: then the update is skipped. Returns what
        to read ([loss, norm, per-group norms, (detail: weight norms, update norms)], on the device) and, where the
        step had to check before stepping, its result.

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
        head = [loss_sum.float().reshape(1), total.float().reshape(1), group_grads]
        flag = None
        if self._skips_on_device:
            flag = (~(torch.isfinite(loss_sum) & torch.isfinite(total))).float()
            self.optimizer.found_inf = flag
            self.optimizer.grad_scale = None
        else:
            checked = self._result(*torch.cat(head).tolist()[:2], group_grads.tolist())
            if not checked.applied:
                self.optimizer.zero_grad(set_to_none=True)  # the update is skipped: its gradients go
                return torch.cat(head), checked
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
        return torch.cat(head), None

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
