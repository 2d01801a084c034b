"""What a checkpoint must hold, checked before anything is built from it.

``torch.load(weights_only=True)`` refuses code, but a file of the right format can still hold fields of the wrong
type or shape (a damaged disk, a hand edit, another tool's file): each is found here and refused as a UserError
naming the field, instead of an exception deep inside a restore or a step. Weights and AdamW moments must be
finite (a checkpoint of NaN weights is worse than none), the optimizer state must fit the model's parameters,
and the tokenizer must fit the model's vocabulary (else `tuigpt sample` would print garbage).

Files from elsewhere go through the same checks: a nanoGPT ckpt.pt has its own fields checked first
(:func:`check_nanogpt`), then, converted, everything a tuigpt checkpoint must hold; a Hugging Face folder's weights
and tokenizer are checked as a checkpoint's are (:func:`check_model`). An eval loss that is not finite (a run that
diverged) is read as "none": it never makes a file unloadable.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterable

import torch

from tuigpt.engine.data import Tokenizer
from tuigpt.engine.model import GPT, ModelArgs, padded_vocab
from tuigpt.run.config import FLOAT_RANGES, INT_RANGES, MIN_SOFTCAP, TrainConfig
from tuigpt.run.configfile import config_from_dict
from tuigpt.run.errors import UserError
from tuigpt.run.fmt import clip, shown

MAX_ITER = INT_RANGES["max_iters"][1]
MAX_VOCAB = 1 << 24
MAX_SOFTCAP = FLOAT_RANGES["logit_softcap"][1]
GELUS = ("exact", "tanh")


def damaged(path: Path | str, field: str, problem: str) -> UserError:
    return UserError(f"checkpoint {clip(str(path), 200)} is damaged: {field} {problem} (use another checkpoint, "
                     f"best.pt or last.pt, or retrain)")


def config_int(cfg: dict[str, Any], key: str, lo: int, hi: int, path: Path | str) -> int:
    """``cfg[key]`` of a foreign config.json (GPT-2's, NanoChat's): an integer in [lo, hi], or UserError naming it."""
    value = cfg.get(key)
    if not _int(value, lo, hi):
        raise UserError(f"{path}: {key} must be an integer from {lo:,} to {hi:,}, not {shown(value, 40)} (not a "
                        f"config tuigpt can build)")
    return value


def _int(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {clip(repr(value), 40)}" if isinstance(value, (int, float, str)) else \
        f"a {type(value).__name__}"


def check_structure(state: dict[str, Any], path: Path | str, *, for_training: bool) -> tuple[TrainConfig, ModelArgs,
                                                                                             Tokenizer]:
    """The checkpoint's own fields, each of the right type and range, and consistent with one another:
    (its config, its model arguments, its tokenizer). ``for_training``: the optimizer, RNG and sampler states
    a resume restores are checked too."""
    if not _int(state.get("iter_num"), 0, MAX_ITER):
        raise damaged(path, "iter_num", f"must be an integer from 0 to {MAX_ITER:,}, not {_describe(state.get('iter_num'))}")
    if not isinstance(state.get("config"), dict):
        raise damaged(path, "config", f"must be a mapping, not {_describe(state.get('config'))}")
    try:
        config = config_from_dict(state["config"], f"checkpoint {clip(str(path), 200)}")
    except UserError as exc:
        raise damaged(path, "config", f"is not a valid config ({exc})") from None
    args, tokenizer = check_model(state.get("model_args"), state.get("model"), state.get("tokenizer"), path)
    for key in ("best_val_loss", "last_val_loss"):
        state[key] = eval_loss(state.get(key), path, key)
    for key in ("train_seconds", "run_seconds", "eval_seconds", "checkpoint_seconds"):
        if key in state and not (_real(state[key]) and state[key] >= 0):
            raise damaged(path, key, f"must be a number of seconds, not {_describe(state[key])}")
    if "world_size" in state and not _int(state["world_size"], 1, 1 << 20):
        raise damaged(path, "world_size", f"must be a positive integer, not {_describe(state['world_size'])}")
    if "lr_scale" in state and not (_real(state["lr_scale"]) and 0 < state["lr_scale"] <= 1):
        raise damaged(path, "lr_scale", f"must be a number in (0, 1], not {_describe(state['lr_scale'])}")
    if "nan_rewinds" in state and not _int(state["nan_rewinds"], 0, MAX_ITER):
        raise damaged(path, "nan_rewinds", f"must be a count, not {_describe(state['nan_rewinds'])}")
    notices = state.get("notices", [])
    if not (isinstance(notices, list) and all(isinstance(n, str) for n in notices)):
        raise damaged(path, "notices", f"must be a list of lines, not {_describe(notices)}")
    if for_training:
        _optimizer_layout(state.get("optimizer"), path)
        if "scaler" in state and not isinstance(state["scaler"], dict):
            raise damaged(path, "scaler", f"must be a mapping, not {_describe(state['scaler'])}")
        if "rng" in state:
            _rng(state["rng"], path)
        samplers = state.get("samplers")
        samplers = [] if samplers is None else samplers
        if not isinstance(samplers, list):
            raise damaged(path, "samplers", f"must be a list of batch-sampler states, not {_describe(samplers)}")
        for k, sampler in enumerate(samplers):
            _sampler(sampler, f"samplers[{k}]", path)
        if "sampler" in state:
            _sampler(state["sampler"], "sampler", path)
        if "plan" in state:
            _plan(state["plan"], path)
    return config, args, tokenizer


def check_model(raw_args: Any, weights: Any, tokenizer: Any, path: Path | str) -> tuple[ModelArgs, Tokenizer]:
    """A model's arguments, its weights (every tensor, of its shape, finite) and its tokenizer (fitting the
    vocabulary), as a checkpoint holds them: (the arguments, the tokenizer)."""
    args = _model_args(raw_args, path)
    tok = tokenizer_fits(tokenizer, args, path)
    check_weights(weights, args, path)
    return args, tok


def eval_loss(value: Any, path: Path | str, field: str) -> float | None:
    """A saved eval loss: a finite number, or None for none — and for NaN or Inf, which a diverged eval leaves (a
    0-d tensor, as nanoGPT saves it, is read as its number)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        value = float(value)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if not _real(value):
        raise damaged(path, field, f"must be a number or empty, not {_describe(value)}")
    return float(value)


