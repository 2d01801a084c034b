"""Which optimizer trains which parameter, with which hyper-parameters: ``optimizer: adamw | muon``.

``adamw`` is the model's own AdamW (nanoGPT's: 2-D weights decay, gains and biases do not), unchanged, so every
existing config and checkpoint means what it meant. ``muon`` trains the hidden matrices (2-D weights inside the
transformer blocks) with Muon and the rest (embeddings, the output layer, gains, biases) with AdamW at the
schedule's learning rate (:class:`tuigpt.engine.muon.Muon`).
"""

from __future__ import annotations

from typing import Any

import torch

from tuigpt.engine.auto import low_precision_candidate
from tuigpt.engine.distributed import Cluster
from tuigpt.engine.model import GPT
from tuigpt.engine.muon import ADAMW, MUON, Muon
from tuigpt.engine.orthogonalize import plan
from tuigpt.run.config import TrainConfig

ADAMW_EPS = 1e-8  # torch's AdamW default, as the adamw optimizer uses
# torch.optim.Optimizer's methods that torch wraps to keep torch.compile out of them; the wrapper imports
# torch._dynamo on its first call (torch._disable_dynamo)
DYNAMO_WRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def is_hidden_matrix(name: str, p: torch.nn.Parameter) -> bool:
    """A 2-D weight inside a transformer block: what Muon trains (embeddings and the output layer are not hidden)."""
    return p.dim() == 2 and name.startswith("transformer.h.")


def ns_dtype(device: torch.device, dtype: str) -> torch.dtype:
    """The dtype Muon's Newton–Schulz runs in: bf16 where the run trains in bf16 (chosen by measurement with
    ``dtype: auto``) on hardware with native bf16, float32 everywhere else. Never emulated bf16: on a CPU without
    bf16 instructions it runs ~30x slower than float32 (docs/PERFORMANCE.md); never float16, whose range the
    iteration's intermediate products can leave."""
    native = low_precision_candidate(device)[0] == "bfloat16"
    return torch.bfloat16 if dtype == "bfloat16" and native else torch.float32


def skip_dynamo_import() -> None:
    """Spare a run that compiles nothing the import of torch's compiler: building any optimizer imported
    torch._dynamo (torch._disable_dynamo's wrapper around add_param_group), 1.2-1.3 s of every run's start on the
    2-core VM where importing torch itself takes 1.4 s, 1-1.8 s on the GPU hosts (docs/PERFORMANCE.md). The
    wrappers only matter to code that torch.compile traces, and tuigpt compiles the model alone, never code that
    calls its optimizer; so each wrapper is told its first call has run, with the method itself as what it
    calls. A torch whose wrappers differ is left as it is. (torch's AdamW.step imports it on every call:
    tuigpt's AdamW, engine/adamw.py, does not; Muon's step calls torch's functional AdamW.)"""
    for name in DYNAMO_WRAPPED:
        wrapper = getattr(torch.optim.Optimizer, name, None)
        method = getattr(wrapper, "__wrapped__", None)
        code = getattr(wrapper, "__code__", None)
        if method is None or code is None or "__dynamo_disable" not in code.co_consts:
            continue
        if getattr(method, "__dynamo_disable", None) is None:
            method.__dynamo_disable = method  # type: ignore[attr-defined]


def make_optimizer(model: GPT, config: TrainConfig, device: torch.device, dtype: str = "float32",
                   cluster: Cluster | None = None, threads: int = 1) -> tuple[torch.optim.Optimizer, str]:
    """The optimizer ``config`` asks for, over ``model``'s parameters on ``device``, and a line saying how it runs
    (empty for AdamW). ``dtype``: the run's resolved training dtype."""
    skip_dynamo_import()
    if config.optimizer != MUON:
        return model.make_optimizer(config.weight_decay, config.learning_rate, (config.beta1, config.beta2),
                                    device.type), ""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    matrices = [p for n, p in named if is_hidden_matrix(n, p)]
    others = [p for n, p in named if not is_hidden_matrix(n, p)]
    fused = device.type in ("cuda", "cpu")
    adamw = {"kind": ADAMW, "lr": config.learning_rate, "betas": (config.beta1, config.beta2), "eps": ADAMW_EPS,
             "fused": fused}
    groups: list[dict[str, Any]] = [
        {**adamw, "params": [p for p in others if p.dim() >= 2], "weight_decay": config.weight_decay},
        {**adamw, "params": [p for p in others if p.dim() < 2], "weight_decay": 0.0},
    ]
    groups.append({"kind": MUON, "params": matrices, "lr": config.learning_rate, **muon_hyperparameters(config)})
    ns = ns_dtype(device, dtype)
    world = cluster.world_size if cluster is not None else 1
    stacks, measured = plan([(int(p.shape[0]), int(p.shape[1])) for p in matrices], ns, device, threads)
    if cluster is not None and world > 1:  # rank 0's plan everywhere: every rank computes its share alike
        stacks = cluster.gather_objects(stacks, "agreeing on Muon's stacks")[0]
    optimizer = Muon(groups, plan=stacks, dtype=ns, shard=cluster)
    sharded = f", orthogonalisation sharded over {world} ranks" if world > 1 else ""
    line = (f"optimizer: Muon (lr {config.muon_lr:g}, momentum {config.muon_momentum:g}) on {len(matrices)} hidden "
            f"matrices in {len(stacks)} stack(s), Newton–Schulz in {str(ns).removeprefix('torch.')}{sharded}; AdamW "
            f"(lr {config.learning_rate:g}) on {len(others)} other tensors" + (f" | {measured}" if measured else ""))
    return optimizer, line


def muon_hyperparameters(config: TrainConfig) -> dict[str, float]:
    """A Muon group's hyper-parameters from the config (lr_ratio: its peak lr over the schedule's)."""
    return {"lr_ratio": config.muon_lr / config.learning_rate, "momentum": config.muon_momentum,
            "weight_decay": config.muon_weight_decay}


def apply_hyperparameters(optimizer: torch.optim.Optimizer, config: TrainConfig) -> None:
    """After a resume loaded a checkpoint's optimizer state (hyper-parameters included): this session's config's
    (a resume applies betas, weight decay and Muon's keys; the learning rate is the schedule's at every step)."""
    for group in optimizer.param_groups:
        if group.get("kind") == MUON:
            group.update(muon_hyperparameters(config))
            continue
        group["betas"] = (config.beta1, config.beta2)
        group["weight_decay"] = config.weight_decay if group["weight_decay"] else 0.0
