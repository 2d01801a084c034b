"""Muon for the hidden matrices, AdamW for every other parameter: one optimizer, one state dict.

Muon (Keller Jordan, kellerjordan.github.io/posts/muon) keeps a Nesterov momentum of each matrix's gradient and
steps along its orthogonalised form (:mod:`tuigpt.engine.orthogonalize`), scaled by √max(1, rows/cols) so every
matrix moves by about the same RMS; embeddings, the output layer and the gains stay with AdamW, where Muon does
not apply. torch.optim.Muon does this one parameter at a time (32.7 ms a step against AdamW's 17.8 ms on an H100
for the baby GPT, issue 22); here, as in nanochat's MuonAdamW and modded-nanogpt, the matrices of one shape are
one group, stacked, and orthogonalised in one batched call, with their momentum kept as one stacked tensor
(each parameter's ``momentum_buffer`` in the state dict is a view of it). The AdamW groups step with torch's
own fused kernel where the device has one.

A group's ``lr`` is the schedule's learning rate (the trainer sets every group's); a Muon group steps at
``lr × lr_ratio`` (muon_lr / learning_rate), so one schedule drives both.

Skipping on the device: the trainer may hand a ``found_inf`` flag (a 0-d tensor, 1.0 for a NaN/Inf loss or
gradient) instead of reading the loss first; AdamW's fused kernel then skips its update, and the Muon groups keep
their momentum and weights through ``torch.where``, so a bad step changes nothing without a device sync.

Several ranks (``shard``): every rank holds the same averaged gradients (DDP) and updates every momentum, but
orthogonalises only its share of each stack (⌈k / world⌉ matrices, the last share padded with zeros); the shares
are all-gathered, so each rank applies the same bytes and ends the step with bit-identical weights, and the
orthogonalisation work is divided by the number of ranks instead of repeated on each (nanochat and
modded-nanogpt shard it the same way).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim.adam import adam

from tuigpt.engine.distributed import Cluster
from tuigpt.engine.orthogonalize import compute

ADAMW, MUON = "adamw", "muon"


class Muon(torch.optim.Optimizer):
    """Groups have ``kind`` adamw (lr, betas, eps, weight_decay, fused) or muon (lr, lr_ratio, momentum,
    weight_decay; every parameter of one shape); see :func:`tuigpt.engine.optimizers.make_optimizer`."""

    def __init__(self, groups: list[dict[str, Any]], *, methods: dict[tuple[int, int], str] | None = None,
                 dtype: torch.dtype = torch.float32, compiled: bool = False, shard: Cluster | None = None) -> None:
        super().__init__(groups, defaults={})
        for group in self.param_groups:
            if group["kind"] == MUON and len({tuple(p.shape) for p in group["params"]}) != 1:
                raise ValueError("a Muon group holds matrices of one shape")
        self.methods = dict(methods or {})
        self.dtype = dtype
        self.shard = shard if shard is not None and shard.world_size > 1 else None
        self._orthogonalize = torch.compile(compute, dynamic=False) if compiled else compute
        # the stepper hands found_inf instead of reading the step's loss first where every group can skip on the
        # device: the Muon groups always can, AdamW's where its kernel is fused
        self.skips_on_device = all(g.get("fused") for g in self.param_groups if g["kind"] == ADAMW)
        self._stacks: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        found_inf = getattr(self, "found_inf", None)
        pending = []
        for index, group in enumerate(self.param_groups):
            if group["kind"] == ADAMW:
                self._adamw(group, found_inf)
            else:
                pending.append(self._launch_muon(index, group, found_inf))
        for finish in pending:
            finish()
        return loss

    # ------------------------------------------------------------ AdamW

    def _adamw(self, group: dict[str, Any], found_inf: torch.Tensor | None) -> None:
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        fused = bool(group.get("fused"))
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:  # as torch's Adam lays its state out: a resume can load either's
                state["step"] = (torch.zeros((), dtype=torch.float32, device=p.device) if fused
                                 else torch.tensor(0.0, dtype=torch.float32))
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if not params:
            return
        beta1, beta2 = group["betas"]
        adam(params, grads, exp_avgs, exp_avg_sqs, [], steps, foreach=None if fused else True,
                              fused=fused or None, found_inf=found_inf if fused else None, grad_scale=None,
                              decoupled_weight_decay=True, amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
                              weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    # ------------------------------------------------------------ Muon

    def momentum_stack(self, index: int) -> torch.Tensor:
        """Group ``index``'s momentum as one (k, rows, cols) tensor whose rows are the parameters'
        ``momentum_buffer`` states; rebuilt from them after a load_state_dict or a state.clear()."""
        params = self.param_groups[index]["params"]
        stack = self._stacks.get(index)
        states = [self.state[p].get("momentum_buffer") for p in params]
        if stack is not None and len(stack) == len(params) and all(
                s is not None and s.data_ptr() == stack[j].data_ptr() for j, s in enumerate(states)):
            return stack
        stack = torch.stack([s if s is not None else torch.zeros_like(p) for s, p in zip(states, params)])
        for j, p in enumerate(params):
            self.state[p]["momentum_buffer"] = stack[j]
        self._stacks[index] = stack
        return stack

    def _launch_muon(self, index: int, group: dict[str, Any], found_inf: torch.Tensor | None) -> Any:
        """Momentum and this rank's share of the orthogonalisation; returns what applies the update once the
        shares are gathered (several ranks: the gather runs while the next group is computed)."""
        params = group["params"]
        buf = self.momentum_stack(index)
        grads = torch.stack([p.grad if p.grad is not None else torch.zeros_like(p) for p in params])
        momentum = group["momentum"]
        if found_inf is None:
            buf.lerp_(grads, 1 - momentum)
        else:  # a skipped step leaves the momentum as it was
            buf.copy_(torch.where(found_inf.bool(), buf, torch.lerp(buf, grads, 1 - momentum)))
        update = grads.lerp_(buf, momentum)  # Nesterov: the gradient pulled towards the new momentum
        shape = tuple(params[0].shape)
        method = self.methods.get(shape, "newton-schulz")  # type: ignore[call-overload]
        if self.shard is None:
            ortho = self._orthogonalize(update, method, self.dtype)
            return lambda: self._apply(group, ortho, found_inf)
        world, rank = self.shard.world_size, self.shard.rank
        share = -(-len(params) // world)
        padded = torch.zeros((share * world, *shape), dtype=update.dtype, device=update.device)
        padded[:len(params)] = update
        mine = self._orthogonalize(padded[rank * share:(rank + 1) * share], method, self.dtype).contiguous()
        gathered = torch.empty((share * world, *shape), dtype=mine.dtype, device=mine.device)
        wait = self.shard.all_gather_into(gathered, mine, "gathering Muon's orthogonalised updates")

        def finish() -> None:
            wait()
            self._apply(group, gathered[:len(params)], found_inf)

        return finish

    def _apply(self, group: dict[str, Any], ortho: torch.Tensor, found_inf: torch.Tensor | None) -> None:
        """Decoupled weight decay, then the step along the orthogonalised update (k, rows, cols)."""
        params = group["params"]
        rows, cols = params[0].shape
        lr = group["lr"] * group["lr_ratio"]
        scale = lr * math.sqrt(max(1.0, rows / cols))  # the same RMS step for tall matrices (Keller Jordan's)
        step = ortho.to(params[0].dtype) * -scale
        decay = lr * group["weight_decay"]
        if found_inf is not None:
            skip = found_inf.bool()
            step = torch.where(skip, torch.zeros((), dtype=step.dtype, device=step.device), step)
            if decay:
                torch._foreach_mul_(params, torch.where(skip, 1.0, 1.0 - decay).to(params[0].dtype))
        elif decay:
            torch._foreach_mul_(params, 1.0 - decay)
        torch._foreach_add_(params, list(step.unbind(0)))
