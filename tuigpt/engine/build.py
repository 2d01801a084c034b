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
from tuigpt.engine.model import GPT, ModelArgs, padded_vocab
from tuigpt.engine.sources import check_tokenizer, fit_config, load_source, open_source, source_args
from tuigpt.run.config import RESUME, SCRATCH, TrainConfig
from tuigpt.run.errors import UserError
from tuigpt.run.metrics_log import set_aside
from tuigpt.run.numbers import BatchSplit, split_batch, unsplittable_fix


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
    split: BatchSplit  # how this rank runs its share of an iteration (see run.numbers.split_batch)
    iter_num: int = 0
    best_val_loss: float | None = None
    last_val_loss: float | None = None
    train_seconds: float = 0.0
    lr_scale: float = 1.0  # left by on_nan: rewind in an earlier session
    nan_rewinds: int = 0
    notices: list[str] = field(default_factory=list)


def build(config: TrainConfig, checkpoints: ckpt.CheckpointManager, *, resume: bool,
          cluster: Cluster | None = None) -> Built:
    """Everything a run needs, checked; on resume, restored from last.pt with the resume policy applied."""
    rank = cluster.rank if cluster is not None else 0
    world_size = cluster.world_size if cluster is not None else 1
    if config.init_from == RESUME and not resume:
        raise UserError("init_from=resume continues the run in its folder: start it with --resume")
    point = checkpoints.open_resume(config) if resume else None
    source, notices = None, []
    if point is None:
        checkpoints.refuse_overwrite()
        if config.init_from != SCRATCH:  # weights from another model: it fixes the shape
            source = open_source(config.init_from)
            config, notices = fit_config(config, source)
    else:
        config = point.config
    split = split_batch(config.batch_size, config.gradient_accumulation_steps, world_size)
    if split is None:
        raise UserError(unsplittable_fix(config.batch_size, config.gradient_accumulation_steps, world_size))
    setup = setup_device(config, cluster.device if cluster is not None else None,
                         cluster.local_world_size if cluster is not None else 1, split.micro_batch)
    torch.manual_seed(config.seed)
    data = load_dataset(config.dataset, config.data_path, config.tokenizer)
    data.check_block_size(config.block_size)
    if point is not None and point.checkpoint["tokenizer"] != data.tokenizer.to_meta():
        raise UserError(f"cannot resume {checkpoints.run_dir}: the data's tokenizer vocabulary differs from the "
                        f"checkpoint's (different text or tokenizer); resume with the original data")
    if source is not None:
        check_tokenizer(source, data.tokenizer, config.init_from)
        args = source_args(source, config)
    elif point is not None:  # the saved model (GELU and vocabulary included), with this session's dropout
        args = ModelArgs(**{**point.checkpoint["model_args"], "dropout": config.dropout})
    else:
        args = ModelArgs(vocab_size=padded_vocab(data.tokenizer.vocab_size), block_size=config.block_size,
                         n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd, dropout=config.dropout,
                         bias=config.bias)
    device = setup.device
    check_fits(args, split.micro_batch, setup.precision.autocast, device)
    model = GPT(args)
    if source is not None:
        load_source(model, source)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.param_groups(config.weight_decay), lr=config.learning_rate,
                                  betas=(config.beta1, config.beta2), fused=True if device.type == "cuda" else None)
    scaler = torch.amp.GradScaler(device.type, enabled=setup.precision.name == "float16")
    sampler = BatchSampler(data, config.block_size, split.micro_batch, device, seed=rank_seed(config.seed, rank))
    if rank:  # the same initial weights everywhere, but each rank its own dropout masks
        torch.manual_seed(config.seed + 1_000_003 * rank)
    built = Built(config, setup, data, args, model, optimizer, scaler, sampler, split, notices=notices)
    if point is not None:
        built.notices += point.notices
        _restore(built, point.checkpoint, checkpoints, rank, world_size)
    if rank == 0:  # everything is checked: only now is the run directory touched (under the run's lock)
        checkpoints.check_room(model)
        checkpoints.remove_stale_temp_files()
        if point is None and (moved := set_aside(checkpoints.run_dir.metrics)) is not None:
            built.notices.append(f"an earlier start of this run ended before its first checkpoint: its records "
                                 f"were moved to {moved.name}, and this run starts a fresh history")
    return built


def _restore(built: Built, checkpoint: dict[str, Any], checkpoints: ckpt.CheckpointManager, rank: int,
             world_size: int) -> None:
    if built.data.tokenizer.vocab_size > built.model_args.vocab_size:
        raise UserError(f"cannot resume {checkpoints.run_dir}: the model has {built.model_args.vocab_size} tokens, "
                        f"the data's tokenizer {built.data.tokenizer.vocab_size}; resume with the original data")
    config = built.config
    ckpt.restore_weights(checkpoint, checkpoints.run_dir.last, built.model, built.optimizer, built.scaler, config)
    built.iter_num = int(checkpoint["iter_num"])
    built.best_val_loss = checkpoint.get("best_val_loss")
    built.last_val_loss = checkpoint.get("last_val_loss")
    built.train_seconds = float(checkpoint.get("train_seconds", 0.0))
    built.lr_scale, built.nan_rewinds = float(checkpoint.get("lr_scale", 1.0)), int(checkpoint.get("nan_rewinds", 0))
    if built.nan_rewinds:
        built.notices.append(f"resume: the learning rate stays scaled by {built.lr_scale:g} after "
                             f"{built.nan_rewinds} NaN rewind(s)")
    ckpt.restore_rng(checkpoint, rank, config.seed, built.iter_num)
    if "sampler" in checkpoint and config.batch_size == checkpoint["config"]["batch_size"]:
        built.sampler, note = ckpt.restore_sampler(checkpoint, built.sampler, rank, world_size, built.iter_num)
        if note:
            built.notices.append(note)
