"""A lower-bound estimate of the memory a training run needs, to refuse runs that obviously cannot fit."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tuigpt.engine.model import ModelArgs
from tuigpt.run.errors import UserError

GiB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    state_bytes: int  # weights, gradients and AdamW moments (fp32)
    activation_bytes: int  # what autograd keeps for the backward pass of one micro-batch
    logits_bytes: int  # the (B, T, vocab) logits, their float copy and gradient

    @property
    def total(self) -> int:
        return self.state_bytes + self.activation_bytes + self.logits_bytes


def estimate_training_memory(args: ModelArgs, batch_size: int, autocast: bool) -> MemoryEstimate:
    """Deliberately low: 16 bytes per parameter, and per layer s·b·h·(34 + 5·a·s/h) activation
    bytes at 16-bit (Korthikanti et al. 2022, "Reducing Activation Recomputation"), doubled for float32.
    """
    d, layers, t, v = args.n_embd, args.n_layer, args.block_size, args.vocab_size
    # blocks, the token embedding (and the head, untied), the position table (none with rotary positions)
    params = 12 * layers * d * d + v * d * (2 if args.untied_head else 1) + (0 if args.rope else t * d)
    per_layer = t * batch_size * d * (34 + 5 * args.n_head * t / d)
    activations = int(layers * per_layer * (1 if autocast else 2))
    logits = 3 * batch_size * t * v * 4
    return MemoryEstimate(state_bytes=16 * params, activation_bytes=activations, logits_bytes=logits)


def available_bytes(device: torch.device) -> int | None:
    """Free memory on the device the run will use (None when it cannot be read)."""
    try:
        if device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(device)
            return int(free)
        if device.type == "cpu":
            import psutil

            return int(psutil.virtual_memory().available)
    except Exception:  # an unreadable figure skips the check rather than blocking a run
        return None
    return None


def check_fits(args: ModelArgs, batch_size: int, autocast: bool, device: torch.device) -> None:
    """UserError with the estimate when the run obviously cannot fit in the device's free memory."""
    available = available_bytes(device)
    if available is None:
        return
    est = estimate_training_memory(args, batch_size, autocast)
    if est.total <= available:
        return
    where = "GPU memory" if device.type == "cuda" else "RAM"
    params = est.state_bytes // 16
    raise UserError(
        f"this model (n_layer={args.n_layer}, n_embd={args.n_embd}, {params / 1e6:,.0f}M parameters) needs at least {est.total / GiB:.1f} GiB to train (weights+grads+AdamW "
        f"{est.state_bytes / GiB:.1f} GiB, activations {(est.activation_bytes + est.logits_bytes) / GiB:.1f} GiB for "
        f"batch_size={batch_size} x block_size={args.block_size}) but only {available / GiB:.1f} GiB of {where} is "
        f"free: lower batch_size (raise gradient_accumulation_steps to keep the batch), block_size, or the model size")