def _optimizer_layout(optimizer: Any, path: Path | str) -> None:
    """An optimizer state_dict's layout: state keyed by parameter ids, param_groups of mappings listing them."""
    ok = isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict) \
        and isinstance(optimizer.get("param_groups"), list) and all(_int(k, 0, 1 << 40) for k in optimizer["state"])
    if not ok:
        raise damaged(path, "optimizer", "must be an optimizer state (state keyed by parameter ids, and param_groups)")
    for g, group in enumerate(optimizer["param_groups"]):
        if not (isinstance(group, dict) and isinstance(group.get("params"), list)
                and all(_int(pid, 0, 1 << 40) for pid in group["params"]) and all(isinstance(k, str) for k in group)):
            raise damaged(path, f"optimizer.param_groups[{g}]", "must be a mapping with a list of parameter ids")


NANOGPT_INTS = ("block_size", "n_layer", "n_head", "n_embd")


def check_nanogpt(state: dict[str, Any], path: Path | str) -> None:
    """nanoGPT's own fields of a ckpt.pt, each of the right type and range, before anything is converted from
    them (the converted checkpoint is then checked as tuigpt's own are)."""
    weights = state.get("model")
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in weights.items()):
        raise damaged(path, "model", "must map parameter names to tensors")
    raw = state.get("model_args")
    if not isinstance(raw, dict) or not all(k in raw for k in (*NANOGPT_INTS, "vocab_size", "bias")):
        raise damaged(path, "model_args", f"must hold {', '.join((*NANOGPT_INTS, 'vocab_size', 'bias'))}, not "
                      f"{_describe(raw)}")
    for key in NANOGPT_INTS:
        lo, hi = INT_RANGES[key]
        if not _int(raw[key], lo, hi):
            raise damaged(path, f"model_args.{key}", f"must be an integer from {lo:,} to {hi:,}, not {_describe(raw[key])}")
    if not _int(raw["vocab_size"], 1, MAX_VOCAB):
        raise damaged(path, "model_args.vocab_size", f"must be an integer from 1 to {MAX_VOCAB:,}, not "
                      f"{_describe(raw['vocab_size'])}")
    if not isinstance(raw["bias"], bool):
        raise damaged(path, "model_args.bias", f"must be true or false, not {_describe(raw['bias'])}")
    if not (_real(raw.get("dropout", 0.0)) and 0 <= raw.get("dropout", 0.0) < 1):
        raise damaged(path, "model_args.dropout", "must be a number in [0, 1)")
    if "iter_num" in state and not _int(state["iter_num"], 0, MAX_ITER):
        raise damaged(path, "iter_num", f"must be an integer from 0 to {MAX_ITER:,}, not {_describe(state['iter_num'])}")
    eval_loss(state.get("best_val_loss"), path, "best_val_loss")
    config = state.get("config")
    if config is not None and not (isinstance(config, dict) and all(isinstance(k, str) for k in config)):
        raise damaged(path, "config", f"must be a mapping of nanoGPT's keys, not {_describe(config)}")
    if state.get("optimizer") is not None:
        _optimizer_layout(state["optimizer"], path)


