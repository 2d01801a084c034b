"""A training step's device work captured once as a CUDA graph and replayed at every step after.

On a GPU a small model's eager step is bound by launching its kernels, not by running them: the baby GPT's shipped
step (nanochat's block, Muon) launches ~720 kernels a step, and an H200 was busy 13.3 ms of its 20.1
(``benchmarks/baby_step_profile.py``). A graph launches the whole step in one call: the forward and backward of
every micro-batch, the norms the step reads back, clipping, the optimizer's update and the readout.

What a graph reads is fixed when it is captured: the batch (copied into the graph's own input tensors before each
replay), the learning rate (a device scalar every group reads, filled before each replay), the addresses of the
weights, gradients and optimizer state, and every other hyper-parameter. A replay first checks that nothing it
depends on was replaced since (a checkpoint loaded into the optimizer, a Muon plan changed, a hyper-parameter
set): a stale graph is dropped and the step runs eagerly, then a new one is captured.

Eager and replayed steps run the same kernels on the same inputs; dropout draws from the same generator offsets
(torch registers the default generator with the graph and advances it by the graph's draws at each replay), so a
replayed step computes the eager step's bits. Steps that read per-group detail (logged iterations) stay eager.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

Body = Callable[[list[torch.Tensor], list[torch.Tensor]], torch.Tensor]


class StepGraph:
    """The graph of one step's device work, with the static tensors it reads and writes."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: list[torch.Tensor], body: Body,
                 batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Capture ``body(xs, ys) -> readout`` (the step's work on the micro-batches' inputs and targets) on
        batches shaped like ``batches``. Capturing records kernels without running them: the caller replays
        to take the step."""
        self.optimizer = optimizer
        self.params = params
        device = params[0].device
        self.xs = [x.clone() for x, _ in batches]
        self.ys = [y.clone() for _, y in batches]
        self.lr = torch.zeros((), dtype=torch.float32, device=device)
        self.graph = torch.cuda.CUDAGraph()
        floats = [group["lr"] for group in optimizer.param_groups]
        capturable = [group.get("capturable") for group in optimizer.param_groups]
        try:
            for group in optimizer.param_groups:
                group["lr"] = self.lr  # every group reads the device scalar instead of a float baked in
                if "capturable" in group:
                    group["capturable"] = True  # torch's Adam refuses a capture otherwise
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.graph(self.graph, stream=stream):
                self.readout = body(self.xs, self.ys)
        finally:
            for group, lr, flag in zip(optimizer.param_groups, floats, capturable):
                group["lr"] = lr
                if flag is not None:
                    group["capturable"] = flag
        self.signature = self._signature()

    def current(self) -> bool:
        """Whether the graph still reads and writes the tensors and hyper-parameters the optimizer holds now."""
        return self._signature() == self.signature

    def replay(self, lr: float, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """One step at learning rate ``lr`` on ``batches``; returns the readout (on the device, overwritten by
        the next replay)."""
        for (x, y), sx, sy in zip(batches, self.xs, self.ys):
            sx.copy_(x, non_blocking=True)
            sy.copy_(y, non_blocking=True)
        self.lr.fill_(lr)
        self.graph.replay()
        return self.readout

    def _signature(self) -> tuple[Any, ...]:
        addresses = [p.data_ptr() for p in self.params]
        for state in self.optimizer.state.values():
            addresses += [v.data_ptr() for v in state.values() if isinstance(v, torch.Tensor)]
        hyper = [(k, v) for group in self.optimizer.param_groups for k, v in group.items()
                 if k not in ("params", "lr")]
        return tuple(addresses), repr(hyper)
