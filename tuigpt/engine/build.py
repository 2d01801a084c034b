"""Setting a run up: device, data, model, optimizer and batch sampler, restored from a checkpoint on resume.

Everything that can fail on the user's input fails here, as a UserError, before any thread starts.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuigpt.engine import checkpointing as ckpt
from tuigpt.engine.auto import low_precision_candidate
from tuigpt.engine.data import BatchSampler, TokenData, load_config_data
from tuigpt.engine.device import DeviceSetup, can_compile, resolve_device, setup_device
from tuigpt.engine.distributed import Cluster, rank_seed
from tuigpt.engine.memory import check_fits
from tuigpt.engine.model import GPT, ModelArgs, padded_vocab
from tuigpt.engine.optimizers import make_optimizer
from tuigpt.engine.schedule import unfinished_schedule
from tuigpt.engine.sources import check_tokenizer, fit_config, load_source, open_source, source_args
from tuigpt.run.config import RESUME, SCRATCH, SWITCHES, TrainConfig
from tuigpt.run.errors import UserError
from tuigpt.run.events import Notice
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
    run_seconds: float | None = 0.0  # the run's wall time before this session (None: not kept)
    eval_seconds: float = 0.0
    checkpoint_seconds: float = 0.0
    lr_scale: float = 1.0  # left by on_nan: rewind in an earlier session
    plan_state: dict[str, Any] | None = None  # a run that ends at a time: the resumed checkpoint's plan
    nan_rewinds: int = 0
    notices: list[str | Notice] = field(default_factory=list)


def model_args(config: TrainConfig, data: TokenData) -> ModelArgs:
    """The model a config trains on this data (its vocabulary padded for fast matmuls)."""
    return ModelArgs(vocab_size=padded_vocab(data.tokenizer.vocab_size), block_size=config.block_size,
                     n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd, dropout=config.dropout,
                     bias=config.bias, **{key: getattr(config, key) for key in SWITCHES})


def measure_auto(config: TrainConfig) -> DeviceSetup:
    """`tuigpt calibrate CONFIG`: time the dtype and compile trials of this config again now, whatever its dtype
    and compile keys say, and cache the answers for its runs."""
    data = load_config_data(config)
    as_auto = dataclasses.replace(config, dtype="auto", compile="auto")
    return setup_device(as_auto, model_args(config, data), recalibrate=True)


@dataclass(frozen=True)
class Choices:
    """What a config trains with here, and the alternatives worth timing against it (tuigpt tune)."""

    dtype: str  # the dtype the config resolves to (auto: measured, cached)
    compiled: bool
    low_precision: str | None  # the 16-bit dtype this device could try, None where float32 is the only one
    can_compile: bool


def resolved_choices(config: TrainConfig) -> Choices:
    """The config's dtype and compile as a run of it would resolve them (running the trials if not cached)."""
    data = load_config_data(config)
    setup = setup_device(config, model_args(config, data))
    return Choices(setup.precision.name, setup.compiled, low_precision_candidate(setup.device)[0],
                   can_compile(setup.device))


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
    done = int(point.checkpoint["iter_num"]) if point is not None else 0
    built = assemble(config, cluster, source=source, resumed=point.checkpoint if point is not None else None,
                     where=str(checkpoints.run_dir),
                     remaining_iters=None if config.max_iters is None else max(0, config.max_iters - done))
    built.notices = notices + built.notices
    if point is not None:
        built.notices += point.notices
        _restore(built, point.checkpoint, checkpoints, rank, world_size, point.path or checkpoints.run_dir.last)
        if point.set_aside is not None and point.set_aside[1] is not None:
            # best.pt holds the finished plan's cooled model: only a better val replaces it
            built.best_val_loss = min(point.set_aside[1], built.best_val_loss or point.set_aside[1])
    if (unfinished := unfinished_schedule(config)) is not None:  # a warning: a run can only be set up right at start
        built.notices.append(Notice(level="warning", message=unfinished))
    if rank == 0:  # everything is checked: only now is the run directory touched (under the run's lock)
        checkpoints.check_room(built.model)
        checkpoints.remove_stale_temp_files()
        if point is not None and point.set_aside is not None:
            _set_finished_plan_aside(checkpoints, built.iter_num, point.set_aside[0])
        if point is None and (moved := set_aside(checkpoints.run_dir.metrics)) is not None:
            built.notices.append(f"an earlier start of this run ended before its first checkpoint: its records "
                                 f"were moved to {moved.name}, and this run starts a fresh history")
    return built


def _set_finished_plan_aside(checkpoints: ckpt.CheckpointManager, stable_iter: int, last_iter: int) -> None:
    """A resume from stable.pt: the finished plan's last.pt and the records of its cooldown are kept under their
    final-<iteration> names (a name already taken gets -2, -3: nothing is overwritten)."""
    from tuigpt.run.metrics_log import cut_after

    run = checkpoints.run_dir
    model, records = run.path / ckpt.final_name(last_iter), run.path / ckpt.final_name(last_iter, "metrics")
    n = 1
    while model.exists() or records.exists():
        n += 1
        model = run.path / ckpt.final_name(last_iter).replace(".pt", f"-{n}.pt")
        records = run.path / ckpt.final_name(last_iter, "metrics").replace(".jsonl", f"-{n}.jsonl")
    os.replace(run.last, model)
    cut_after(run.metrics, stable_iter, keep=records)


