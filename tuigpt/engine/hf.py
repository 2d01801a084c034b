"""Hugging Face folders (``model.safetensors`` + ``config.json``, as in a downloaded ``gpt2`` snapshot), read into
tuigpt's model and written from it: GPT-2's layout here (``GPT2LMHeadModel``, the block with rope, qk_norm, rmsnorm
and logit_softcap off), NanoChat's in :mod:`.hf_nanochat` (the block with rope, qk_norm and rmsnorm on). No
transformers class computes a block between the two, so such a model is refused, naming the switches (its
checkpoint still samples and resumes in tuigpt). Nothing is downloaded and no pickle is read.

GPT-2's attention and MLP layers are ``Conv1D`` modules whose weights are stored (in, out), the transpose of
a Linear's (out, in): the four ``c_attn``/``c_proj``/``c_fc`` weights are transposed both ways, as nanoGPT's
``from_pretrained`` does. OpenAI's weights were trained with the tanh GELU (``gelu_new``): a model read from
them keeps it (ModelArgs.gelu), so its losses here are the source's. A folder written here also holds
``tuigpt.json``: the tokenizer (a character vocabulary has no transformers tokenizer) and where it came from.

A folder is foreign input: its JSON files are read bounded (size, nesting), every config value is checked for its
type and range before a model is built from it, every file read must be a regular file of the folder itself (a
link out of it is refused; in the Hugging Face cache, a snapshot's files link into its repository's ``blobs``), and
the weights and the tokenizer are checked as a checkpoint's are (shapes against the config, finite values, a
tokenizer that fits the vocabulary: :func:`tuigpt.engine.checkpoint_check.check_model`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from tuigpt.engine import hf_nanochat
from tuigpt.engine.checkpoint_check import MAX_VOCAB, check_weights, config_int, tokenizer_fits
from tuigpt.engine.model import ModelArgs
from tuigpt.run.config import INT_RANGES
from tuigpt.run.errors import UserError
from tuigpt.run.fmt import clip, shown
from tuigpt.run.user_files import read_user_bytes, resolved_within, stat_regular

WEIGHTS, CONFIG, TUIGPT_META, INDEX = "model.safetensors", "config.json", "tuigpt.json", "model.safetensors.index.json"
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
GELU = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh", "gelu": "exact"}
GELU_NAME = {"tanh": "gelu_new", "exact": "gelu"}
ACTIVATIONS = {**GELU, "relu2": "relu2"}  # GPT-2's activation_function names tuigpt computes
GPT2_OFF = ("rope", "qk_norm", "rmsnorm", "logit_softcap")  # switches GPT-2's model does not compute
GPT2_EOS = 50256
MAX_JSON_BYTES = 1 << 20


_OWN = "a model folder's files must be its own (copy the file into the folder instead of linking to it)"


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and os.path.lexists(path / CONFIG) and (os.path.lexists(path / WEIGHTS)
                                                                  or os.path.lexists(path / INDEX))


def own_file(folder: Path, name: str) -> Path:
    """``folder/name``, which must be a regular file of the folder (links inside it are fine; in the Hugging Face
    cache a snapshot's files are links into the repository's blobs/); a one-line UserError otherwise."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise UserError(f"{clip(str(folder), 200)}: {shown(name)} is not a file name of the folder: {_OWN}")
    path = folder / name
    stat_regular(path, "model file", "give a folder with model.safetensors and config.json")
    roots = [folder] + ([folder.parent.parent / "blobs"] if folder.parent.name == "snapshots" else [])
    return resolved_within(path, roots, "model file", _OWN)


def _read_json(folder: Path, name: str) -> dict[str, Any]:
    path = own_file(folder, name)
    raw = read_user_bytes(path, "model file", "a config.json is a small JSON object", MAX_JSON_BYTES)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and an integer of more than 4,300 digits
        raise UserError(f"{folder / name} is not valid JSON ({clip(str(exc), 120)})") from None
    except RecursionError:
        raise UserError(f"{folder / name} is nested too deeply to be a model config") from None
    if not isinstance(data, dict):
        raise UserError(f"{folder / name} must hold a JSON object")
    return data


