"""Checkpoint policy: what a checkpoint holds, when one is written, and what a resume may change.

Byte-level I/O (atomic writes, safe loads, RNG capture) is :mod:`tuigpt.engine.checkpoint`. The resume
policy is the config's own table (:data:`tuigpt.run.config.RESUME_POLICY`): a key that must match
refuses the resume, an applied change is reported, a kept key keeps the checkpoint's value.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from tuigpt.engine.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    read_torch_file,
    restore_rng_state,
    save_checkpoint,
)
from tuigpt.engine.checkpoint_check import check_optimizer, check_structure, first_not_finite
from tuigpt.engine.data import BatchSampler, TokenData
from tuigpt.engine.device import resolve_device
from tuigpt.engine.distributed import reseed
from tuigpt.engine.nanogpt import from_nanogpt, is_nanogpt
from tuigpt.engine.optimizers import apply_hyperparameters
from tuigpt.run import fmt
from tuigpt.run.commands import CheckpointNow, Command
from tuigpt.run.config import (
    APPLY,
    ARCHS,
    KEEP,
    KEEP_WHY,
    MATCH,
    MODEL_KEYS,
    RESUME,
    RESUME_POLICY,
    SCRATCH,
    TOKENS_PER_ITER_KEYS,
    TrainConfig,
)
from tuigpt.run.errors import UserError
from tuigpt.run.events import CheckpointWritten, Event, IterationStats
from tuigpt.run.files import atomic_link, remove_stale_temp_files
from tuigpt.run.fmt import clip
from tuigpt.run.rundir import BEST, LAST, STABLE, RunDir

NANOGPT_CKPT = "ckpt.pt"  # what nanoGPT writes into its out_dir: a run folder of nanoGPT's resumes from it


@dataclass
class ResumePoint:
    """A checked resume checkpoint, the config to train with, and what to tell the user about it."""

    checkpoint: dict[str, Any]
    config: TrainConfig
    notices: list[str] = field(default_factory=list)
    path: Path | None = None  # the file it was read from (last.pt, or nanoGPT's ckpt.pt): what errors name
    # continued from stable.pt: the finished plan's last.pt (kept aside by the build), its iteration and best val
    set_aside: tuple[int, float | None] | None = None


AUTO_KEYS = ("device", "dtype", "compile")  # decided when the run starts; its first line says what and why


def _same_after_auto(key: str, old: Any, new: Any) -> bool:
    """Whether a resume's "changed" would be no change at all: a device "auto" that resolves to the one the checkpoint
    names (nanoGPT's ckpt.pt says "cuda" or "cpu", a .py config here leaves device "auto"); dtype and compile "auto"
    are measured later and reported on the run's first line, so "changed from 'bfloat16' to 'auto'" says nothing."""
    if key not in AUTO_KEYS or "auto" not in (old, new):
        return False
    if key != "device":
        return True
    try:
        return resolve_device(new).type == resolve_device(old).type
    except UserError:  # a device that is not here: the change is real (and set-up says more)
        return False


class CheckpointManager:
    """Checkpoints of one run directory: when an eval writes one, and writing it (only rank 0 writes)."""

    def __init__(self, run_dir: RunDir, rank: int = 0, file_mode: int = 0o600) -> None:
        self.run_dir = run_dir
        self.rank = rank
        self.file_mode = file_mode
        self.at_evals = True  # False: evals write no checkpoint (eval_only)
        self.always = True  # always_save_checkpoint: every eval writes last.pt, not only one that improved
        self.at_start = False  # the eval of the untrained model (or of a resume at 0) writes one too

    # ------------------------------------------------------------ before training

    def remove_stale_temp_files(self) -> None:
        """Temp files of a checkpoint write that a kill interrupted (the real files are intact)."""
        for name in (LAST, BEST, STABLE):
            remove_stale_temp_files(self.run_dir.path, name)

    def check_room(self, model: torch.nn.Module) -> None:
        """UserError when the disk cannot hold one more checkpoint of this model (weights and two AdamW moments;
        a new file is written beside the old one before replacing it), found before anything is written."""
        needed = 3 * sum(p.numel() * p.element_size() for p in model.parameters()) + (1 << 20)
        try:
            free = shutil.disk_usage(self.run_dir.path).free
        except OSError:
            return  # an unreadable figure skips the check; a failed write is still reported (exit 4)
        if free < needed:
            raise UserError(f"the disk of {clip(str(self.run_dir), 200)} has {fmt.size(free)} free, and a checkpoint "
                            f"of this model needs about {fmt.size(needed)}: free disk space or pick another out_dir")

    def refuse_overwrite(self) -> None:
        if self.run_dir.last.exists():
            raise UserError(f"{self.run_dir} already holds a run (last.pt): continue it with --resume, start a new "
                            f"one with --run_name=NEW_NAME, or delete that folder")

    def open_resume(self, config: TrainConfig) -> ResumePoint:
        """Load last.pt and check it against ``config`` key by key (every failure is a UserError)."""
        path = self.run_dir.last
        notices: list[str] = []
        if path.exists():
            checkpoint = load_checkpoint(path)
        elif (self.run_dir.path / NANOGPT_CKPT).is_file():
            path = self.run_dir.path / NANOGPT_CKPT
            checkpoint = self._open_nanogpt(path)
            notices += checkpoint["notices"]
        else:
            raise UserError(f"nothing to resume: {path} does not exist (train without --resume first, or check "
                            f"run_name/out_dir)")
        saved, _, _ = check_structure(checkpoint, path, for_training=True)
        if saved.init_from not in (SCRATCH, RESUME):  # the model came from the source model, not the config
            config = dataclasses.replace(config, **{k: getattr(saved, k) for k in (*MODEL_KEYS, "arch")})
        kept: dict[str, Any] = {}
        mismatched = [key for key, policy in RESUME_POLICY.items()
                      if policy == MATCH and getattr(saved, key) != getattr(config, key)]
        if mismatched:  # every one at once: a nanoGPT config's defaults can differ in four keys
            was = ", ".join(f"{key} was {getattr(saved, key)!r} in the checkpoint but is {getattr(config, key)!r} now"
                            for key in mismatched)
            # --arch brings its switches back with it: only a switch the saved arch does not imply is named too
            implied = ARCHS.get(saved.arch, {}) if "arch" in mismatched else {}
            fix = " ".join(f"--{key}={getattr(saved, key)}" for key in mismatched
                           if key not in implied or implied[key] != getattr(saved, key))
            raise UserError(f"cannot resume {self.run_dir}: {was}; resume with {fix}, or start a new run with "
                            f"--run_name=NEW_NAME")
        for key, policy in RESUME_POLICY.items():
            old, new = getattr(saved, key), getattr(config, key)
            if old == new or policy == MATCH or _same_after_auto(key, old, new):
                continue
            if policy == KEEP:
                kept[key] = old
                if not (key == "init_from" and new == RESUME):
                    notices.append(f"resume: {key}={new!r} ignored, {old!r} kept from the checkpoint "
                                   f"({KEEP_WHY[key]}); start a new run to change it")
            elif policy == APPLY:
                note = " (changes the tokens per iteration)" if key in TOKENS_PER_ITER_KEYS else ""
                if key == "device" and new == "auto":
                    note = f" ({resolve_device(new).type} here)"
                notices.append(f"resume: {key} changed from {old!r} to {new!r}{note}")
        point = ResumePoint(checkpoint, dataclasses.replace(config, **kept) if kept else config, notices, path)
        if config.planned:
            self._from_stable(point)
        cap = point.config.max_iters
        if cap is not None and point.checkpoint["iter_num"] >= cap and not config.eval_only:
            raise UserError(f"the run in {self.run_dir} already reached iteration {point.checkpoint['iter_num']}: "
                            f"raise max_iters (e.g. --max_iters={point.checkpoint['iter_num'] * 2}) to train further")
        return point

    def _from_stable(self, point: ResumePoint) -> None:
        """A resume planned to a new end goes on from stable.pt when last.pt is past the cooldown its plan began
        there: the stable phase continues and the cooldown is planned again for the new end (cooling down an
        already cooled model would waste it). The finished plan's last.pt is kept aside by the build."""
        from tuigpt.engine.planner import continues

        saved, config = point.checkpoint.get("plan"), point.config
        kind, text = ("budget", config.time_budget) if config.time_budget is not None else ("deadline", config.deadline)
        path = self.run_dir.path / STABLE
        if not isinstance(saved, dict) or saved.get("stable_iter") is None or continues(saved, kind, str(text)) \
                or not path.is_file():
            return
        last_iter = int(point.checkpoint["iter_num"])
        stable = load_checkpoint(path)
        check_structure(stable, path, for_training=True)
        if not int(stable["iter_num"]) < last_iter:
            return
        best = point.checkpoint.get("best_val_loss")
        point.checkpoint, point.set_aside, point.path = stable, (last_iter, best), path
        point.notices.append(
            f"resume: continuing from {STABLE} (iteration {stable['iter_num']:,}, where the last plan's cooldown "
            f"began): the stable phase goes on and the cooldown is planned again for the new end; the cooled-down "
            f"{LAST} of iteration {last_iter:,} is kept as {final_name(last_iter)}, its cooldown's records as "
            f"{final_name(last_iter, 'metrics')}")

    @staticmethod
    def _open_nanogpt(path: Path) -> dict[str, Any]:
        state = read_torch_file(path)
        if not is_nanogpt(state):
            raise UserError(f"{path} is not a nanoGPT checkpoint (model, model_args, iter_num): nothing to resume")
        checkpoint = from_nanogpt(state, path)
        best = checkpoint["best_val_loss"]
        checkpoint["notices"].append(
            f"resume: continuing nanoGPT's {path} at iteration {checkpoint['iter_num']}"
            f"{f' (best val loss {best:.4f})' if best is not None else ''}; last.pt and best.pt are written beside "
            f"it, {path.name} is left as it is")
        return checkpoint

    # ------------------------------------------------------------ during training

    def should_save(self, step: int, is_best: bool) -> bool:
        """Whether the eval at ``step`` writes last.pt: always (always_save_checkpoint) or when val loss improved;
        the untrained model's (step 0 of a fresh run) only when ``at_start``."""
        return self.at_evals and (step > 0 or self.at_start) and (self.always or is_best)

    def write(self, state: dict[str, Any], name: str = LAST) -> tuple[Path, float]:
        """Write a checkpoint atomically: (its path, seconds taken). OSError when it could not be written
        (the previous file is untouched)."""
        path = self.run_dir.path / name
        t0 = time.perf_counter()
        save_checkpoint(state, path, self.file_mode)
        return path, time.perf_counter() - t0

    def link(self, source: str, name: str) -> tuple[Path, float] | None:
        """``name`` as the same file as ``source`` (best.pt when last.pt was just written at a better val): no
        second write of the same bytes. (its path, seconds), or None where the file system has no hard links."""
        path = self.run_dir.path / name
        t0 = time.perf_counter()
        if not atomic_link(self.run_dir.path / source, path):
            return None
        return path, time.perf_counter() - t0


def final_name(iteration: int, what: str = "model") -> str:
    """Where a finished plan's last.pt (or its cooldown's metrics records) is kept when a resume goes on from
    stable.pt."""
    return f"final-{iteration}.pt" if what == "model" else f"metrics.final-{iteration}.jsonl"


def not_finite(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> str | None:
    """The first weight or AdamW moment holding a NaN or Inf ("optimizer exp_avg_sq of transformer.h.0..."), or
    None: a checkpoint of such a state would be worse than none (a resume would train on it)."""
    names = {id(p): name for name, p in model.named_parameters()}
    tensors = list(model.named_parameters())
    for p, entry in optimizer.state.items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors.append((f"optimizer {key} of {names.get(id(p), 'a parameter')}", value))
    return first_not_finite((name, t.detach()) for name, t in tensors)


def make_state(*, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               model_args: dict[str, Any], config: TrainConfig, iter_num: int, best_val_loss: float | None,
               last_val_loss: float | None, data: TokenData, rng: dict[str, Any], sampler: dict[str, Any],
               samplers: list[dict[str, Any]], world_size: int, train_seconds: float,
               times: dict[str, float] | None = None, health: dict[str, Any] | None = None, plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a checkpoint holds: tensors and plain values only (loadable with weights_only=True)."""
    return {
        "format": FORMAT_VERSION, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(), "model_args": model_args, "config": config.to_dict(), "iter_num": iter_num,
        # an eval that diverged (NaN/Inf) is stored as none: the weights are finite, and the file must stay loadable
        "best_val_loss": _finite(best_val_loss), "last_val_loss": _finite(last_val_loss),
        "tokenizer": data.tokenizer.to_meta(),
        "dataset": data.dataset, "rng": rng, "sampler": sampler,
        # one state per rank (rank 0's is "sampler" too); a resume on another world size reseeds the rest
        "samplers": samplers, "world_size": world_size, "train_seconds": train_seconds,
        # the run's times so far over its sessions (RUN_TIMES): a resume continues them (issue 27: a resumed run's
        # closing line mixed this session's wall time with the run's training time)
        **(times or {}),
        # the NaN rewinds so far and the learning-rate scale they left (a resume keeps them)
        **(health or {}),
        # a run that ends at a time: its end, the run time used, the cooldown's place (engine/planner.py)
        **({"plan": plan} if plan is not None else {}),
    }


def _finite(loss: float | None) -> float | None:
    return loss if loss is not None and math.isfinite(loss) else None


def restore_weights(checkpoint: dict[str, Any], path: Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, config: TrainConfig) -> None:
    """Model, optimizer and scaler state; the resumed run's hyper-parameters (betas, decay) come from the config."""
    check_optimizer(checkpoint, path, optimizer)
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if "scaler" in checkpoint:
            scaler.load_state_dict(checkpoint["scaler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise UserError(f"checkpoint {path} does not fit this model ({str(exc).splitlines()[0][:120]})") from None
    apply_hyperparameters(optimizer, config)


def restore_rng(checkpoint: dict[str, Any], rank: int, seed: int, iter_num: int) -> None:
    """Rank 0 continues the saved random streams; the others (never saved) start fresh per-rank streams."""
    if "rng" in checkpoint and rank == 0:
        restore_rng_state(checkpoint["rng"])
    elif rank:
        torch.manual_seed(reseed(seed, rank, iter_num))


def restore_sampler(checkpoint: dict[str, Any], sampler: BatchSampler, rank: int, world_size: int,
                    iter_num: int) -> tuple[BatchSampler, str | None]:
    """This rank's saved sampler state, or a deterministic fresh seed when the checkpoint came from fewer
    ranks; (the sampler, a notice when the world size changed)."""
    states = checkpoint.get("samplers") or [checkpoint["sampler"]]
    saved_world = int(checkpoint.get("world_size", 1))
    if rank < len(states):
        sampler.load_state_dict(states[rank])
    else:
        sampler = BatchSampler(sampler.data, sampler.block_size, sampler.batch_size, sampler.device,
                               seed=reseed(checkpoint["config"]["seed"], rank, iter_num))
    if saved_world == world_size and len(states) >= world_size:
        return sampler, None
    fresh = list(range(len(states), world_size))
    note = (f"; rank(s) {', '.join(map(str, fresh))} had no saved batch-sampler state and start from seeds derived "
            f"from seed and iteration {iter_num}" if fresh else "")
    return sampler, (f"resume: the checkpoint was written by {saved_world} rank(s) with {len(states)} saved batch "
                     f"stream(s), this run has {world_size}{note}")


class CheckpointTimer:
    """``checkpoint_every_minutes``: after that long without a last.pt (from any cause: an eval, the `c` key, this),
    asks for one at the next iteration boundary, whatever the eval interval, so a `kill -9` loses at most that much
    training. Fed by the event bus; the checkpoint goes through the command gate, so every rank of several takes it
    at the same iteration."""

    def __init__(self, send: Callable[[Command], Any], minutes: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._send, self.seconds, self._clock = send, minutes * 60.0, clock
        self._since = clock()  # the run's start counts as the last write: the untrained model is not worth one
        self._asked = False

    def __call__(self, event: Event) -> None:
        if self.seconds <= 0:
            return
        if isinstance(event, CheckpointWritten) and Path(event.path).name == LAST:
            self._since, self._asked = self._clock(), False
        elif isinstance(event, IterationStats) and not self._asked and self._clock() - self._since >= self.seconds:
            self._asked = self._send(CheckpointNow(reason="timer")) is None  # refused: one is waiting already
