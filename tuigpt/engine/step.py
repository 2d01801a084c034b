"""One optimizer step, for one process or one rank of several.

A step runs ``micro_steps`` forward/backward passes on micro-batches (gradient accumulation), then clips
and applies the update. With several ranks the model is wrapped in DistributedDataParallel: the gradient
all-reduce runs on the last micro-step only (``no_sync`` on the others), the loss is averaged over ranks
so every rank takes the same NaN decision, and marks inside the step time data, compute and exposed
communication for the Cluster pane. A non-finite loss skips the update: the weights stay as they were.
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
from tuigpt.engine.distributed import Cluster, PeerLost, StepTimer, first_line, split_step


@dataclass
class StepResult:
    loss: float  # mean over micro-batches (and ranks)
    ms: float  # wall time of the whole step, the device synchronised
    applied: bool  # False when the loss was not finite and the update was skipped
    parts: dict[str, float] | None = None  # data/compute/comm/backward ms with several ranks


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
        self.start_sampler_state: dict[str, Any] | None = None  # several ranks: what a failure checkpoint saves

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.precision.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.precision.torch_dtype)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self, lr: float) -> StepResult:
        """One optimizer step at learning rate ``lr``."""
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
        for micro in range(self.micro_steps):
            loss_sum += self.micro_step(micro == self.micro_steps - 1, timer)
        if self.cluster is not None:
            loss_sum = self.cluster.mean_tensor(loss_sum, "averaging the loss")
        loss_value, applied = self.update(loss_sum)
        self.sync()
        ms = (time.perf_counter() - t0) * 1000.0
        parts = split_step(timer.intervals(), self.micro_steps) if timer is not None and applied else None
        if applied:
            self.start_sampler_state = None
        return StepResult(loss_value, ms, applied, parts)

    def micro_step(self, last: bool, timer: StepTimer | None = None) -> torch.Tensor:
        """Forward and backward of the next batch, the loss divided by micro_steps; with several ranks the
        gradients are all-reduced only when ``last``. Marks ``timer`` after the batch, the forward and the backward."""
        x, y = self.sampler.get_batch("train")
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

    def update(self, loss_sum: torch.Tensor) -> tuple[float, bool]:
        """Clip and step, unless the loss is not finite: then the gradients are dropped."""
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.grad_clip)
        loss_value = loss_sum.item()  # synchronises the device, and lets a NaN loss skip the update
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            return loss_value, False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value, True
