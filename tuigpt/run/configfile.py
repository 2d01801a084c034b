"""Reading a config: a YAML file or a nanoGPT-style .py file, and ``--key=value`` overrides, each value typed
by its key's declared type and the whole checked by :class:`~tuigpt.run.config.TrainConfig`."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

from tuigpt.run import pyconfig
from tuigpt.run.config import MAX_CONFIG_BYTES, MAX_RUN_NAME_BYTES, STORED_ARCH, TrainConfig
from tuigpt.run.errors import UserError
from tuigpt.run.fmt import clip, shown
from tuigpt.run.yamlfile import read_mapping

# ---------------------------------------------------------------- typing of raw values

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


# keys holding a list of names: YAML `[a, b]` or `a, b`; `--key=a,b` on the command line
LIST_KEYS = ("log_to",)


def _names(key: str, value: Any, where: str) -> list[str]:
    """A list key's value: a YAML list of names or one comma-separated string (empty: none)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value]
    raise UserError(f"config key {key}={shown(value)} in {clip(where, 200)} has the wrong type: expected a list of "
                    f"names, like [tensorboard, wandb]")


def _allowed_types(key: str) -> tuple[type, ...]:
    hint = _HINTS[key]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(typing.get_args(hint))
    return (hint,)


def _type_name(types_: tuple[type, ...]) -> str:
    names = {int: "integer", float: "number", bool: "true/false", str: "text", type(None): "empty"}
    return " or ".join(names.get(t, t.__name__) for t in types_)


# Names people type from nanoGPT, Hugging Face and habit, for the "did you mean" hint only (never accepted as
# keys: one spelling per key keeps configs comparable). difflib cannot get from "lr" to learning_rate.
KEY_ALIASES = {
    "lr": "learning_rate", "max_lr": "learning_rate", "min_learning_rate": "min_lr",
    "iters": "max_iters", "steps": "max_iters", "max_steps": "max_iters", "num_iters": "max_iters",
    "bs": "batch_size", "batch": "batch_size", "micro_batch_size": "batch_size",
    "per_device_train_batch_size": "batch_size",
    "grad_accum": "gradient_accumulation_steps", "accum": "gradient_accumulation_steps",
    "accumulation_steps": "gradient_accumulation_steps", "gradient_accumulation": "gradient_accumulation_steps",
    "ctx": "block_size", "context": "block_size", "context_length": "block_size", "seq_len": "block_size",
    "max_seq_len": "block_size", "n_ctx": "block_size", "n_positions": "block_size",
    "layers": "n_layer", "num_layers": "n_layer", "num_hidden_layers": "n_layer",
    "heads": "n_head", "num_heads": "n_head", "num_attention_heads": "n_head",
    "d_model": "n_embd", "hidden_size": "n_embd", "n_embed": "n_embd", "emb_dim": "n_embd", "dim": "n_embd",
    "wd": "weight_decay", "warmup": "warmup_iters", "warmup_steps": "warmup_iters",
    "lr_decay_steps": "lr_decay_iters", "clip": "grad_clip", "max_grad_norm": "grad_clip",
    "precision": "dtype", "threads": "num_threads", "output_dir": "out_dir", "name": "run_name",
    "data": "data_path", "data_dir": "data_path", "eval_steps": "eval_iters",
    "temperature": "sample_temperature", "top_k": "sample_top_k", "max_new_tokens": "sample_max_new_tokens",
    "backend": "ddp_backend", "warmdown_ratio": "cooldown_frac", "warmdown_frac": "cooldown_frac",
    "cooldown_ratio": "cooldown_frac", "lr_schedule": "schedule", "lr_scheduler_type": "schedule",
    "wandb_log": "log_to", "wandb_project": "log_project", "wandb_run_name": "log_run_name", "wandb": "log_to",
    "tensorboard": "log_to", "trackio": "log_to", "report_to": "log_to", "logger": "log_to", "project": "log_project",
}


def is_config_key(key: str) -> bool:
    """A tuigpt key, or one of nanoGPT's that a .py config's overrides may name."""
    return key in _FIELDS or key in pyconfig.NANOGPT_KEYS


