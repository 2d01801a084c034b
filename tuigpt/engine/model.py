"""GPT: pre-norm transformer blocks, nanoGPT's by default, with nanochat's block switches, and its FLOP counts.

Every switch off is GPT-2's block as nanoGPT builds it (learned positions, LayerNorm with gains, GELU, the head
tied to the token embedding, GPT-2's initialisation): a model_args without the switches (every checkpoint written
before they existed, nanoGPT's ckpt.pt, GPT-2's weights) builds exactly the model it built then. Each switch on
is a part of nanochat's GPT (github.com/karpathy/nanochat, nanochat/gpt.py, read at 92d63d4), which issue 22
measures one by one:

- ``rope``: rotary position embeddings on queries and keys (``apply_rotary_emb``, nanochat's sign convention: a
  rotation by -θ, which HF's NanoChat model computes too); no learned position table.
- ``qk_norm``: queries and keys RMS-normalised per head after the rotation, as nanochat does (its later 1.2 × q/k
  sharpening is left out: transformers' NanoChat model does not compute it, and it is a tuning, not a block).
- ``relu2``: the MLP's activation is ReLU² (``F.relu(x).square()``) instead of GELU.
- ``rmsnorm``: nanochat's normalisation: parameter-free RMSNorm before each sub-block, after the token embedding and
  before the head (``norm(x)``), instead of LayerNorm with gains.
- ``untied_head``: the output layer is its own matrix, not the token embedding.
- ``zero_init``: the output projections of attention and MLP (``c_proj``) start at zero, so every block starts as
  the identity (nanochat's ``init_weights``).
- ``logit_softcap``: logits squashed smoothly into (-cap, cap), ``cap · tanh(logits / cap)`` (nanochat: 15).

Shapes in comments: B batch, T time (tokens), C channels (n_embd), nh heads, hs head size (C // nh), V vocab.
Text generation lives in :mod:`tuigpt.engine.sampling`; its key/value cache is :class:`KVCache` here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
from torch.nn import functional as F

from tuigpt.engine.adamw import AdamW
from tuigpt.run.config import SWITCHES

RMS_EPS = 1e-6  # transformers' NanoChatConfig.rms_norm_eps; nanochat's F.rms_norm default is the dtype's epsilon
ROPE_THETA = 10_000.0  # the rotary base of nanochat's first release and of the model transformers ports


@dataclass(frozen=True)
class ModelArgs:
    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = False
    # GELU as nanoGPT computes it ("exact", erf) or as OpenAI's GPT-2 weights were trained ("tanh", HF's gelu_new)
    gelu: str = "exact"
    # nanochat's block switches (see the module docstring); every default is GPT-2's, so older model_args keep
    # meaning what they meant
    rope: bool = False
    qk_norm: bool = False
    relu2: bool = False
    rmsnorm: bool = False
    untied_head: bool = False
    zero_init: bool = False
    logit_softcap: float = 0.0  # 0: off
    rope_theta: float = ROPE_THETA

    def to_dict(self) -> dict:
        return asdict(self)

    def switches(self) -> dict[str, bool | float]:
        """The block switches that are on (empty for GPT-2's block), by name."""
        defaults = {f.name: f.default for f in fields(self) if f.name in SWITCHES}
        return {name: getattr(self, name) for name in SWITCHES if getattr(self, name) != defaults[name]}


def padded_vocab(tokens: int) -> int:
    """The model vocabulary for a tokenizer of ``tokens`` ids: large ones padded to a multiple of 64 (nanoGPT's
    50304) for faster matmuls; the extra ids are never produced by the tokenizer and never decoded."""
    return (tokens + 63) // 64 * 64 if tokens > 1024 else tokens


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (torch's has no bias=False before 2.1 in all paths)."""

    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class RMSNorm(nn.Module):
    """nanochat's ``norm``: x / rms(x) over the last dimension, no gain, no bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x)


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),), eps=RMS_EPS)


def make_norm(args: ModelArgs) -> nn.Module:
    return RMSNorm() if args.rmsnorm else LayerNorm(args.n_embd, bias=args.bias)


def rotary_tables(head_size: int, positions: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotation by the angles pos · θ^(-2i/hs) (nanochat's ``_precompute_rotary_embeddings``, in float32) as two
    tables (positions, hs) for :func:`apply_rotary`: cos twice over, and sin then -sin."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size))
    angles = torch.outer(torch.arange(positions, dtype=torch.float32), inv_freq)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat([cos, cos], dim=-1), torch.cat([sin, -sin], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the pairs (x[..., i], x[..., i + hs/2]) of x (B, T, ..., hs) by the tables of :func:`rotary_tables`
    for its T positions, as nanochat's ``apply_rotary_emb`` (its sign: by -θ; only the relative rotation of q and k
    matters): [x1 cos + x2 sin, x2 cos - x1 sin] as x · cos + [x2, x1] · sin, the same products and sums to the bit
    in four kernels instead of seven, for q and k at once: the baby GPT's forward + backward 0.90x / 0.84x the time
    on an H100 (benchmarks/rotary_step.py, medians of 5 rounds in two calls), the default CPU shape's 0.97x."""
    shape = (x.size(1),) + (1,) * (x.dim() - 3) + (x.size(-1),)  # (T, 1, ..., hs): broadcast over B and the heads
    # [x2, x1] as a roll by half the head: one kernel each way, where slicing and cat took one forward and, in
    # the backward, a zero-filled copy of x per slice and their sum
    return x * cos.view(shape) + x.roll(x.size(-1) // 2, dims=-1) * sin.view(shape)


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast computes matmuls in on this device type, or None when autocast is off."""
    try:
        return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    except (AttributeError, TypeError):  # torch < 2.4 has no per-device form: cast where used instead
        return None


class KVCache:
    """Each layer's keys and values (B, nh, t, hs) of the tokens seen so far, for generation one token at a time.
    Keys are stored rotated and normalised, as attention uses them."""

    def __init__(self, n_layer: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer
        self.length = 0  # tokens held (the position of the next token)

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this call's keys and values to ``layer``'s; all of them so far. The last layer advances length."""
        old_k, old_v = self.keys[layer], self.values[layer]
        k = k if old_k is None else torch.cat([old_k, k], dim=2)
        v = v if old_v is None else torch.cat([old_v, v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        if layer == len(self.keys) - 1:
            self.length = k.size(2)
        return k, v


class CausalSelfAttention(nn.Module):
    def __init__(self, args: ModelArgs, layer: int) -> None:
        super().__init__()
        # q, k and v in one matrix, nanoGPT's layout (nanochat has three; the Hugging Face export splits this one)
        self.c_attn = nn.Linear(args.n_embd, 3 * args.n_embd, bias=args.bias)
        self.c_proj = nn.Linear(args.n_embd, args.n_embd, bias=args.bias)
        self.resid_dropout = nn.Dropout(args.dropout)
        self.n_head = args.n_head
        self.n_embd = args.n_embd
        self.dropout = args.dropout
        self.qk_norm = args.qk_norm
        self.layer = layer

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.size()  # batch size, sequence length, embedding dimensionality (n_embd)
        # query, key, values for all heads in one matmul, then the head becomes a batch dimension
        if rotary is None and not self.qk_norm:
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
            k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
            v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        else:  # q and k rotated and normalised together: half the kernels
            # split and unbind, not indexing: their backward is one cat/stack, where an index's backward is a
            # zero-filled copy of the whole (B, T, 3, nh, hs) gradient per index
            qk, v = self.c_attn(x).view(B, T, 3, self.n_head, C // self.n_head).split([2, 1], dim=2)
            if rotary is not None:
                cos, sin = rotary
                qk = apply_rotary(qk, cos.to(qk.dtype), sin.to(qk.dtype))  # no-ops once cast (GPT._hidden)
            if self.qk_norm:  # after the rotation, as nanochat (a rotation keeps the norm, so the order is the same)
                qk = rms_norm(qk)
            q, k = (t.transpose(1, 2) for t in qk.unbind(2))
            v = v.squeeze(2).transpose(1, 2)
        causal, mask = True, None
        if cache is not None:
            past = cache.length
            k, v = cache.extend(self.layer, k, v)
            if past:  # new queries see every cached key; among themselves, causally
                causal = False
                if T > 1:
                    mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
        # causal self-attention: (B, nh, T, hs) x (B, nh, hs, T) -> (B, nh, T, T) -> (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0, is_causal=causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs side by side
        return self.resid_dropout(self.c_proj(y))  # output projection


class MLP(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.c_fc = nn.Linear(args.n_embd, 4 * args.n_embd, bias=args.bias)
        self.gelu = nn.GELU(approximate="tanh" if args.gelu == "tanh" else "none")
        self.relu2 = args.relu2
        self.c_proj = nn.Linear(4 * args.n_embd, args.n_embd, bias=args.bias)
        self.dropout = nn.Dropout(args.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)  # (B, T, C) -> (B, T, 4C)
        # ReLU²: nanochat's note on its MLP says it beat SwiGLU at d12 and d20
        h = F.relu(h).square() if self.relu2 else self.gelu(h)
        return self.dropout(self.c_proj(h))  # (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    def __init__(self, args: ModelArgs, layer: int) -> None:
        super().__init__()
        self.ln_1 = make_norm(args)
        self.attn = CausalSelfAttention(args, layer)
        self.ln_2 = make_norm(args)
        self.mlp = MLP(args)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rotary, cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        modules = dict(wte=nn.Embedding(args.vocab_size, args.n_embd))
        if not args.rope:
            modules["wpe"] = nn.Embedding(args.block_size, args.n_embd)
        modules.update(drop=nn.Dropout(args.dropout), h=nn.ModuleList([Block(args, i) for i in range(args.n_layer)]),
                       ln_f=make_norm(args))
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(args.n_embd, args.vocab_size, bias=False)
        if not args.untied_head:
            self.transformer.wte.weight = self.lm_head.weight  # tied embeddings
        if args.rope:  # not saved: computed from the shape (persistent=False keeps checkpoints as they were)
            cos, sin = rotary_tables(args.n_embd // args.n_head, args.block_size, args.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer); zero_init: zero (nanochat). Drawn either way,
        # so the random stream of every other weight is the same with the switch on or off.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * args.n_layer))
                if args.zero_init:
                    torch.nn.init.zeros_(p)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, counted once though tied; non_embedding drops the lookup tables, which no matmul uses: the
        position embeddings (as nanoGPT) and an untied token embedding (a tied one is the head's matmul)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
            if self.args.untied_head:
                n -= self.transformer.wte.weight.numel()
        return n

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward + backward), PaLM appendix B as nanoGPT and nanochat use it.

        6N for the weight matmuls (2 forward, 4 backward per parameter) plus
        12·L·H·Q·T for attention scores and values, with N the non-embedding
        parameters, L layers, H heads, Q head size and T the block size.
        The switches' element-wise work (rotation, norms, ReLU², soft-cap) is
        not counted, as no matmul FLOP counter counts it.
        """
        a = self.args
        return 6 * self.num_params() + 12 * a.n_layer * a.n_head * (a.n_embd // a.n_head) * a.block_size

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
                reduction: str = "mean") -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Without targets: the last position's logits (B, 1, V) for generation (``cache``: the tokens before
        ``idx`` are in it, and ``idx``'s are added). With them: (None, the loss), the mean over the targets, or with
        ``reduction="none"`` each target's (B*T,), as evals weigh them by bytes."""
        x = self._hidden(idx, cache)
        if targets is None:
            return self._head(x[:, [-1], :]), None  # generation needs only the last position: (B, 1, V)
        logits = self._head(x)  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1), ignore_index=-1,
                               reduction=reduction)
        # No logits with the loss: a caller holding them would keep (B, T, V) alive through the backward pass
        # (3.3 GB in bf16 at GPT-2's 32 x 1024 micro-batch), and a compiled graph would have to write them out.
        return None, loss

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Every position's logits (B, T, V), for checks and conversions; training never asks for them."""
        return self._head(self._hidden(idx))

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(x)
        cap = self.args.logit_softcap
        if cap:  # in float32, as nanochat, before the loss
            logits = cap * torch.tanh(logits.float() / cap)
        return logits

    def _hidden(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The final norm's output (B, T, C) for token ids (B, T) at positions from ``cache.length`` (or 0) on."""
        _, t = idx.size()
        start = cache.length if cache is not None else 0
        if start + t > self.args.block_size:
            raise ValueError(f"sequence of {start + t} tokens is longer than block_size {self.args.block_size}")
        x = self.transformer.wte(idx)  # token embeddings (B, T, C)
        rotary = None
        if self.args.rope:
            rotary = self.rope_cos[start:start + t], self.rope_sin[start:start + t]  # (T, hs) each
            dtype = autocast_dtype(idx.device.type)
            if dtype is not None:  # once a forward pass, not in every layer (q and k are 16-bit under autocast)
                rotary = rotary[0].to(dtype), rotary[1].to(dtype)
        else:
            pos = torch.arange(start, start + t, dtype=torch.long, device=idx.device)  # (T,)
            x = x + self.transformer.wpe(pos)  # position embeddings (T, C)
        if self.args.rmsnorm:
            x = rms_norm(x)  # nanochat normalises the embedding before the first block
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, rotary, cache)  # (B, T, C)
        return self.transformer.ln_f(x)

    def make_optimizer(self, weight_decay: float, learning_rate: float, betas: tuple[float, float],
                       device_type: str) -> torch.optim.AdamW:
        """AdamW over :meth:`param_groups`, fused (one kernel for all parameters) on CUDA and on CPU where this
        torch has the fused CPU kernel; the for-each/for-loop implementation elsewhere."""
        groups = self.param_groups(weight_decay)
        if device_type in ("cuda", "cpu"):
            try:
                return AdamW(groups, lr=learning_rate, betas=betas, fused=True)
            except (RuntimeError, ValueError):  # an older torch without the fused kernel for this device
                pass
        return AdamW(groups, lr=learning_rate, betas=betas)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """2-D weights decay; biases and LayerNorm gains do not."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