def _plan(raw: Any, path: Path | str) -> None:
    """A planned run's state (engine/planner.py): its end, the run time used, the cooldown's place."""
    if not isinstance(raw, dict) or raw.get("kind") not in ("budget", "deadline") or not isinstance(raw.get("text"), str):
        raise damaged(path, "plan", "must be a mapping with kind budget or deadline and the end's text")
    for key in ("until", "budget", "used", "step_s", "checkpoint_s"):
        if raw.get(key) is not None and not (_real(raw[key]) and raw[key] >= 0):
            raise damaged(path, f"plan.{key}", f"must be a number of seconds or empty, not {_describe(raw[key])}")
    for key in ("total_iters", "iter", "stable_iter"):
        if raw.get(key) is not None and not _int(raw[key], 0, MAX_ITER):
            raise damaged(path, f"plan.{key}", f"must be an iteration from 0 to {MAX_ITER:,}, not {_describe(raw[key])}")
    if not isinstance(raw.get("finished", False), bool):
        raise damaged(path, "plan.finished", "must be true or false")
    cooldown = raw.get("cooldown")
    if cooldown is not None and not (isinstance(cooldown, list) and len(cooldown) == 4
                                     and all(_int(v, 0, MAX_ITER) for v in cooldown[:3]) and _real(cooldown[3])
                                     and 0 <= cooldown[3] <= 1 and cooldown[0] <= cooldown[2] <= max(cooldown[1], cooldown[2])):
        raise damaged(path, "plan.cooldown", "must be [start, end, anchor iteration, progress 0-1] or empty")


