"""nanoGPT and Hugging Face GPT-2 files as their own code lays them out, built here from those documented layouts
(never by tuigpt's writers), and a reference GPT-2 forward pass written against the raw tensors.

The reference is independent of tuigpt's GPT: it reads each layout's own names and orientation (nanoGPT's
Linear (out, in) weights, GPT-2's Conv1D (in, out) weights), so a wrong transpose or name in tuigpt's readers
gives another loss here.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import torch
from torch.nn import functional as F

# nanoGPT model.py: GPT.transformer = ModuleDict(wte, wpe, drop, h=[Block(ln_1, attn(c_attn, c_proj), ln_2,
# mlp(c_fc, c_proj))], ln_f), lm_head (tied to wte); LayerNorm(weight, bias if bias)
BLOCK_PARAMS = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                "mlp.c_proj.weight", "mlp.c_proj.bias")
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def nanogpt_names(n_layer: int, bias: bool) -> list[str]:
    """A nanoGPT GPT's state_dict keys (flash attention: no attn.bias mask buffer)."""
    names = ["transformer.wte.weight", "transformer.wpe.weight"]
    for i in range(n_layer):
        names += [f"transformer.h.{i}.{p}" for p in BLOCK_PARAMS if bias or not p.endswith(".bias")]
    names += ["transformer.ln_f.weight"] + (["transformer.ln_f.bias"] if bias else []) + ["lm_head.weight"]
    return names


def random_gpt(vocab: int, block: int, n_layer: int, n_embd: int, bias: bool, seed: int = 0) -> dict:
    """Random weights in nanoGPT's layout (Linear weights (out, in)); LayerNorm gains near 1."""
    g = torch.Generator().manual_seed(seed)
    c = n_embd
    shapes = {"ln_1.weight": (c,), "ln_1.bias": (c,), "attn.c_attn.weight": (3 * c, c), "attn.c_attn.bias": (3 * c,),
              "attn.c_proj.weight": (c, c), "attn.c_proj.bias": (c,), "ln_2.weight": (c,), "ln_2.bias": (c,),
              "mlp.c_fc.weight": (4 * c, c), "mlp.c_fc.bias": (4 * c,), "mlp.c_proj.weight": (c, 4 * c),
              "mlp.c_proj.bias": (c,)}
    sd = {"transformer.wte.weight": torch.randn(vocab, c, generator=g) * 0.3,
          "transformer.wpe.weight": torch.randn(block, c, generator=g) * 0.1}
    for i in range(n_layer):
        for p, shape in shapes.items():
            if p.endswith(".bias") and not bias:
                continue
            base = 1.0 if p.startswith("ln_") and p.endswith("weight") else 0.0
            sd[f"transformer.h.{i}.{p}"] = base + torch.randn(*shape, generator=g) * 0.2
    sd["transformer.ln_f.weight"] = 1.0 + torch.randn(c, generator=g) * 0.1
    if bias:
        sd["transformer.ln_f.bias"] = torch.randn(c, generator=g) * 0.1
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    return sd


