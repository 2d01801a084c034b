"""GPT: pre-LayerNorm transformer blocks as in nanoGPT, with its parameter and FLOP counts.

Shapes in comments: B batch, T time (tokens), C channels (n_embd), nh heads, hs head size (C // nh), V vocab.
Text generation lives in :mod:`tuigpt.engine.sampling`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


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

    def to_dict(self) -> dict:
        return asdict(self)


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


class CausalSelfAttention(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.c_attn = nn.Linear(args.n_embd, 3 * args.n_embd, bias=args.bias)
        self.c_proj = nn.Linear(args.n_embd, args.n_embd, bias=args.bias)
        self.resid_dropout = nn.Dropout(args.dropout)
        self.n_head = args.n_head
        self.n_embd = args.n_embd
        self.dropout = args.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()  # batch size, sequence length, embedding dimensionality (n_embd)
        # query, key, values for all heads in one matmul, then the head becomes a batch dimension
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        # causal self-attention: (B, nh, T, hs) x (B, nh, hs, T) -> (B, nh, T, T) -> (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs side by side
        return self.resid_dropout(self.c_proj(y))  # output projection


class MLP(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.c_fc = nn.Linear(args.n_embd, 4 * args.n_embd, bias=args.bias)
        self.gelu = nn.GELU(approximate="tanh" if args.gelu == "tanh" else "none")
        self.c_proj = nn.Linear(4 * args.n_embd, args.n_embd, bias=args.bias)
        self.dropout = nn.Dropout(args.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(args.n_embd, bias=args.bias)
        self.attn = CausalSelfAttention(args)
        self.ln_2 = LayerNorm(args.n_embd, bias=args.bias)
        self.mlp = MLP(args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(args.vocab_size, args.n_embd),
            wpe=nn.Embedding(args.block_size, args.n_embd),
            drop=nn.Dropout(args.dropout),
            h=nn.ModuleList([Block(args) for _ in range(args.n_layer)]),
            ln_f=LayerNorm(args.n_embd, bias=args.bias),
        ))
        self.lm_head = nn.Linear(args.n_embd, args.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied embeddings
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * args.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, counted once though tied; non_embedding drops the position embeddings (as nanoGPT)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward + backward), PaLM appendix B as nanoGPT uses it.

        6N for the weight matmuls (2 forward, 4 backward per parameter) plus
        12·L·H·Q·T for attention scores and values, with N the non-embedding
        parameters, L layers, H heads, Q head size and T the block size.
        """
        a = self.args
        return 6 * self.num_params() + 12 * a.n_layer * a.n_head * (a.n_embd // a.n_head) * a.block_size

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Without targets: the last position's logits (B, 1, V) for generation. With them: (None, the loss), the
        mean over the targets, or with ``reduction="none"`` each target's (B*T,), as evals weigh them by bytes."""
        x = self._hidden(idx)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None  # generation needs only the last position: (B, 1, V)
        logits = self.lm_head(x)  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1), ignore_index=-1,
                               reduction=reduction)
        # No logits with the loss: a caller holding them would keep (B, T, V) alive through the backward pass
        # (3.3 GB in bf16 at GPT-2's 32 x 1024 micro-batch), and a compiled graph would have to write them out.
        return None, loss

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Every position's logits (B, T, V), for checks and conversions; training never asks for them."""
        return self.lm_head(self._hidden(idx))

    def _hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """The final layer norm's output (B, T, C) for token ids (B, T)."""
        _, t = idx.size()
        if t > self.args.block_size:
            raise ValueError(f"sequence of {t} tokens is longer than block_size {self.args.block_size}")
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)  # (T,)
        tok_emb = self.transformer.wte(idx)  # token embeddings (B, T, C)
        pos_emb = self.transformer.wpe(pos)  # position embeddings (T, C)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)  # (B, T, C)
        return self.transformer.ln_f(x)

    def make_optimizer(self, weight_decay: float, learning_rate: float, betas: tuple[float, float],
                       device_type: str) -> torch.optim.AdamW:
        """AdamW over :meth:`param_groups`, fused (one kernel for all parameters) on CUDA and on CPU where this
        torch has the fused CPU kernel; the for-each/for-loop implementation elsewhere."""
        groups = self.param_groups(weight_decay)
        if device_type in ("cuda", "cpu"):
            try:
                return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=True)
            except (RuntimeError, ValueError):  # an older torch without the fused kernel for this device
                pass
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """2-D weights decay; biases and LayerNorm gains do not."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
