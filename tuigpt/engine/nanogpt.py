"""nanoGPT's checkpoint format (``out-*/ckpt.pt``), read into tuigpt's and written from it.

nanoGPT's train.py saves ``{model, optimizer, model_args, iter_num, best_val_loss, config}``. Its model's
parameter names are tuigpt's (transformer.wte/wpe/h.N.ln_1/attn.c_attn/attn.c_proj/ln_2/mlp.c_fc/mlp.c_proj/
ln_f, lm_head), in the same order, so the weights and the AdamW state carry over as they are; only the
``_orig_mod.`` prefix of a torch.compile'd model and the ``attn.bias`` causal-mask buffers of a model built
without flash attention are dropped. best_val_loss is a 0-d tensor there (``losses['val']``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tuigpt.engine.checkpoint import FORMAT_VERSION
from tuigpt.engine.checkpoint_check import check_nanogpt, eval_loss
from tuigpt.engine.data.nanogpt import META_FILE, SHAKESPEARE_CHARS, meta_present, read_meta, write_meta
from tuigpt.engine.data.tokenizer import CharTokenizer, Tokenizer
from tuigpt.engine.model import ModelArgs
from tuigpt.engine.planner import UNPLANNED
from tuigpt.run import pyconfig
from tuigpt.run.config import MODEL_KEYS, TrainConfig
from tuigpt.run.errors import UserError
from tuigpt.run.fmt import clip

COMPILED_PREFIX = "_orig_mod."
GPT2_VOCAB = 50257
GPT2_META = {"kind": "tiktoken", "name": "gpt2", "vocab_size": GPT2_VOCAB}
NANOGPT_MODEL_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "dropout")
# written into an exported config where tuigpt's value is "auto": nanoGPT's own defaults
_AUTO_FOR_NANOGPT = {"device": "cuda", "dtype": "bfloat16", "compile": True, "backend": "nccl"}


def is_nanogpt(state: Any) -> bool:
    return isinstance(state, dict) and "format" not in state and "model" in state and "model_args" in state


def clean_state_dict(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Model weights under tuigpt's names: no compile prefix, no causal-mask buffers (``h.N.attn.bias``; the
    Linear biases are ``attn.c_attn.bias``/``attn.c_proj.bias`` and are kept)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix(COMPILED_PREFIX)
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        out[key] = value
    return out


def model_args_of(state: dict[str, Any]) -> ModelArgs:
    """The ModelArgs of a nanoGPT checkpoint whose fields :func:`check_nanogpt` has checked."""
    raw = state["model_args"]
    return ModelArgs(vocab_size=raw["vocab_size"], block_size=raw["block_size"], n_layer=raw["n_layer"],
                     n_head=raw["n_head"], n_embd=raw["n_embd"], dropout=float(raw.get("dropout", 0.0)),
                     bias=raw["bias"])


def from_nanogpt(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """A nanoGPT checkpoint as a tuigpt checkpoint dict (what resume, sample and init_from read), with the
    ``notices`` to show about it. Its own fields are checked first (every bad one a UserError naming it); the
    result is then checked as any tuigpt checkpoint is (check_structure)."""
    check_nanogpt(state, path)
    args = model_args_of(state)
    saved = state.get("config") or {}
    values, notices = pyconfig.translate({**pyconfig.NANOGPT_DEFAULTS, **saved}, f"{path}'s config",
                                         list(TrainConfig.__dataclass_fields__), saved=True)
    values.update({k: getattr(args, k) for k in MODEL_KEYS}, dropout=args.dropout, init_from="scratch")
    try:
        config = TrainConfig(**values)
    except (UserError, TypeError) as exc:
        raise UserError(f"{path}: its config cannot be read as tuigpt keys ({clip(str(exc), 300)})") from None
    dataset = str(saved.get("dataset", "openwebtext"))
    tokenizer, where = tokenizer_for(dataset, args.vocab_size, path)
    best = eval_loss(state.get("best_val_loss"), path, "best_val_loss")
    iter_num = state.get("iter_num", 0)
    return {
        "format": FORMAT_VERSION, "model": clean_state_dict(state["model"]), "model_args": args.to_dict(),
        "optimizer": _plain_optimizer(state.get("optimizer")), "config": config.to_dict(),
        "iter_num": iter_num, "best_val_loss": best if best is not None and best < 1e9 else None,
        "last_val_loss": None, "tokenizer": tokenizer, "dataset": config.dataset, "source": "nanoGPT",
        "notices": [*notices, f"{path} is a nanoGPT checkpoint (iteration {iter_num}); its tokenizer: {where}"],
    }


def _plain_optimizer(state: Any) -> Any:
    """nanoGPT's AdamW state without its fused/foreach choice, which is the device's to make here."""
    if not isinstance(state, dict) or "param_groups" not in state:
        return state
    groups = [{k: v for k, v in g.items() if k not in ("fused", "foreach")} for g in state["param_groups"]]
    return {**state, "param_groups": groups}


def tokenizer_for(dataset: str, vocab_size: int, path: Path) -> tuple[dict[str, Any], str]:
    """The tokenizer a nanoGPT model was trained with, as tuigpt tokenizer metadata, and where it came from:
    a meta.pkl (beside the checkpoint, or at data/<dataset>/ from here or from the checkpoint's nanoGPT folder),
    else tiny Shakespeare's characters for shakespeare_char, else GPT-2's BPE (nanoGPT's own fallback)."""
    places = [path.parent / META_FILE, Path(pyconfig.NANOGPT_DATA_ROOT) / dataset / META_FILE,
              path.parent.parent / pyconfig.NANOGPT_DATA_ROOT / dataset / META_FILE]
    found = next((p for p in places if meta_present(p)), None)
    tok: Tokenizer | None = None
    if found is not None:
        tok = read_meta(found)
        where = f"{found} ({tok.vocab_size} characters)"
    elif dataset == "shakespeare_char":
        tok, where = CharTokenizer(SHAKESPEARE_CHARS), "tiny Shakespeare's 65 characters (dataset shakespeare_char)"
    if tok is not None:
        if tok.vocab_size != vocab_size:
            raise UserError(f"{path}: the model has {vocab_size} tokens but {where} has {tok.vocab_size}: the "
                            f"vocabulary belongs to other data (put the run's meta.pkl beside the checkpoint)")
        return tok.to_meta(), where
    if vocab_size < GPT2_VOCAB:
        looked = ", ".join(str(p) for p in places)
        raise UserError(f"{path}: dataset {dataset!r} has a {vocab_size}-token vocabulary and no meta.pkl was found "
                        f"(looked at {looked}): put nanoGPT's data/{dataset}/meta.pkl beside the checkpoint")
    return dict(GPT2_META), "GPT-2's BPE (no meta.pkl: nanoGPT's default)"


# ---------------------------------------------------------------- tuigpt -> nanoGPT


def to_nanogpt(checkpoint: dict[str, Any]) -> tuple[dict[str, Any], bytes | None, list[str]]:
    """A tuigpt checkpoint as (nanoGPT's ckpt.pt dict, meta.pkl bytes for a character vocabulary, notices)."""
    args = ModelArgs(**checkpoint["model_args"])
    computed = [key for key in args.switches() if key != "zero_init"]  # zero_init only chose the first weights
    if computed:
        raise UserError(f"nanoGPT's model is GPT-2's block, and this one has {', '.join(computed)} on: nanoGPT cannot "
                        f"compute it; export it with --format hf (transformers' NanoChat or GPT-2 model)")
    config = checkpoint["config"]
    notices = []
    if args.gelu == "tanh":
        notices.append("this model computes GELU with the tanh approximation (it started from OpenAI's GPT-2 "
                       "weights); nanoGPT's model computes exact GELU, as its from_pretrained does for GPT-2, so its "
                       "outputs differ slightly there")
    meta = None
    tok = Tokenizer.from_meta(checkpoint["tokenizer"]) if checkpoint["tokenizer"].get("kind") == "char" else None
    dataset = _nanogpt_dataset(config)
    if isinstance(tok, CharTokenizer):
        meta = write_meta(tok)
        notices.append(f"character vocabulary written to {META_FILE}: nanoGPT's sample.py reads it from "
                       f"data/{dataset}/{META_FILE}")
    elif checkpoint["tokenizer"] != GPT2_META:
        raise UserError(f"the run's tokenizer {checkpoint['tokenizer'].get('name')!r} is not one nanoGPT knows "
                        f"(GPT-2's BPE or a character meta.pkl)")
    state = {
        "model": dict(checkpoint["model"]), "optimizer": checkpoint.get("optimizer"),
        "model_args": {k: getattr(args, k) for k in NANOGPT_MODEL_ARGS},
        "iter_num": int(checkpoint["iter_num"]), "best_val_loss": 1e9 if checkpoint.get("best_val_loss") is None else checkpoint["best_val_loss"],
        "config": _nanogpt_config(config, dataset, _planned_end(checkpoint)),
    }
    return state, meta, notices


def _planned_end(checkpoint: dict[str, Any]) -> int:
    """Where a run that ended at a time ends in iterations (nanoGPT's config has only max_iters): its plan's last
    iteration, else the iteration it was saved at."""
    plan = checkpoint.get("plan")
    total = plan.get("total_iters") if isinstance(plan, dict) else None
    return int(total) if isinstance(total, int) and 0 < total < UNPLANNED else int(checkpoint["iter_num"])


def _nanogpt_dataset(config: dict[str, Any]) -> str:
    if config["dataset"] in ("shakespeare_char", "shakespeare"):
        return config["dataset"]
    if config["dataset"] == "nanogpt" and config.get("data_path"):
        return Path(config["data_path"]).name
    return config["run_name"]


def _nanogpt_config(config: dict[str, Any], dataset: str, planned_end: int) -> dict[str, Any]:
    out = {k: config[k] for k in pyconfig.NANOGPT_DEFAULTS if k in config}
    if out.get("max_iters") is None:  # a run that ended at a time (--time, --until): where its plan ended it
        out["max_iters"] = planned_end
    out.update(out_dir=str(Path(config["out_dir"]) / config["run_name"]), dataset=dataset, init_from="scratch",
               wandb_log="wandb" in (config.get("log_to") or []), wandb_project=config.get("log_project") or "tuigpt",
               wandb_run_name=config.get("log_run_name") or config["run_name"],
               backend=config["ddp_backend"], device=config["device"], dtype=config["dtype"],
               compile=config["compile"])
    out["lr_decay_iters"] = config["lr_decay_iters"] or out["max_iters"]
    out["min_lr"] = config["min_lr"] if config["min_lr"] is not None else config["learning_rate"] / 10
    for key, value in _AUTO_FOR_NANOGPT.items():
        if out.get(key) == "auto":
            out[key] = value
    return out