def reference_logits(weights: dict, idx: torch.Tensor, n_head: int, *, conv1d: bool, gelu: str) -> torch.Tensor:
    """GPT-2's forward pass from raw tensors named as in ``nanogpt_names`` (``transformer.`` prefix); ``conv1d``:
    the four projection weights are (in, out) as in GPT-2's files."""
    def w(name: str) -> torch.Tensor:
        return weights[name].float()

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        weight = w(f"{name}.weight")
        y = x @ weight if conv1d else x @ weight.t()
        bias = weights.get(f"{name}.bias")
        return y + bias.float() if bias is not None else y

    def norm(x: torch.Tensor, name: str) -> torch.Tensor:
        bias = weights.get(f"{name}.bias")
        return F.layer_norm(x, (x.size(-1),), w(f"{name}.weight"), None if bias is None else bias.float(), 1e-5)

    b, t = idx.shape
    x = w("transformer.wte.weight")[idx] + w("transformer.wpe.weight")[:t]
    c = x.size(-1)
    n_layer = len({k.split(".")[2] for k in weights if k.startswith("transformer.h.")})
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for i in range(n_layer):
        h = f"transformer.h.{i}"
        q, k, v = linear(norm(x, f"{h}.ln_1"), f"{h}.attn.c_attn").split(c, dim=2)
        q, k, v = (z.view(b, t, n_head, c // n_head).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(c // n_head)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        x = x + linear(y, f"{h}.attn.c_proj")
        m = F.gelu(linear(norm(x, f"{h}.ln_2"), f"{h}.mlp.c_fc"), approximate="tanh" if gelu == "tanh" else "none")
        x = x + linear(m, f"{h}.mlp.c_proj")
    return norm(x, "transformer.ln_f") @ w("transformer.wte.weight").t()


def reference_loss(weights: dict, sampler, n_head: int, *, seed: int, iters: int, conv1d: bool = False,
                   gelu: str = "exact") -> float:
    """The val loss tuigpt's first eval reports, computed by the reference forward on the same batches (the
    eval's generator is seeded by seed and iteration 0, as tuigpt.engine.evaluation does)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + 0 * 2 + 1)
    losses = []
    for _ in range(iters):
        x, y = sampler.get_batch("val", generator=g)
        logits = reference_logits(weights, x, n_head, conv1d=conv1d, gelu=gelu)
        losses.append(F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1)).item())
    return sum(losses) / len(losses)


def write_nanogpt_ckpt(path: Path, weights: dict, model_args: dict, *, iter_num: int, best_val_loss: float,
                       dataset: str, compiled: bool = True, mask_buffers: bool = True,
                       optimizer: dict | None = None) -> None:
    """ckpt.pt as nanoGPT's train.py saves it: the compiled model's keys carry ``_orig_mod.``, a model built
    without flash attention has ``attn.bias`` causal-mask buffers, best_val_loss is a 0-d tensor."""
    model = {}
    for key, value in weights.items():
        model[("_orig_mod." if compiled else "") + key] = value
    if mask_buffers:
        t = model_args["block_size"]
        for i in range(model_args["n_layer"]):
            mask = torch.tril(torch.ones(t, t)).view(1, 1, t, t)
            model[("_orig_mod." if compiled else "") + f"transformer.h.{i}.attn.bias"] = mask
    config = {"out_dir": str(path.parent), "eval_interval": 250, "log_interval": 10, "eval_iters": 200,
              "eval_only": False, "always_save_checkpoint": False, "init_from": "scratch", "wandb_log": False,
              "wandb_project": "shakespeare-char", "wandb_run_name": "mini-gpt", "dataset": dataset,
              "gradient_accumulation_steps": 1, "batch_size": 4, "block_size": model_args["block_size"],
              "n_layer": model_args["n_layer"], "n_head": model_args["n_head"], "n_embd": model_args["n_embd"],
              "dropout": 0.2, "bias": model_args["bias"], "learning_rate": 1e-3, "max_iters": 5000,
              "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.99, "grad_clip": 1.0, "decay_lr": True,
              "warmup_iters": 100, "lr_decay_iters": 5000, "min_lr": 1e-4, "backend": "nccl", "device": "cuda",
              "dtype": "bfloat16", "compile": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "optimizer": optimizer or {"state": {}, "param_groups": []},
                "model_args": model_args, "iter_num": iter_num, "best_val_loss": torch.tensor(best_val_loss),
                "config": config}, path)


def write_meta_pkl(path: Path, chars: str) -> None:
    """meta.pkl as nanoGPT's data/shakespeare_char/prepare.py writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)),
                     "stoi": {ch: i for i, ch in enumerate(chars)}}, f)


