"""TrainConfig: every key a run takes, its default, and the checks made before training starts.

Values come from a YAML file (read with safe_load) and ``--key=value`` overrides,
which go through the same typing and validation. Problems raise UserError with
one line naming the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuigpt.run.errors import UserError
from tuigpt.run.files import read_user_text

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
COMPILE_MODES = ("auto", "true", "false")
DDP_BACKENDS = ("auto", "gloo", "nccl")
MAX_CONFIG_BYTES = 1 << 20  # a config is a page of key: value lines; anything bigger is a mistake


@dataclass
class TrainConfig:
    # --- run and output
    run_name: str = ""  # checkpoints/<run_name>/; empty: the config file's name
    out_dir: str = "checkpoints"  # parent of every run directory
    eval_interval: int = 250  # evaluate (and write last.pt) every this many iterations
    log_interval: int = 10  # one headless line and one metrics.jsonl record every this many iterations
    eval_iters: int = 50  # batches per split averaged by each evaluation
    eval_only: bool = False  # evaluate once and exit (with --resume: the saved model)
    always_save_checkpoint: bool = True  # write last.pt at every eval; false: only when val loss improves
    # --- data
    dataset: str = "shakespeare_char"  # shakespeare_char | shakespeare (gpt2 BPE) | text (your data_path)
    data_path: str | None = None  # FILE, DIR (all *.txt) or GLOB of UTF-8 text to train on instead
    tokenizer: str = "auto"  # auto (the dataset's) | char | gpt2 | any tiktoken encoding name
    # --- batch
    gradient_accumulation_steps: int = 1  # micro-batches summed into one optimizer step
    batch_size: int = 12  # sequences per micro-batch
    block_size: int = 64  # context length in tokens
    # --- model
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0  # 0 for pre-training small models, 0.1-0.2 when over-fitting
    bias: bool = False  # biases in Linear and LayerNorm layers (GPT-2 has them)
    # --- AdamW and schedule
    learning_rate: float = 1e-3  # peak learning rate
    max_iters: int = 2000  # total optimizer steps
    weight_decay: float = 0.1  # applied to 2-D weights only
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # clip gradient norm at this value; 0 disables
    decay_lr: bool = True  # cosine decay to min_lr after warmup; false: constant learning_rate
    warmup_iters: int = 100  # linear warmup steps
    lr_decay_iters: int | None = None  # cosine ends here; empty: max_iters
    min_lr: float | None = None  # floor of the decay; empty: learning_rate / 10
    # --- system
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto (timed here: float32 vs the device's 16-bit dtype) | float32 | bfloat16 | float16
    compile: bool | str = "auto"  # torch.compile: auto (timed here, on where it wins and repays) | true | false
    seed: int = 1337
    num_threads: int = 0  # CPU threads for torch; 0: all physical cores
    telemetry_interval: float = 1.0  # seconds between CPU/GPU telemetry readings; 0 disables
    # --- several processes (torchrun; see docs/DISTRIBUTED.md)
    ddp_backend: str = "auto"  # auto (nccl on CUDA, gloo on CPU) | gloo | nccl
    ddp_timeout: float = 300.0  # seconds a collective may wait for the other ranks before the run fails
    # --- sampling (the `s` key, evals, `tuigpt sample` defaults)
    sample_max_new_tokens: int = 200
    sample_temperature: float = 0.8
    sample_top_k: int | None = 200  # empty: no top-k filtering

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------ derived
    @property
    def effective_lr_decay_iters(self) -> int:
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters

    @property
    def effective_min_lr(self) -> float:
        return self.learning_rate / 10 if self.min_lr is None else self.min_lr

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------ checks
    def validate(self) -> None:
        """Refuse values and combinations that cannot train (all checkable before any data is read)."""
        for name in ("eval_interval", "log_interval", "eval_iters", "gradient_accumulation_steps", "batch_size",
                     "block_size", "n_layer", "n_head", "n_embd", "sample_max_new_tokens"):
            _require(getattr(self, name) >= 1, name, getattr(self, name), "must be a positive integer")
        for name in ("max_iters", "warmup_iters", "num_threads"):
            _require(getattr(self, name) >= 0, name, getattr(self, name), "must be 0 or more")
        for name in ("dropout", "learning_rate", "weight_decay", "beta1", "beta2", "grad_clip", "min_lr",
                     "sample_temperature", "telemetry_interval"):
            value = getattr(self, name)
            _require(value is None or math.isfinite(value), name, value, "must be a finite number")
        _require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")
        _require(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be above 0")
        _require(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be 0 or more")
        _require(0 <= self.beta1 < 1, "beta1", self.beta1, "must be in [0, 1)")
        _require(0 <= self.beta2 < 1, "beta2", self.beta2, "must be in [0, 1)")
        _require(self.grad_clip >= 0, "grad_clip", self.grad_clip, "must be 0 (off) or more")
        _require(self.sample_temperature > 0, "sample_temperature", self.sample_temperature, "must be above 0")
        _require(self.telemetry_interval >= 0, "telemetry_interval", self.telemetry_interval, "must be 0 (off) or more")
        if self.sample_top_k is not None:
            _require(self.sample_top_k >= 1, "sample_top_k", self.sample_top_k, "must be a positive integer or empty")
        if self.lr_decay_iters is not None:
            _require(self.lr_decay_iters >= 1, "lr_decay_iters", self.lr_decay_iters, "must be a positive integer or empty")
        if self.min_lr is not None:
            _require(self.min_lr >= 0, "min_lr", self.min_lr, "must be 0 or more")
        if self.effective_min_lr > self.learning_rate:
            raise UserError(f"min_lr {self.effective_min_lr:g} is above learning_rate {self.learning_rate:g}: "
                            f"set min_lr to at most learning_rate")
        if self.decay_lr and self.lr_decay_iters is not None and self.warmup_iters > self.lr_decay_iters:
            raise UserError(f"warmup_iters {self.warmup_iters} is longer than lr_decay_iters "
                            f"{self.effective_lr_decay_iters}: shorten warmup_iters or raise lr_decay_iters")
        if self.n_embd % self.n_head:
            raise UserError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}: "
                            f"pick n_embd as a multiple of n_head (e.g. n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))})")
        _require(self.device in ("auto", "cpu", "cuda", "mps") or _is_cuda_index(self.device), "device", self.device,
                 "must be one of auto, cpu, cuda, cuda:N, mps")
        _require(self.dtype in DTYPES, "dtype", self.dtype, "must be one of " + ", ".join(DTYPES))
        _require(self.compile in (True, False, "auto"), "compile", self.compile, "must be auto, true or false")
        _require(self.ddp_backend in DDP_BACKENDS, "ddp_backend", self.ddp_backend,
                 "must be one of " + ", ".join(DDP_BACKENDS))
        _require(math.isfinite(self.ddp_timeout) and self.ddp_timeout > 0, "ddp_timeout", self.ddp_timeout,
                 "must be a number of seconds above 0")
        _require(bool(self.dataset.strip()), "dataset", self.dataset, "must not be empty")
        _require(self.run_name == "" or _safe_name(self.run_name), "run_name", self.run_name,
                 "must be a plain folder name (letters, digits, . _ -)")


# What a resume may change, for every key (checked at import: a new key without a policy fails at once).
#   MATCH   the checkpoint is unusable with another value (model shape, meaning of the tokens): exit 2
#   APPLY   the new value is used from the resumed iteration on, and the change is reported
#   KEEP    the checkpoint's value is kept (its random streams continue), and the ignored change is reported
MATCH, APPLY, KEEP = "must match", "applied", "kept from the checkpoint"
RESUME_POLICY: dict[str, str] = {
    "run_name": APPLY, "out_dir": APPLY, "eval_interval": APPLY, "log_interval": APPLY, "eval_iters": APPLY,
    "eval_only": APPLY, "always_save_checkpoint": APPLY,
    "dataset": MATCH, "data_path": APPLY, "tokenizer": MATCH,
    "gradient_accumulation_steps": APPLY, "batch_size": APPLY, "block_size": MATCH,
    "n_layer": MATCH, "n_head": MATCH, "n_embd": MATCH, "dropout": APPLY, "bias": MATCH,
    "learning_rate": APPLY, "max_iters": APPLY, "weight_decay": APPLY, "beta1": APPLY, "beta2": APPLY,
    "grad_clip": APPLY, "decay_lr": APPLY, "warmup_iters": APPLY, "lr_decay_iters": APPLY, "min_lr": APPLY,
    "device": APPLY, "dtype": APPLY, "compile": APPLY, "seed": KEEP, "num_threads": APPLY,
    "telemetry_interval": APPLY, "ddp_backend": APPLY, "ddp_timeout": APPLY,
    "sample_max_new_tokens": APPLY, "sample_temperature": APPLY, "sample_top_k": APPLY,
}
# keys whose change alters the tokens each iteration trains on: the report says so
TOKENS_PER_ITER_KEYS = ("batch_size", "gradient_accumulation_steps")


def _check_policy_covers_every_key() -> None:
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    missing = sorted(set(names) - set(RESUME_POLICY))
    extra = sorted(set(RESUME_POLICY) - set(names))
    if missing or extra:
        raise RuntimeError(f"RESUME_POLICY is out of date: no policy for {missing}, unknown keys {extra}")


_check_policy_covers_every_key()


def _is_cuda_index(device: str) -> bool:
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()


def _safe_name(name: str) -> bool:
    return name not in (".", "..") and all(c.isalnum() or c in "._-" for c in name)


def _require(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise UserError(f"config key {key}={value!r} {why}")


# ---------------------------------------------------------------- typing of raw values

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


def _allowed_types(key: str) -> tuple[type, ...]:
    hint = _HINTS[key]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(typing.get_args(hint))
    return (hint,)


def _type_name(types_: tuple[type, ...]) -> str:
    names = {int: "integer", float: "number", bool: "true/false", str: "text", type(None): "empty"}
    return " or ".join(names.get(t, t.__name__) for t in types_)


def unknown_key_error(key: str, where: str) -> UserError:
    close = difflib.get_close_matches(key, list(_FIELDS), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "see the README for every key"
    return UserError(f"unknown config key {key!r} in {where}: {hint}")


def coerce_value(key: str, value: Any, where: str) -> Any:
    """Check a YAML value against the key's type; ints are accepted for float keys."""
    if key not in _FIELDS:
        raise unknown_key_error(key, where)
    allowed = _allowed_types(key)
    if value is None and type(None) in allowed:
        return None
    if isinstance(value, bool):
        if bool in allowed:
            return value
    elif isinstance(value, int) and int in allowed:
        return value
    elif isinstance(value, (int, float)) and float in allowed:
        return float(value)
    elif isinstance(value, str) and str in allowed:
        return value
    raise UserError(f"config key {key}={value!r} in {where} has the wrong type: expected {_type_name(allowed)}")