def assemble(config: TrainConfig, cluster: Cluster | None = None, *, source: Any = None,
             resumed: dict[str, Any] | None = None, where: str = "", remaining_iters: int | None = None) -> Built:
    """Device, data, model, optimizer and batch sampler for ``config``, checked; no run directory is touched
    (``tuigpt netcheck`` times the same model a run would train). ``source``: init_from's weights, loaded;
    ``resumed``: the checkpoint a resume continues (its model shape and tokenizer), restored by the caller."""
    rank = cluster.rank if cluster is not None else 0
    world_size = cluster.world_size if cluster is not None else 1
    split = split_batch(config.batch_size, config.gradient_accumulation_steps, world_size)
    if split is None:
        raise UserError(unsplittable_fix(config.batch_size, config.gradient_accumulation_steps, world_size))
    data = load_config_data(config)
    data.check_block_size(config.block_size)
    if resumed is not None and resumed["tokenizer"] != data.tokenizer.to_meta():
        raise UserError(f"cannot resume {where}: the data's tokenizer vocabulary differs from the "
                        f"checkpoint's (different text or tokenizer); resume with the original data")
    if source is not None:
        check_tokenizer(source, data.tokenizer, config.init_from)
        args = source_args(source, config)
    elif resumed is not None:  # the saved model (GELU and vocabulary included), with this session's dropout
        args = ModelArgs(**{**resumed["model_args"], "dropout": config.dropout})
    else:
        args = model_args(config, data)
    device = cluster.device if cluster is not None else resolve_device(config.device)
    check_fits(args, split.micro_batch, True, device)  # the lowest estimate, before a trial allocates anything
    # dtype and compile "auto" time this model here before it is built (the trials leave the RNG as it was)
    setup = setup_device(config, args, cluster, split, remaining_iters=remaining_iters)
    check_fits(args, split.micro_batch, setup.precision.autocast, device)
    torch.manual_seed(config.seed)
    model = GPT(args)
    if source is not None:
        load_source(model, source)
    model = model.to(device)
    optimizer, how = make_optimizer(model, config, device, setup.precision.name, cluster, setup.threads)
    scaler = torch.amp.GradScaler(device.type, enabled=setup.precision.name == "float16")
    sampler = BatchSampler(data, config.block_size, split.micro_batch, device, seed=rank_seed(config.seed, rank))
    if rank:  # the same initial weights everywhere, but each rank its own dropout masks
        torch.manual_seed(config.seed + 1_000_003 * rank)
    return Built(config, setup, data, args, model, optimizer, scaler, sampler, split, notices=[how] if how else [])


def _restore(built: Built, checkpoint: dict[str, Any], checkpoints: ckpt.CheckpointManager, rank: int,
             world_size: int, path: Path) -> None:
    if built.data.tokenizer.vocab_size > built.model_args.vocab_size:
        raise UserError(f"cannot resume {checkpoints.run_dir}: the model has {built.model_args.vocab_size} tokens, "
                        f"the data's tokenizer {built.data.tokenizer.vocab_size}; resume with the original data")
    config = built.config
    ckpt.restore_weights(checkpoint, path, built.model, built.optimizer, built.scaler, config)
    built.iter_num = int(checkpoint["iter_num"])
    built.best_val_loss = checkpoint.get("best_val_loss")
    built.last_val_loss = checkpoint.get("last_val_loss")
    built.train_seconds = float(checkpoint.get("train_seconds", 0.0))
    # the run's wall, eval and checkpoint time in its earlier sessions (a checkpoint written before they were kept:
    # wall unknown, None; the model then counts it from the history)
    run_seconds = checkpoint.get("run_seconds")
    built.run_seconds = float(run_seconds) if run_seconds is not None else None
    built.eval_seconds = float(checkpoint.get("eval_seconds", 0.0))
    built.checkpoint_seconds = float(checkpoint.get("checkpoint_seconds", 0.0))
    built.lr_scale, built.nan_rewinds = float(checkpoint.get("lr_scale", 1.0)), int(checkpoint.get("nan_rewinds", 0))
    built.plan_state = checkpoint.get("plan")
    if built.nan_rewinds:
        built.notices.append(f"resume: the learning rate stays scaled by {built.lr_scale:g} after "
                             f"{built.nan_rewinds} NaN rewind(s)")
    ckpt.restore_rng(checkpoint, rank, config.seed, built.iter_num)
    if "sampler" in checkpoint and config.batch_size == checkpoint["config"]["batch_size"]:
        built.sampler, note = ckpt.restore_sampler(checkpoint, built.sampler, rank, world_size, built.iter_num)
        if note:
            built.notices.append(note)
