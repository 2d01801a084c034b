"""Muon for the hidden matrices, AdamW for every other parameter: one optimizer, one state dict.

Muon (Keller Jordan, kellerjordan.github.io/posts/muon) keeps a Nesterov momentum of each matrix's gradient and
steps along its orthogonalised form (:mod:`tuigpt.engine.orthogonalize`), scaled by √max(1, rows/cols) so every
matrix moves by about the same RMS; embeddings, the output layer and the gains stay with AdamW, where Muon does
not apply. torch.optim.Muon does this one parameter at a time (32.7 ms a step against AdamW's 17.8 ms on an H100
for the baby GPT, issue 22). Here, as in nanochat's MuonAdamW and modded-nanogpt, matrices are orthogonalised as
stacks in one batched call each. A stack holds matrices turned wide (a tall one is transposed) that share their
short side; its rows are zero-padded to the longest (X·X^T and the iteration leave zero columns zero, so a
padded matrix's result is its own): on a GPU, where a step is bound by kernel launches, the GPT's matrices (all
n_embd on one side) are one stack, ~30 launches for Muon's whole step instead of ~110 for one stack a shape;
on a CPU, where arithmetic is the bound, they are stacked by shape only. Which plan, and the Newton–Schulz form
of each stack, are timed on the machine (:func:`tuigpt.engine.orthogonalize.plan`). The gradients are copied
into a stack kept between steps and the momentum is kept stacked: each parameter's ``momentum_buffer`` in the
state dict is a view of its slot, in the parameter's shape, so checkpoints do not depend on the plan.

Muon's group has ``lr`` (the schedule's, set by the trainer on every group), ``lr_ratio`` (muon_lr /
learning_rate: one schedule drives both), ``momentum`` and ``weight_decay`` (decoupled, times Muon's lr). The
AdamW groups step with torch's own fused kernel where the device has one.

Skipping on the device: the trainer may hand a ``found_inf`` flag (a 0-d tensor, 1.0 for a NaN/Inf loss or
gradient) instead of reading the loss first; AdamW's fused kernel then skips its update, and Muon's momentum takes
itself instead of the gradient and its step is multiplied by 0, so a bad step changes nothing, without a sync.

Several ranks (``shard``): every rank holds the same averaged gradients (DDP) and updates every momentum, but
orthogonalises only its share of each stack (⌈k / world⌉ matrices; the stack padded with zero matrices to a
multiple of the world); the shares are all-gathered, so each rank applies the same bytes and ends the step with
bit-identical weights, the orthogonalisation divided among the ranks instead of repeated on each (nanochat and
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
Plan = list[tuple[list[int], str]]  # stacks: the Muon group's parameter indices in each, and how it is computed


class Muon(torch.optim.Optimizer):
    """Groups have ``kind`` adamw (lr, betas, eps, weight_decay, fused) or muon (one group: lr, lr_ratio,
    momentum, weight_decay); see :func:`tuigpt.engine.optimizers.make_optimizer`. ``plan``: the stacks (default:
    one a wide shape, Newton–Schulz)."""

    def __init__(self, groups: list[dict[str, Any]], *, plan: Plan | None = None,
                 dtype: torch.dtype = torch.float32, shard: Cluster | None = None) -> None:
        super().__init__(groups, defaults={})
        muon = [k for k, g in enumerate(self.param_groups) if g["kind"] == MUON]
        if len(muon) > 1 or any(p.dim() != 2 for k in muon for p in self.param_groups[k]["params"]):
            raise ValueError("Muon trains one group of 2-D matrices")
        self._muon_index = muon[0] if muon else None
        self.dtype = dtype
        self.shard = shard if shard is not None and shard.world_size > 1 else None
        self._orthogonalize = compute
        # the stepper hands found_inf instead of reading the step's loss first where every group can skip on the
        # device: Muon's always can, AdamW's where its kernel is fused
        self.skips_on_device = all(g.get("fused") for g in self.param_groups if g["kind"] == ADAMW)
        self.use_plan(plan if plan is not None else self.default_plan())

    # ------------------------------------------------------------ the plan

    @property
    def matrices(self) -> list[torch.Tensor]:
        return self.param_groups[self._muon_index]["params"] if self._muon_index is not None else []

    def default_plan(self) -> Plan:
        """One stack a wide shape, Newton–Schulz."""
        shapes: dict[tuple[int, int], list[int]] = {}
        for k, p in enumerate(self.matrices):
            shapes.setdefault((min(p.shape), max(p.shape)), []).append(k)
        return [(indices, "newton-schulz") for indices in shapes.values()]

    def use_plan(self, plan: Plan) -> None:
        """Stack the matrices as ``plan`` says (the momentum carried over from the per-parameter states)."""
        matrices = self.matrices
        if sorted(k for indices, _ in plan for k in indices) != list(range(len(matrices))):
            raise ValueError("a plan must stack every Muon matrix once")
        if any(len({min(matrices[k].shape) for k in indices}) != 1 for indices, _ in plan):
            raise ValueError("a stack's matrices share their short side")
        self.plan = [(list(indices), method) for indices, method in plan]
        world = self.shard.world_size if self.shard is not None else 1
        self._stacks: list[dict[str, Any]] = []
        for indices, method in self.plan:
            params = [matrices[k] for k in indices]
            rows = min(params[0].shape)
            cols = max(max(p.shape) for p in params)
            depth = -(-len(params) // world) * world  # zero matrices pad it to whole shares
            like = params[0]
            scales = torch.tensor([math.sqrt(max(1.0, p.shape[0] / p.shape[1])) for p in params],
                                  dtype=like.dtype, device=like.device).view(-1, 1, 1)
            self._stacks.append({"params": params, "method": method, "shape": (depth, rows, cols),
                                 "grads": torch.zeros((depth, rows, cols), dtype=like.dtype, device=like.device),
                                 "momentum": None, "scales": scales})
        for k in range(len(self._stacks)):
            self.momentum_stack(k)

    @staticmethod
    def _slots(stack: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each parameter's slot of a (depth, rows, cols) stack, as a view in the parameter's own shape."""
        out = []
        for j, p in enumerate(params):
            rows, cols = p.shape
            out.append(stack[j, :cols, :rows].mT if rows > cols else stack[j, :rows, :cols])
        return out

    def momentum_stack(self, k: int) -> torch.Tensor:
        """Stack ``k``'s momentum; each parameter's ``momentum_buffer`` state is a view of its slot. Built again
        from those states after a load_state_dict or a state.clear() replaced them."""
        stack = self._stacks[k]
        held = stack["momentum"]
        params = stack["params"]
        states = [self.state[p].get("momentum_buffer") for p in params]
        if held is not None and all(s is not None and s.data_ptr() == v.data_ptr()
                                    for s, v in zip(states, self._slots(held, params))):
            return held
        fresh = torch.zeros_like(stack["grads"])
        slots = self._slots(fresh, params)
        for p, slot, state in zip(params, slots, states):
            if state is not None:
                slot.copy_(state)
            self.state[p]["momentum_buffer"] = slot
        stack["momentum"] = fresh
        return fresh

    # ------------------------------------------------------------ the step

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        found_inf = getattr(self, "found_inf", None)
        for group in self.param_groups:
            if group["kind"] == ADAMW:
                self._adamw(group, found_inf)
        if self._muon_index is not None:
            group = self.param_groups[self._muon_index]
            skip = found_inf.bool() if found_inf is not None else None
            pending = [self._launch(k, group, skip) for k in range(len(self._stacks))]
            for k, ortho in enumerate(pending):
                self._apply(k, group, ortho() if callable(ortho) else ortho, found_inf)
        return loss

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
        adam(params, grads, exp_avgs, exp_avg_sqs, [], steps, foreach=None if fused else True, fused=fused or None,
             found_inf=found_inf if fused else None, grad_scale=None, decoupled_weight_decay=True, amsgrad=False,
             beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
             maximize=False)

    def _launch(self, k: int, group: dict[str, Any], skip: torch.Tensor | None) -> Any:
        """Stack ``k``'s momentum and this rank's share of its orthogonalisation: the orthogonalised stack, or
        (several ranks) what returns it once the shares are gathered (the next stack is computed meanwhile)."""
        stack = self._stacks[k]
        params = stack["params"]
        grads = stack["grads"]
        torch._foreach_copy_(self._slots(grads, params),
                             [p.grad if p.grad is not None else torch.zeros_like(p) for p in params])
        momentum = self.momentum_stack(k)
        beta = group["momentum"]
        # a skipped step's momentum moves towards itself: unchanged (its NaN gradient never enters)
        update = grads if skip is None else torch.where(skip, momentum, grads)
        momentum.lerp_(update, 1 - beta)
        update.lerp_(momentum, beta)  # Nesterov: the gradient pulled towards the new momentum
        if self.shard is None:
            return self._orthogonalize(update, stack["method"], self.dtype)
        share = stack["shape"][0] // self.shard.world_size
        rank = self.shard.rank
        mine = self._orthogonalize(update[rank * share:(rank + 1) * share], stack["method"], self.dtype)
        gathered = torch.empty((stack["shape"][0], *mine.shape[1:]), dtype=mine.dtype, device=mine.device)
        wait = self.shard.all_gather_into(gathered, mine.contiguous(), "gathering Muon's orthogonalised updates")

        def done() -> torch.Tensor:
            wait()
            return gathered

        return done

    def _apply(self, k: int, group: dict[str, Any], ortho: torch.Tensor, found_inf: torch.Tensor | None) -> None:
        """Decoupled weight decay, then each matrix's step along its slot of the orthogonalised stack."""
        stack = self._stacks[k]
        params = stack["params"]
        lr = group["lr"] * group["lr_ratio"]
        scales = stack["scales"] * -lr  # √max(1, rows/cols) per matrix: the same RMS step for tall ones
        if found_inf is not None:
            scales = scales * (1 - found_inf)
        step = ortho[:len(params)] * scales  # in the parameters' dtype (the stack may be bf16)
        decay = lr * group["weight_decay"]  # lr may be a device scalar (a CUDA graph's): never tested for truth
        if group["weight_decay"] and group["lr_ratio"]:
            factor = 1 - decay if found_inf is None else (1 - decay * (1 - found_inf)).to(params[0].dtype)
            torch._foreach_mul_(params, factor)
        torch._foreach_add_(params, self._slots(step, params))