def read_args(folder: Path) -> ModelArgs:
    """The model a GPT-2 or NanoChat config.json describes; UserError for anything tuigpt's GPT cannot compute
    exactly, and for any value of the wrong type or out of range (checked before a model is built from it)."""
    path = folder / CONFIG
    cfg = _read_json(folder, CONFIG)
    if cfg.get("model_type") == hf_nanochat.MODEL_TYPE:
        return hf_nanochat.read_args(cfg, path)
    if cfg.get("model_type", "gpt2") != "gpt2":
        raise UserError(f"{path}: model_type {shown(cfg.get('model_type'), 40)} is not gpt2 or nanochat; tuigpt reads "
                        f"GPT-2- and NanoChat-shaped models")
    if "n_positions" not in cfg and "n_ctx" in cfg:
        cfg = {**cfg, "n_positions": cfg["n_ctx"]}
    n_embd, n_layer, n_head, positions = (config_int(cfg, key, *INT_RANGES[name], path) for key, name in (
        ("n_embd", "n_embd"), ("n_layer", "n_layer"), ("n_head", "n_head"), ("n_positions", "block_size")))
    vocab = config_int(cfg, "vocab_size", 1, MAX_VOCAB, path)
    activation = cfg.get("activation_function", "gelu_new")
    epsilon = cfg.get("layer_norm_epsilon", 1e-5)
    differences = []
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        differences.append(f"activation_function {shown(activation, 40)} (tuigpt computes gelu, gelu_new or relu2)")
    if cfg.get("n_inner") not in (None, 4 * n_embd):
        differences.append(f"n_inner {shown(cfg['n_inner'], 40)} (tuigpt's MLP is 4 * n_embd = {4 * n_embd} wide)")
    if not (isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool) and math.isclose(epsilon, 1e-5)):
        differences.append(f"layer_norm_epsilon {shown(epsilon, 40)} (tuigpt's is 1e-5)")
    for flag in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
        if cfg.get(flag):
            differences.append(f"{flag} true")
    if cfg.get("scale_attn_weights") is False:
        differences.append("scale_attn_weights false")
    if n_embd % n_head:
        differences.append(f"n_embd {n_embd} not divisible by n_head {n_head}")
    if differences:
        raise UserError(f"{path}: this GPT-2 variant cannot be computed by tuigpt's model: {'; '.join(differences)}")
    return ModelArgs(vocab_size=vocab, block_size=positions, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                     dropout=0.0, bias=True, gelu=GELU.get(activation, "exact"), relu2=activation == "relu2",
                     untied_head=cfg.get("tie_word_embeddings", True) is False)