def write_hf_snapshot(folder: Path, weights: dict, *, n_head: int, activation: str = "gelu_new",
                      prefix: str = "", **config_overrides) -> None:
    """A GPT-2 snapshot folder as the ``gpt2`` repository holds it: config.json with GPT-2's keys and
    model.safetensors with Conv1D (in, out) weights, no lm_head (tied), the old ``attn.bias``/``attn.masked_bias``
    buffers, and (``prefix=""``) no ``transformer.`` prefix."""
    from safetensors.torch import save_file

    wte = weights["transformer.wte.weight"]
    n_layer = len({k.split(".")[2] for k in weights if k.startswith("transformer.h.")})
    block = weights["transformer.wpe.weight"].size(0)
    tensors = {}
    for key, value in weights.items():
        if key == "lm_head.weight":
            continue
        name = prefix + key.removeprefix("transformer.")
        tensors[name] = (value.t() if key.endswith(CONV1D) else value).contiguous().clone()
    for i in range(n_layer):
        tensors[f"{prefix}h.{i}.attn.bias"] = torch.tril(torch.ones(block, block)).view(1, 1, block, block)
        tensors[f"{prefix}h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    config = {"activation_function": activation, "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
              "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
              "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": block, "n_embd": wte.size(1),
              "n_head": n_head, "n_inner": None, "n_layer": n_layer, "n_positions": block, "resid_pdrop": 0.1,
              "scale_attn_weights": True, "vocab_size": wte.size(0), **config_overrides}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def read_hf_as_nanogpt(folder: Path) -> dict:
    """The tensors of an HF folder under nanoGPT's names, still in Conv1D layout (for reference_logits)."""
    from safetensors.torch import load_file

    out = {}
    for key, value in load_file(str(folder / "model.safetensors")).items():
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        out["transformer." + key.removeprefix("transformer.")] = value
    return out


def nanogpt_init(model_args: dict, seed: int) -> dict:
    """The weights nanoGPT's ``GPT(GPTConfig(...))`` holds after ``torch.manual_seed(seed)``, from its documented
    order. Building the modules draws first (nn.Embedding: normal; nn.Linear: kaiming-uniform weight, uniform
    bias), in the order wte, wpe, each block's c_attn, c_proj, c_fc, c_proj, then lm_head; then
    ``self.apply(_init_weights)`` draws again in that order (normal 0.02, biases zero; lm_head is wte, tied);
    then every ``c_proj.weight`` is drawn again with std 0.02/sqrt(2 * n_layer)."""
    c, layers, bias = model_args["n_embd"], model_args["n_layer"], model_args["bias"]
    linears = (("attn.c_attn", 3 * c, c), ("attn.c_proj", c, c), ("mlp.c_fc", 4 * c, c), ("mlp.c_proj", c, 4 * c))
    torch.manual_seed(seed)
    for shape in ((model_args["vocab_size"], c), (model_args["block_size"], c)):
        torch.empty(shape).normal_()
    for _ in range(layers):
        for _, out, inp in linears:
            torch.empty(out, inp).uniform_()
            if bias:
                torch.empty(out).uniform_()
    torch.empty(model_args["vocab_size"], c).uniform_()  # lm_head, before it is tied
    sd = {"transformer.wte.weight": torch.empty(model_args["vocab_size"], c).normal_(0, 0.02),
          "transformer.wpe.weight": torch.empty(model_args["block_size"], c).normal_(0, 0.02)}
    for i in range(layers):
        h = f"transformer.h.{i}"
        for name, out, inp in linears:
            sd[f"{h}.{name}.weight"] = torch.empty(out, inp).normal_(0, 0.02)
            if bias:
                sd[f"{h}.{name}.bias"] = torch.zeros(out)
        for norm in ("ln_1", "ln_2"):
            sd[f"{h}.{norm}.weight"] = torch.ones(c)
            if bias:
                sd[f"{h}.{norm}.bias"] = torch.zeros(c)
    sd["transformer.ln_f.weight"] = torch.ones(c)
    if bias:
        sd["transformer.ln_f.bias"] = torch.zeros(c)
    sd["transformer.wte.weight"].normal_(0, 0.02)  # lm_head's own draw, into the tied matrix
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    for i in range(layers):
        for name in ("attn.c_proj", "mlp.c_proj"):
            sd[f"transformer.h.{i}.{name}.weight"].normal_(0, 0.02 / math.sqrt(2 * layers))
    return sd
