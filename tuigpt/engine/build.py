"""Setting a run up: device, data, model, optimizer and batch sampler, restored from a checkpoint on resume.

Everything that can fail on the user's input fails here, as a UserError, before any thread starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from tuigpt.engine import checkpointing as ckpt
from tuigpt.engine.data import BatchSampler, TokenData, load_dataset
from tuigpt.engine.device import DeviceSetup, setup_device
from tuigpt.engine.distributed import Cluster, rank_seed
from tuigpt.engine.memory import check_fits
from tuigpt.engine.model import GPT, ModelArgs
from tuigpt.run.config import TrainConfig
from tuigpt.run.errors import UserError


@dataclass
class Built:
    """The pieces a trainer trains with, and where a resumed run stands."""

    config: TrainConfig
    setup: DeviceSetup
    data: TokenData
    model_args: ModelArgs
    model: GPT
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    sampler: BatchSampler
    iter_num: int = 0
    best_val_loss: float | None = None
    last_val_loss: float | None = None
    train_seconds: float = 0.0
    notices: list[str] = field(default_factory=list)


def build(config: TrainConfig, checkpoints: ckpt.CheckpointManager, *, resume: bool,
          cluster: Cluster | None = None) -> Built:
    """Everything a run needs, checked; on resume, restored from last.pt with the resume policy applied."""
    rank = cluster.rank if cluster is not None else 0
    world_size = cluster.world_size if cluster is not None else 1
    checkpoints.remove_stale_temp_files()
    point = checkpoints.open_resume(config) if resume else None
    if point is None:
        checkpoints.refuse_overwrite()
    else:
        config = point.config
    built = assemble(config, cluster)
    if point is not None:
        built.notices += point.notices
        _restore(built, point.checkpoint, checkpoints, rank, world_size)
    return built


def assemble(config: TrainConfig, cluster: Cluster | None = None) -> Built:
    """Device, data, model, optimizer and batch sampler for ``config``, checked; no run directory is touched
    (``tuigpt netcheck`` times the same model a run would train)."""
    rank = cluster.rank if cluster is not None else 0
    check_accumulation(config, cluster.world_size if cluster is not None else 1)
    setup = setup_device(config, cluster.device if cluster is not None else None,
                         cluster.local_world_size if cluster is not None else 1)
    torch.manual_seed(config.seed)
    data = load_dataset(config.dataset, config.data_path, config.tokenizer)
    data.check_block_size(config.block_size)
    vocab = data.tokenizer.vocab_size
    if vocab > 1024:  # pad large vocabularies to a multiple of 64 for faster matmuls (nanoGPT's 50304)
        vocab = (vocab + 63) // 64 * 64
    args = ModelArgs(vocab_size=vocab, block_size=config.block_size, n_layer=config.n_layer, n_head=config.n_head,
                     n_embd=config.n_embd, dropout=config.dropout, bias=config.bias)
    device = setup.device
    check_fits(args, config.batch_size, setup.precision.autocast, device)
    model = GPT(args).to(device)
    optimizer = torch.optim.AdamW(model.param_groups(config.weight_decay), lr=config.learning_rate,
                                  betas=(config.beta1, config.beta2), fused=True if device.type == "cuda" else None)
    scaler = torch.amp.GradScaler(device.type, enabled=setup.precision.name == "float16")
    sampler = BatchSampler(data, config.block_size, config.batch_size, device, seed=rank_seed(config.seed, rank))
    if rank:  # the same initial weights everywhere, but each rank its own dropout masks
        torch.manual_seed(config.seed + 1_000_003 * rank)
    return Built(config, setup, data, args, model, optimizer, scaler, sampler)


def check_accumulation(config: TrainConfig, world_size: int) -> None:
    """Each rank runs gradient_accumulation_steps / world_size micro-steps: it must divide."""
    if config.gradient_accumulation_steps % world_size:
        raise UserError(f"gradient_accumulation_steps={config.gradient_accumulation_steps} is not divisible by "
                        f"the {world_size} ranks: each rank runs gradient_accumulation_steps / ranks "
                        f"micro-steps; use a multiple of {world_size}")


def _restore(built: Built, checkpoint: dict[str, Any], checkpoints: ckpt.CheckpointManager, rank: int,
             world_size: int) -> None:
    if checkpoint["tokenizer"] != built.data.tokenizer.to_meta():
        raise UserError(f"cannot resume {checkpoints.run_dir}: the data's tokenizer vocabulary differs from the "
                        f"checkpoint's (different text or tokenizer); resume with the original data")
    saved_args = ModelArgs(**checkpoint["model_args"])
    if saved_args.vocab_size != built.model_args.vocab_size:
        raise UserError(f"cannot resume {checkpoints.run_dir}: vocabulary size {saved_args.vocab_size} in the "
                        f"checkpoint, {built.model_args.vocab_size} now; resume with the original data")
    config = built.config
    ckpt.restore_weights(checkpoint, checkpoints.run_dir.last, built.model, built.optimizer, built.scaler, config)
    built.iter_num = int(checkpoint["iter_num"])
    built.best_val_loss = checkpoint.get("best_val_loss")
    built.last_val_loss = checkpoint.get("last_val_loss")
    built.train_seconds = float(checkpoint.get("train_seconds", 0.0))
    ckpt.restore_rng(checkpoint, rank, config.seed, built.iter_num)
    if "sampler" in checkpoint and config.batch_size == checkpoint["config"]["batch_size"]:
        built.sampler, note = ckpt.restore_sampler(checkpoint, built.sampler, rank, world_size, built.iter_num)
        if note:
            built.notices.append(note)
