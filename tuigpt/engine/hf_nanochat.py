"""Hugging Face's NanoChat layout (transformers >= 5.0, ``NanoChatForCausalLM``), read into tuigpt's model and
written from it: the layout of a model with nanochat's block (rope, qk_norm and rmsnorm on).

transformers' NanoChat computes nanochat's GPT as it was released (github.com/karpathy/nanochat, ported in
huggingface/transformers#41634): rotary embeddings with nanochat's sign (its ``rotate_half`` is flipped to match),
then per-head RMSNorm of queries and keys, parameter-free RMSNorm after the embedding, before each sub-block and
before the head, a two-matrix MLP whose activation is ``hidden_act`` (``relu2``, ``gelu``, ``gelu_new``), an
optional head soft-cap (``final_logit_softcapping``) and an optional tie of the head to the embedding. That is
tuigpt's block with those three switches on, whatever relu2, untied_head and logit_softcap say; the MLP has no
biases there, so bias must be off. tuigpt's one ``c_attn`` matrix is its q_proj, k_proj and v_proj stacked.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from tuigpt.engine.model import RMS_EPS, ModelArgs
from tuigpt.run.errors import UserError

MODEL_TYPE = "nanochat"
ARCHITECTURE = "NanoChatForCausalLM"
NEEDS = ("rope", "qk_norm", "rmsnorm")  # the switches transformers' NanoChat always computes
ACTIVATIONS = {"relu2": (True, "exact"), "gelu": (False, "exact"), "gelu_new": (False, "tanh"),
               "gelu_pytorch_tanh": (False, "tanh")}  # hidden_act -> (relu2, gelu)
PROJECTIONS = {"q_proj": 0, "k_proj": 1, "v_proj": 2}  # rows of c_attn, in thirds


def fits(args: ModelArgs) -> bool:
    return all(getattr(args, key) for key in NEEDS) and not args.bias


def config(args: ModelArgs, special: dict[str, int | None]) -> dict[str, Any]:
    """config.json for NanoChatForCausalLM computing the same function as tuigpt's GPT."""
    act = "relu2" if args.relu2 else "gelu_new" if args.gelu == "tanh" else "gelu"
    return {
        "architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "vocab_size": args.vocab_size,
        "hidden_size": args.n_embd, "intermediate_size": 4 * args.n_embd, "num_hidden_layers": args.n_layer,
        "num_attention_heads": args.n_head, "num_key_value_heads": args.n_head,
        "max_position_embeddings": args.block_size, "hidden_act": act, "attention_dropout": args.dropout,
        "rms_norm_eps": RMS_EPS, "initializer_range": 0.02,
        "rope_parameters": {"rope_type": "default", "rope_theta": args.rope_theta},
        "final_logit_softcapping": args.logit_softcap or None, "attention_bias": False,
        "tie_word_embeddings": not args.untied_head, "torch_dtype": "float32",
        "bos_token_id": special.get("bos"), "eos_token_id": special.get("eos"), "pad_token_id": None,
    }


def tensors(state: dict[str, torch.Tensor], args: ModelArgs) -> dict[str, torch.Tensor]:
    """NanoChatForCausalLM's tensors from tuigpt's state dict (a tied head left out, as transformers does)."""
    c = args.n_embd
    out = {"model.embed_tokens.weight": state["transformer.wte.weight"]}
    for i in range(args.n_layer):
        ours, theirs = f"transformer.h.{i}", f"model.layers.{i}"
        qkv = state[f"{ours}.attn.c_attn.weight"]
        for name, third in PROJECTIONS.items():
            out[f"{theirs}.self_attn.{name}.weight"] = qkv[third * c:(third + 1) * c]
        out[f"{theirs}.self_attn.o_proj.weight"] = state[f"{ours}.attn.c_proj.weight"]
        out[f"{theirs}.mlp.fc1.weight"] = state[f"{ours}.mlp.c_fc.weight"]
        out[f"{theirs}.mlp.fc2.weight"] = state[f"{ours}.mlp.c_proj.weight"]
    if args.untied_head:
        out["lm_head.weight"] = state["lm_head.weight"]
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in out.items()}