def parse_override(key: str, text: str) -> Any:
    """Type a ``--key=value`` string by the key's declared type."""
    if key not in _FIELDS:
        raise unknown_key_error(key, "the command line")
    allowed = _allowed_types(key)
    where = "the command line"
    stripped = text.strip()
    if stripped.lower() in ("", "none", "null", "~") and type(None) in allowed:
        return None
    if bool in allowed:
        lowered = stripped.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
    if int in allowed:
        try:
            return int(stripped)
        except ValueError:
            pass
    if float in allowed:
        try:
            return float(stripped)
        except ValueError:
            pass
    if str in allowed:
        return text
    raise UserError(f"--{key}={text!r} on {where} has the wrong type: expected {_type_name(allowed)}")


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a config file; every way it can be unreadable becomes a UserError."""
    text = read_user_text(path, "config file", "give a YAML file such as configs/train_cpu_optimized.yaml",
                          max_bytes=MAX_CONFIG_BYTES)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must be a mapping of key: value lines, not a {type(data).__name__}")
    for key in data:
        if not isinstance(key, str):
            raise UserError(f"config file {path} has a non-text key {key!r}: keys are names like batch_size")
    return data


def load_config(path: str | Path | None, overrides: dict[str, str] | None = None) -> TrainConfig:
    """Build a validated TrainConfig from a YAML file plus ``--key=value`` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        for key, value in read_yaml(path).items():
            values[key] = coerce_value(key, value, str(path))
    for key, text in (overrides or {}).items():
        values[key] = parse_override(key, text)
    if not values.get("run_name") and path is not None:
        values["run_name"] = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(path).stem)
    if not values.get("run_name"):
        values["run_name"] = "run"
    return TrainConfig(**values)


def config_from_dict(values: dict[str, Any], where: str) -> TrainConfig:
    """A TrainConfig from a stored dict (checkpoint), checked like a file."""
    return TrainConfig(**{k: coerce_value(k, v, where) for k, v in values.items()})