def _load_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if os.path.lexists(folder / WEIGHTS):
        names = [WEIGHTS]
    else:  # sharded: the index names the file of every tensor
        weight_map = _read_json(folder, INDEX).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise UserError(f"{folder / INDEX} has no weight_map of tensor names to file names")
        names = sorted(set(weight_map.values()))
    tensors: dict[str, torch.Tensor] = {}
    for name in names:
        file = own_file(folder, name)  # a regular file of the folder: never a FIFO, never a file elsewhere
        try:
            tensors.update(load_file(file, device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"{folder / name} is not a readable safetensors file ({str(exc)[:120]})") from None
    return tensors


def read_weights(folder: Path, args: ModelArgs) -> dict[str, torch.Tensor]:
    """tuigpt's state dict from a GPT-2 folder (``transformer.`` prefix optional: GPT2Model or GPT2LMHeadModel;
    mask buffers dropped, Conv1D weights transposed, lm_head tied to wte unless the config unties it) or a
    NanoChat one, float32."""
    raw = _load_tensors(folder)
    state = hf_nanochat.read_weights(raw, args, str(folder / WEIGHTS)) if args.rope else _gpt2_weights(raw, args, folder)
    check_weights(state, args, folder / WEIGHTS)  # every tensor, of the config's shape, finite
    return state


def _gpt2_weights(raw: dict[str, torch.Tensor], args: ModelArgs, folder: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    lm_head = raw.pop("lm_head.weight", None)
    for key, value in raw.items():
        key = key.removeprefix("transformer.")
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # the causal mask, a buffer in older transformers
        value = value.to(torch.float32)
        if key.endswith(CONV1D) and value.dim() == 2:  # another shape is named by the shape check below
            value = value.t().contiguous()
        state[f"transformer.{key}"] = value
    wte = state.get("transformer.wte.weight")
    if wte is None:
        raise UserError(f"{folder / WEIGHTS} has no wte.weight: not GPT-2 weights")
    if args.untied_head:
        if lm_head is None:
            raise UserError(f"{folder / WEIGHTS} has no lm_head.weight, and its config unties the head (tie_word_"
                            f"embeddings false)")
        state["lm_head.weight"] = lm_head.to(torch.float32)
        return state
    if lm_head is not None and not torch.equal(lm_head.to(torch.float32), wte):
        raise UserError(f"{folder / WEIGHTS}: lm_head differs from wte (untied embeddings), and its config ties "
                        f"them: set tie_word_embeddings to false in its config.json")
    state["lm_head.weight"] = wte
    return state


def read_tokenizer(folder: Path, args: ModelArgs) -> tuple[dict[str, Any] | None, str]:
    """The tokenizer metadata tuigpt wrote beside the weights, else GPT-2's BPE for a GPT-2-sized vocabulary
    (what a GPT-2 snapshot uses), else None: (metadata, where it came from)."""
    if os.path.lexists(folder / TUIGPT_META):
        tok = _read_json(folder, TUIGPT_META).get("tokenizer")
        if isinstance(tok, dict):
            tokenizer_fits(tok, args, folder / TUIGPT_META)  # it fits the vocabulary, or sampled text is garbage
            return tok, f"{folder / TUIGPT_META}"
    if args.vocab_size >= 50257:
        return {"kind": "tiktoken", "name": "gpt2", "vocab_size": 50257}, "GPT-2's BPE (a GPT-2-sized vocabulary)"
    return None, f"none recorded ({args.vocab_size} tokens and no {TUIGPT_META})"


# ---------------------------------------------------------------- tuigpt -> Hugging Face


def layout(args: ModelArgs) -> str:
    """The transformers class that computes this model: GPT2LMHeadModel or NanoChatForCausalLM; UserError naming
    the switches where neither does."""
    if not any(getattr(args, key) for key in GPT2_OFF):
        return "GPT2LMHeadModel"
    if hf_nanochat.fits(args):
        return hf_nanochat.ARCHITECTURE
    on = [key for key in GPT2_OFF if getattr(args, key)]
    missing = [key for key in hf_nanochat.NEEDS if not getattr(args, key)]
    problem = f"{', '.join(missing)} off" if missing else "bias on"
    raise UserError(f"no transformers model computes this block: GPT2LMHeadModel computes none of {', '.join(GPT2_OFF)} "
                    f"(this model has {', '.join(on)} on), NanoChatForCausalLM needs {', '.join(hf_nanochat.NEEDS)} on "
                    f"and bias off (this model has {problem}); nothing was written: a model of arch gpt2 or modern "
                    f"exports (this checkpoint still samples and resumes in tuigpt)")


def hf_config(args: ModelArgs, tokenizer: dict[str, Any]) -> dict[str, Any]:
    """config.json for the transformers class computing the same function as tuigpt's GPT (:func:`layout`)."""
    gpt2_bpe = tokenizer.get("kind") == "tiktoken" and tokenizer.get("name") == "gpt2"
    if layout(args) == hf_nanochat.ARCHITECTURE:
        special = {"bos": GPT2_EOS, "eos": GPT2_EOS} if gpt2_bpe else {}
        return hf_nanochat.config(args, special)
    cfg: dict[str, Any] = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": args.vocab_size,
        "n_positions": args.block_size, "n_ctx": args.block_size, "n_embd": args.n_embd, "n_layer": args.n_layer,
        "n_head": args.n_head, "n_inner": None, "activation_function": "relu2" if args.relu2 else GELU_NAME[args.gelu],
        "resid_pdrop": args.dropout, "embd_pdrop": args.dropout, "attn_pdrop": args.dropout,
        "layer_norm_epsilon": 1e-5, "initializer_range": 0.02, "scale_attn_weights": True,
        "tie_word_embeddings": not args.untied_head, "torch_dtype": "float32",
    }
    if gpt2_bpe:
        cfg.update(bos_token_id=GPT2_EOS, eos_token_id=GPT2_EOS)
    return cfg


def hf_tensors(state: dict[str, torch.Tensor], args: ModelArgs) -> dict[str, torch.Tensor]:
    """The tensors of :func:`layout`'s class. GPT2LMHeadModel: ``transformer.`` names, Conv1D layout, a tied
    lm_head left out as transformers does; a model without biases gets zero biases, the same function."""
    if layout(args) == hf_nanochat.ARCHITECTURE:
        return hf_nanochat.tensors(state, args)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "lm_head.weight" and not args.untied_head:
            continue
        value = value.detach().to("cpu", torch.float32)
        out[key] = value.t().contiguous() if key.endswith(CONV1D) else value.contiguous()
    if not args.bias:
        c = args.n_embd
        zeros = {"ln_1.bias": c, "attn.c_attn.bias": 3 * c, "attn.c_proj.bias": c, "ln_2.bias": c,
                 "mlp.c_fc.bias": 4 * c, "mlp.c_proj.bias": c}
        for layer in range(args.n_layer):
            for name, size in zeros.items():
                out[f"transformer.h.{layer}.{name}"] = torch.zeros(size)
        out["transformer.ln_f.bias"] = torch.zeros(c)
    return out


def hf_files(state: dict[str, torch.Tensor], args: ModelArgs, tokenizer: dict[str, Any],
             provenance: dict[str, Any]) -> dict[str, bytes]:
    """The files of a Hugging Face folder: model.safetensors, config.json and tuigpt.json, by name (the caller
    publishes them together: :func:`tuigpt.run.files.atomic_folder`)."""
    from safetensors.torch import save

    return {WEIGHTS: save(hf_tensors(state, args), metadata={"format": "pt"}),
            CONFIG: json.dumps(hf_config(args, tokenizer), indent=2).encode("utf-8"),
            TUIGPT_META: json.dumps({"tokenizer": tokenizer, **provenance}, indent=2).encode("utf-8")}
