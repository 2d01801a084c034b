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
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from tuigpt.engine.data import BatchSampler
from tuigpt.engine.device import Precision
from tuigpt.engine.distributed import Cluster, PeerLost, first_line
from tuigpt.engine.health import HealthProbe
from tuigpt.engine.rank_timing import StepTimer, split_step
from tuigpt.engine.step_graph import StepGraph

# Eager steps before a capture: the first allocates the optimizer's state and warms the libraries' handles, the
# next are timed for the comparison a `cuda_graphs: auto` run makes.
GRAPH_WARMUP_STEPS = 4
GRAPH_TIMED_STEPS = 4  # replays timed against the eager steps (the first replay, which uploads the graph, is not)
GRAPH_MIN_GAIN = 0.97  # auto keeps a graph whose replays take under this share of an eager step: a 3% margin over
# the step-to-step noise (eager rounds of the baby GPT on an H100 varied 15.72-16.05 ms, 2%)


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
                 micro_steps: int, grad_clip: float, cluster: Cluster | None = None,
                 graphs: bool | str = False, compiled: bool = False) -> None:
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
        # CUDA graphs: False, True (kept once captured) or "auto" (kept where replays measure faster than eager)
        self.graph: StepGraph | None = None
        self.graph_note: str | None = None  # what the graphs' capture or timing found, for the trainer to say
        why_not = ("the run is not on a CUDA GPU" if device.type != "cuda" else
                   "the gradients are synchronised across ranks (DDP)" if cluster is not None else
                   "the model is compiled (the graphs capture eager steps)" if compiled else
                   "this step reads its loss before the update (float16's scaler, or an unfused AdamW)"
                   if not self._skips_on_device else None)
        self.graphs = graphs if why_not is None else False
        if graphs is True and why_not is not None:  # asked for by name: say why not (auto stays quiet)
            self.graph_note = f"CUDA graphs off: {why_not}"
        self._eager_ms: list[float] = []
        self._replay_ms: list[float] = []

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
        starts: list[torch.Tensor] = []
        batches = self._batches(starts) if self._graph_due(detail) else None
        graph = self._graph(batches) if batches is not None else None
        if graph is not None:
            readout, result = graph.replay(lr, batches), None
            self.sampler.prefetch()  # the next step's first batch, drawn and copied while the graph runs
        else:
            loss_sum = torch.zeros((), device=self.device)
            for micro in range(self.micro_steps):
                loss_sum += self.micro_step(micro == self.micro_steps - 1, timer, starts,
                                            batches[micro] if batches is not None else None)
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
        if self.graphs and not detail:
            self._timed(result.ms, replayed=graph is not None)
        if result.applied:
            if timer is not None:
                result.parts = split_step(timer.intervals(), self.micro_steps)
            self.start_sampler_state = None
        else:
            result.batch_starts = [s.tolist() for s in starts]
        self.last = result
        return result

    # ------------------------------------------------------------ CUDA graphs

    def _graph_due(self, detail: bool) -> bool:
        """Whether this step replays a graph (or captures one to): not a detail step, not the warm-up."""
        return bool(self.graphs) and not detail and len(self._eager_ms) >= GRAPH_WARMUP_STEPS

    def _graph(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> StepGraph | None:
        """The graph this step replays, captured on ``batches`` where there is none yet; None (the step runs
        eagerly) where the optimizer's tensors were replaced since the capture, or capturing failed."""
        if self.graph is not None and not self.graph.current():
            self.graph = None  # a checkpoint loaded, a plan changed: this step is eager, the next captures again
            return None
        if self.graph is None:
            try:
                self.graph = self._capture(batches)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                self.graphs = False
                self.graph_note = f"CUDA graphs off: the step could not be captured ({first_line(exc)})"
        return self.graph

    def _capture(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> StepGraph:
        transient = torch.cuda.max_memory_allocated(self.device) - torch.cuda.memory_allocated(self.device)
        free, _ = torch.cuda.mem_get_info(self.device)
        if free < 1.2 * transient:  # a graph keeps a step's memory for itself; detail steps need theirs again
            raise torch.cuda.OutOfMemoryError(f"a step needs {transient / 2**30:.1f} GiB beyond the weights and "
                                              f"{free / 2**30:.1f} GiB are free: not enough to keep it twice")
        self.optimizer.zero_grad(set_to_none=True)
        return StepGraph(self.optimizer, self.probe.params, self._work, batches)

    def _work(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> torch.Tensor:
        """What a graph captures: every micro-batch's forward and backward, then :meth:`update` (no detail)."""
        loss_sum = torch.zeros((), device=self.device)
        for x, y in zip(xs, ys):
            loss_sum += self.micro_step(True, batch=(x, y))  # one process: no gradient sync to hold back
        readout, _ = self.update(loss_sum)
        return readout

    def _batches(self, starts: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [self._draw(starts) for _ in range(self.micro_steps)]

    def _draw(self, starts: list[torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The next train batch; its windows' offsets appended to ``starts`` (NaN forensics)."""
        batch = self.sampler.get_batch("train")
        if starts is not None:
            starts.append(self.sampler.last_starts["train"])
        return batch

    def _timed(self, ms: float, replayed: bool) -> None:
        """Keep a step's time; once replays have been timed, decide (auto) and say what was measured."""
        if not replayed:
            self._eager_ms.append(ms)
            return
        self._replay_ms.append(ms)
        if len(self._replay_ms) != GRAPH_TIMED_STEPS + 1:
            return
        eager = statistics.median(self._eager_ms[1:])  # the first step allocated the optimizer's state
        replay = statistics.median(self._replay_ms[1:])  # the first replay uploaded the graph
        measured = f"a replayed step {replay:.1f} ms against {eager:.1f} ms eager ({replay / eager:.2f}x)"
        if self.graphs == "auto" and replay > GRAPH_MIN_GAIN * eager:
            self.graphs, self.graph = False, None
            self.graph_note = f"CUDA graphs off (auto: {measured})"
        else:
            self.graph_note = f"CUDA graphs on ({'auto: ' if self.graphs == 'auto' else ''}{measured})"

    def micro_step(self, last: bool, timer: StepTimer | None = None, starts: list[torch.Tensor] | None = None,
                   batch: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Forward and backward of ``batch`` (else the next), the loss divided by micro_steps; with several ranks
        the gradients are all-reduced only when ``last``. Marks ``timer`` after the batch, the forward and the
        backward; appends a drawn batch's sample positions to ``starts`` (NaN forensics)."""
        x, y = batch if batch is not None else self._draw(starts)
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