def read_args(cfg: dict[str, Any], where: str) -> ModelArgs:
    """The model a NanoChat config.json describes; UserError naming what tuigpt's GPT cannot compute exactly."""
    try:
        n_embd, n_layer, n_head = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"]), int(cfg["num_attention_heads"])
        vocab, positions = int(cfg["vocab_size"]), int(cfg.get("max_position_embeddings", 2048))
        kv_heads = int(cfg.get("num_key_value_heads") or n_head)
        inner = int(cfg.get("intermediate_size") or 4 * n_embd)
        theta = float((cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 10_000.0)))
        cap = float(cfg.get("final_logit_softcapping") or 0.0)
        eps = float(cfg.get("rms_norm_eps", 1e-6))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{where}: needs hidden_size, num_hidden_layers, num_attention_heads and vocab_size "
                        f"({exc})") from None
    act = cfg.get("hidden_act", "relu2")
    rope_type = (cfg.get("rope_parameters") or {}).get("rope_type", "default")
    differences = []
    if act not in ACTIVATIONS:
        differences.append(f"hidden_act {act!r} (tuigpt computes {', '.join(ACTIVATIONS)})")
    if kv_heads != n_head:
        differences.append(f"num_key_value_heads {kv_heads} (grouped-query attention; tuigpt's is {n_head})")
    if inner != 4 * n_embd:
        differences.append(f"intermediate_size {inner} (tuigpt's MLP is 4 * hidden_size = {4 * n_embd} wide)")
    if not math.isclose(eps, RMS_EPS):
        differences.append(f"rms_norm_eps {eps:g} (tuigpt's is {RMS_EPS:g})")
    if rope_type != "default":
        differences.append(f"rope_type {rope_type!r} (tuigpt rotates as the default rope does)")
    if cfg.get("attention_bias"):
        differences.append("attention_bias true")
    if cfg.get("head_dim") not in (None, n_embd // max(n_head, 1)):
        differences.append(f"head_dim {cfg['head_dim']}")
    if n_head < 1 or n_embd % n_head or (n_embd // n_head) % 2:
        differences.append(f"hidden_size {n_embd} not divisible into {n_head} heads of an even size")
    if not (cap == 0 or cap >= 1):
        differences.append(f"final_logit_softcapping {cap:g} (tuigpt's is off or at least 1)")
    if differences:
        raise UserError(f"{where}: this NanoChat variant cannot be computed by tuigpt's model: {'; '.join(differences)}")
    relu2, gelu = ACTIVATIONS[act]
    return ModelArgs(vocab_size=vocab, block_size=positions, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                     dropout=0.0, bias=False, gelu=gelu, rope=True, qk_norm=True, relu2=relu2, rmsnorm=True,
                     untied_head=not cfg.get("tie_word_embeddings", False), logit_softcap=cap, rope_theta=theta)


def read_weights(raw: dict[str, torch.Tensor], args: ModelArgs, where: str) -> dict[str, torch.Tensor]:
    """tuigpt's state dict from NanoChatForCausalLM's tensors (``model.`` prefix optional), float32."""
    raw = {k.removeprefix("model."): v.to(torch.float32) for k, v in raw.items()}
    try:
        wte = raw["embed_tokens.weight"]
        state = {"transformer.wte.weight": wte}
        for i in range(args.n_layer):
            ours, theirs = f"transformer.h.{i}", f"layers.{i}"
            state[f"{ours}.attn.c_attn.weight"] = torch.cat([raw[f"{theirs}.self_attn.{name}.weight"]
                                                            for name in PROJECTIONS])
            state[f"{ours}.attn.c_proj.weight"] = raw[f"{theirs}.self_attn.o_proj.weight"]
            state[f"{ours}.mlp.c_fc.weight"] = raw[f"{theirs}.mlp.fc1.weight"]
            state[f"{ours}.mlp.c_proj.weight"] = raw[f"{theirs}.mlp.fc2.weight"]
    except KeyError as exc:
        raise UserError(f"{where} has no {exc.args[0]}: not NanoChat weights") from None
    head = raw.get("lm_head.weight")
    if args.untied_head:
        if head is None:
            raise UserError(f"{where} has no lm_head.weight, and its config unties the head from the embedding")
        state["lm_head.weight"] = head
    else:
        if head is not None and not torch.equal(head, wte):
            raise UserError(f"{where}: lm_head differs from embed_tokens, and its config ties them: set "
                            f"tie_word_embeddings to false in its config.json")
        state["lm_head.weight"] = wte
    return state