def _model_args(raw: Any, path: Path | str) -> ModelArgs:
    names = {f.name for f in dataclasses.fields(ModelArgs)}
    if not isinstance(raw, dict) or not set(raw) <= names or not {"vocab_size", "block_size", "n_layer", "n_head",
                                                                    "n_embd"} <= set(raw):
        raise damaged(path, "model_args", f"must hold {', '.join(sorted(names))}, not {_describe(raw)}")
    for key in ("block_size", "n_layer", "n_head", "n_embd"):
        lo, hi = INT_RANGES[key]
        if not _int(raw[key], lo, hi):
            raise damaged(path, f"model_args.{key}", f"must be an integer from {lo:,} to {hi:,}, not {_describe(raw[key])}")
    if not _int(raw["vocab_size"], 1, MAX_VOCAB):
        raise damaged(path, "model_args.vocab_size", f"must be an integer from 1 to {MAX_VOCAB:,}")
    if raw["n_embd"] % raw["n_head"]:
        raise damaged(path, "model_args.n_embd", f"{raw['n_embd']} is not divisible by n_head {raw['n_head']}")
    if not (_real(raw.get("dropout", 0.0)) and 0 <= raw.get("dropout", 0.0) < 1):
        raise damaged(path, "model_args.dropout", "must be a number in [0, 1)")
    if not isinstance(raw.get("bias", False), bool):
        raise damaged(path, "model_args.bias", "must be true or false")
    if raw.get("gelu", "exact") not in GELUS:
        raise damaged(path, "model_args.gelu", f"must be one of {', '.join(GELUS)}")
    for key in ("rope", "qk_norm", "relu2", "rmsnorm", "untied_head", "zero_init"):
        if not isinstance(raw.get(key, False), bool):
            raise damaged(path, f"model_args.{key}", "must be true or false")
    cap = raw.get("logit_softcap", 0.0)
    if not (_real(cap) and (cap == 0 or MIN_SOFTCAP <= cap <= MAX_SOFTCAP)):
        raise damaged(path, "model_args.logit_softcap", f"must be 0 or a number from {MIN_SOFTCAP:g} to {MAX_SOFTCAP:g}")
    if not (_real(raw.get("rope_theta", 1.0)) and raw.get("rope_theta", 1.0) > 0):
        raise damaged(path, "model_args.rope_theta", "must be a positive number")
    if raw.get("rope") and (raw["n_embd"] // raw["n_head"]) % 2:
        raise damaged(path, "model_args.rope", f"needs an even head size, not {raw['n_embd'] // raw['n_head']}")
    return ModelArgs(**raw)


def tokenizer_fits(meta: Any, args: ModelArgs, path: Path | str) -> Tokenizer:
    """The tokenizer ``meta`` describes, which must fit the model's vocabulary (else its text would be garbage)."""
    tokenizer = Tokenizer.from_meta(meta)  # UserError: "invalid tokenizer metadata ... damaged"
    if not tokenizer.vocab_size <= args.vocab_size <= padded_vocab(tokenizer.vocab_size):  # GPT-2: 50257 or 50304
        raise damaged(path, "tokenizer", f"({tokenizer.name}, {tokenizer.vocab_size:,} tokens) does not fit its "
                      f"model's vocabulary of {args.vocab_size:,}: the text it generated would be garbage")
    return tokenizer


def check_weights(weights: Any, args: ModelArgs, path: Path | str) -> None:
    """Every tensor the model has, of its shape, finite; checked against a model built on the meta device (no
    memory), so absurd model_args never allocate."""
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in weights.items()):
        raise damaged(path, "model", "must map parameter names to tensors")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in GPT(args).state_dict().items()}
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    wrong = [k for k in expected if k in weights and tuple(weights[k].shape) != expected[k]]
    if missing or extra or wrong:
        what = (f"no {missing[0]}" if missing else f"an unexpected {extra[0]}" if extra else
                f"weight {wrong[0]} {tuple(weights[wrong[0]].shape)} (model_args make it {expected[wrong[0]]})")
        raise damaged(path, "model", f"does not fit its model_args: {clip(what, 160)} ({len(missing)} missing, "
                      f"{len(extra)} unexpected, {len(wrong)} of another shape)")
    for name, tensor in weights.items():
        if not tensor.is_floating_point():
            raise damaged(path, f"model.{name}", f"must be floating point, not {tensor.dtype}")
    bad = first_not_finite(weights.items())
    if bad is not None:
        raise damaged(path, f"model.{bad}", "is not finite (NaN or Inf weights)")


def _rng(rng: Any, path: Path | str) -> None:
    ok = isinstance(rng, dict)
    py = rng.get("python") if ok else None
    ok = ok and isinstance(py, (list, tuple)) and len(py) == 3 and _int(py[0], 0, 16) \
        and isinstance(py[1], (list, tuple)) and len(py[1]) == 625 and all(_int(v, 0, 2**32) for v in py[1]) \
        and (py[2] is None or _real(py[2]))
    np_state = rng.get("numpy") if ok else None
    ok = ok and isinstance(np_state, (list, tuple)) and len(np_state) == 5 and np_state[0] == "MT19937" \
        and isinstance(np_state[1], torch.Tensor) and np_state[1].dtype == torch.int64 \
        and tuple(np_state[1].shape) == (624,) \
        and _int(np_state[2], 0, 624) and _int(np_state[3], 0, 1) and _real(np_state[4])
    cpu = torch.get_rng_state()
    ok = ok and _byte_state(rng.get("torch"), cpu)
    ok = ok and ("cuda" not in rng or (isinstance(rng["cuda"], (list, tuple)) and all(
        isinstance(s, torch.Tensor) and s.dtype == torch.uint8 and s.dim() == 1 for s in rng["cuda"])))
    if not ok:
        raise damaged(path, "rng", "is not a set of random-generator states (python, numpy, torch)")


def _byte_state(value: Any, like: torch.Tensor) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and tuple(value.shape) == tuple(like.shape)