def suggest_key(key: str) -> str | None:
    """The config key someone typing ``key`` most likely meant, or None."""
    alias = KEY_ALIASES.get(key.lower())
    if alias is not None:
        return alias
    close = difflib.get_close_matches(key, list(_FIELDS), n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_key_error(key: str, where: str) -> UserError:
    close = suggest_key(key)
    hint = f"did you mean {close}?" if close else "see the README for every key"
    return UserError(f"unknown config key {shown(key, 60)} in {clip(where, 200)}: {hint}")


def coerce_value(key: str, value: Any, where: str) -> Any:
    """Check a YAML value against the key's type; ints are accepted for float keys."""
    if not isinstance(key, str) or key not in _FIELDS:
        raise unknown_key_error(key, where)
    if key in LIST_KEYS:
        return _names(key, value, where)
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
    raise UserError(f"config key {key}={shown(value)} in {clip(where, 200)} has the wrong type: expected "
                    f"{_type_name(allowed)}")


def parse_override(key: str, text: str) -> Any:
    """Type a ``--key=value`` string by the key's declared type."""
    if key not in _FIELDS:
        raise unknown_key_error(key, "the command line")
    if "\0" in text:
        raise UserError(f"--{key} holds a NUL byte: give a plain value")
    if key in LIST_KEYS:
        return _names(key, "" if text.strip().lower() in ("none", "null", "~") else text, "the command line")
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
    raise UserError(f"--{key}={shown(text)} on {where} has the wrong type: expected {_type_name(allowed)}")


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a config file; every way it can be unreadable becomes a UserError."""
    return read_mapping(path, "config file", "give a YAML file such as configs/train_cpu_optimized.yaml",
                        MAX_CONFIG_BYTES)


def load_config(path: str | Path | None, overrides: dict[str, str] | None = None) -> TrainConfig:
    """Build a validated TrainConfig from a YAML or nanoGPT-style .py file plus ``--key=value`` overrides."""
    return load_config_with_notices(path, overrides)[0]


def load_config_with_notices(path: str | Path | None,
                             overrides: dict[str, str] | None = None) -> tuple[TrainConfig, list[str]]:
    """:func:`load_config`, and what the user should be told about how the file was read (ignored keys,
    nanoGPT defaults)."""
    if path is not None and Path(path).suffix == ".py":
        return _load_py(Path(path), overrides or {})
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        for key, value in read_yaml(path).items():
            values[key] = coerce_value(key, value, str(path))
    for key, text in (overrides or {}).items():
        values[key] = parse_override(key, text)
    if not values.get("run_name") and path is not None:
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(path).stem)
        while len(name.encode()) > MAX_RUN_NAME_BYTES:  # a long file name still names a folder
            name = name[:-1]
        values["run_name"] = name if name not in (".", "..") else "run"
    if not values.get("run_name"):
        values["run_name"] = "run"
    if (values.get("time_budget") is not None or values.get("deadline") is not None) and "max_iters" not in values:
        values["max_iters"] = None  # a run that ends at a time plans its iterations; a max_iters given caps them
    return TrainConfig(**values), []


def _load_py(path: Path, overrides: dict[str, str]) -> tuple[TrainConfig, list[str]]:
    """A nanoGPT-style config: nanoGPT's defaults, the file, then nanoGPT-style ``--key=value`` overrides, all in
    nanoGPT's key names (out_dir is the run's folder) and mapped onto tuigpt's."""
    known = list(_FIELDS)
    raw, notices = pyconfig.read_py_config(path)
    for key, text in overrides.items():
        key = pyconfig.translate_override(key, known)
        raw[key] = pyconfig.literal_value(text) if key in pyconfig.WANDB_KEYS else _typed_override(key, text)
    if "run_name" in raw:
        raise UserError(f"run_name in {path}: in a nanoGPT-style config out_dir names the run's folder "
                        f"(e.g. out_dir = 'out-shakespeare-char'); set out_dir instead")
    mapped, more = pyconfig.translate(raw, str(path), known)
    values = {key: coerce_value(key, value, str(path)) for key, value in mapped.items()}
    return TrainConfig(**values), notices + more


def _typed_override(key: str, text: str) -> Any:
    if key in ("out_dir", "dataset"):  # mapped by pyconfig.translate, as text
        return text
    return parse_override(key, text)


def config_from_dict(values: dict[str, Any], where: str) -> TrainConfig:
    """A TrainConfig from a stored dict (checkpoint), checked like a file; one stored before the arch key
    existed meant GPT-2's block."""
    values = {"arch": STORED_ARCH, **values}
    return TrainConfig(**{k: coerce_value(k, v, where) for k, v in values.items()})