def _sampler(state: Any, field: str, path: Path | str) -> None:
    like = torch.Generator().get_state()
    if not (isinstance(state, dict) and _int(state.get("seed"), 0, 1 << 62)
            and _byte_state(state.get("train_generator"), like) and _byte_state(state.get("val_generator"), like)):
        raise damaged(path, field, "is not a batch-sampler state (seed and two generator states)")


def check_optimizer(state: dict[str, Any], path: Path | str, optimizer: torch.optim.Optimizer) -> None:
    """The saved optimizer state fits ``optimizer``'s parameters one by one (shapes), group by group of the same
    kind (AdamW's moments and step count, Muon's momentum), and every moment is finite."""
    saved = state["optimizer"]
    groups = saved["param_groups"]
    if len(groups) != len(optimizer.param_groups) or not all(
            isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups):
        raise damaged(path, "optimizer.param_groups", f"has {len(groups)} groups; this model's optimizer has "
                      f"{len(optimizer.param_groups)}")
    for g, (saved_group, group) in enumerate(zip(groups, optimizer.param_groups)):
        if len(saved_group["params"]) != len(group["params"]):
            raise damaged(path, f"optimizer.param_groups[{g}]", f"holds {len(saved_group['params'])} parameters; the "
                          f"model has {len(group['params'])}")
        kind = group.get("kind", "adamw")
        if saved_group.get("kind", "adamw") != kind:
            raise damaged(path, f"optimizer.param_groups[{g}].kind", f"is {_describe(saved_group.get('kind'))}; this "
                          f"run's optimizer has a {kind} group there")
        moments = ("momentum_buffer",) if kind == "muon" else ("exp_avg", "exp_avg_sq")
        for key, value in saved_group.items():  # torch copies them over the live group's: lr, betas, eps, ...
            if key != "params" and key in group and not _like(value, group[key]):
                raise damaged(path, f"optimizer.param_groups[{g}].{key}", f"must be like {clip(repr(group[key]), 40)}, "
                              f"not {_describe(value)}")
        for pid, param in zip(saved_group["params"], group["params"]):
            entry = saved["state"].get(pid)
            if entry is None:
                continue  # a parameter not stepped yet
            field = f"optimizer.state[{pid}]"
            if not isinstance(entry, dict):
                raise damaged(path, field, f"must be a mapping of {kind} moments")
            for key in moments:
                moment = entry.get(key)
                if not isinstance(moment, torch.Tensor) or tuple(moment.shape) != tuple(param.shape):
                    raise damaged(path, f"{field}.{key}", f"is {_describe(moment)}; the model's parameter has shape "
                                  f"{tuple(param.shape)}")
                if not moment.is_floating_point() or first_not_finite([(key, moment)]) is not None:
                    raise damaged(path, f"{field}.{key}", f"is not finite (NaN or Inf {kind} moments)")
            if kind == "muon":
                continue
            step = entry.get("step")
            if not ((isinstance(step, torch.Tensor) and step.numel() == 1 and bool(torch.isfinite(step).all())
                     and float(step) >= 0) or (_real(step) and step >= 0)):
                raise damaged(path, f"{field}.step", f"must be a step count, not {_describe(step)}")


def _like(value: Any, ours: Any) -> bool:
    """Whether a saved optimizer hyper-parameter can stand where the live optimizer has ``ours``."""
    if isinstance(ours, bool) or ours is None:
        return value is None or isinstance(value, bool)
    if isinstance(ours, (int, float)) or isinstance(ours, torch.Tensor):
        if isinstance(value, torch.Tensor):
            return value.numel() == 1 and bool(torch.isfinite(value).all())
        return _real(value)
    if isinstance(ours, (tuple, list)):
        return isinstance(value, (tuple, list)) and len(value) == len(ours) and all(_real(v) for v in value)
    if isinstance(ours, str):
        return isinstance(value, str)
    return True


def first_not_finite(named: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating tensor holding a NaN or Inf, or None (one device sync for all of them)."""
    items = [(name, t) for name, t in named if t.is_floating_point() and t.numel()]
    if not items:
        return None
    flags = torch.stack([torch.isfinite(t).all().to(items[0][1].device) for _, t in items])
    if bool(flags.all()):
        return None
    return items[int((~flags).nonzero()[0])][0]
