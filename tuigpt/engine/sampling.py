"""Text generation, shared by the trainer (the `s` key, a watcher's sample) and `tuigpt sample`.

Temperature 0 (or anything below GREEDY_BELOW) means greedy decoding: dividing logits by a tiny
temperature would overflow float32 into inf/NaN. Prompt characters the tokenizer does not know are
reported, not silently dropped.

On CUDA, generation keeps attention off cuDNN: the context grows by one token a step, and cuDNN's attention
builds an execution plan for every new shape (hundreds of ms each, reported for torch 2.11 on Hopper and
Blackwell), which torch 2.11 on an H200 picks first; a 200-token sample of the baby GPT there was still running
after 8 s (a CPU samples the default model's 200 tokens in 0.6 s). Flash, memory-efficient and math attention
have no per-shape set-up. Training keeps whatever torch picks: its shapes never change.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from tuigpt.engine.data import Tokenizer
from tuigpt.engine.model import GPT, KVCache
from tuigpt.run.commands import Sample
from tuigpt.run.events import Event, Notice, SampleGenerated

GREEDY_BELOW = 1e-4  # temperatures under this pick the most likely token


@dataclass(frozen=True)
class Generated:
    prompt: str  # the prompt as the model saw it (unknown characters removed)
    text: str  # the new text only
    unknown: str  # prompt characters the tokenizer has no token for (dropped)


def settings(max_new_tokens: int | None, temperature: float | None, top_k: int | None,
             config: dict[str, Any]) -> dict[str, Any]:
    """Generation settings: each one given, or else the run's ``sample_*`` config value."""
    return {
        "max_new_tokens": max_new_tokens or int(config.get("sample_max_new_tokens") or 200),
        "temperature": temperature if temperature is not None else float(config.get("sample_temperature", 0.8)),
        "top_k": top_k if top_k is not None else config.get("sample_top_k"),
    }


def varying_length_attention(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Attention backends for calls whose sequence length changes every time (generation): on CUDA every
    backend but cuDNN, in torch's own order; elsewhere torch's choice."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


@torch.no_grad()
def generate(model: GPT, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None, cache: bool = True) -> torch.Tensor:
    """Append ``max_new_tokens`` tokens to ``idx`` (B, T), the context cropped to the last block_size tokens.

    ``cache``: each layer's keys and values are kept (:class:`KVCache`), so a new token costs one position's
    forward, not the whole context's. Once the context fills block_size, each token re-reads the last block_size
    tokens as the uncached path does (learned positions are absolute: a token's keys change with the window),
    so both paths compute the same logits at every step."""
    block_size = model.args.block_size
    kv: KVCache | None = None
    with varying_length_attention(idx.device):
        for _ in range(max_new_tokens):
            if kv is not None and kv.length < block_size:
                logits, _ = model(idx[:, -1:], cache=kv)  # only the newest token: the rest are in the cache
            else:  # the first step, or a full window: the last block_size tokens from position 0
                kv = KVCache(model.args.n_layer) if cache else None
                logits, _ = model(idx[:, -block_size:], cache=kv)
            logits = logits[:, -1, :].float()  # (B, V)
            if temperature < GREEDY_BELOW:
                idx_next = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float("inf")
                probs = F.softmax(logits, dim=-1)
                idx_next = torch.multinomial(probs, num_samples=1, generator=generator)
            idx = torch.cat((idx, idx_next), dim=1)
    return idx


def generate_text(model: GPT, tokenizer: Tokenizer, prompt: str, *, max_new_tokens: int, temperature: float,
                  top_k: int | None, generator: torch.Generator,
                  autocast: contextlib.AbstractContextManager[Any] | None = None) -> Generated:
    """Continue ``prompt``; the model is put in eval mode for the call and restored after."""
    device = next(model.parameters()).device
    ids = tokenizer.encode(prompt)
    unknown = tokenizer.unknown_chars(prompt)
    idx = torch.tensor([ids or [0]], dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        with autocast or contextlib.nullcontext():
            out = generate(model, idx, max_new_tokens, temperature=temperature, top_k=top_k, generator=generator)
    finally:
        model.train(was_training)
    new_ids = [i for i in out[0, idx.size(1):].tolist() if i < tokenizer.vocab_size]
    return Generated(prompt=tokenizer.decode(ids), text=tokenizer.decode(new_ids), unknown=unknown)


def seeded_generator(device: torch.device, seed: int) -> torch.Generator:
    """The random stream `tuigpt sample --seed` draws from."""
    return torch.Generator(device=device).manual_seed(seed)


def sample_events(model: GPT, tokenizer: Tokenizer, command: Sample, config: dict[str, Any], seed: int,
                  iteration: int, autocast: contextlib.AbstractContextManager[Any] | None,
                  timeline: bool = False) -> list[Event]:
    """A run's sample as events to publish: the text, with a warning for dropped prompt characters, or a
    warning that it failed (sampling never ends a run)."""
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    try:
        out = generate_text(model, tokenizer, command.prompt,
                            **settings(command.max_new_tokens, command.temperature, command.top_k, config),
                            generator=torch.Generator(device=device).manual_seed(seed), autocast=autocast)
    except Exception as exc:  # sampling must never end the run
        return [Notice(level="warning", message=f"sampling failed, training goes on: {type(exc).__name__}: "
                       f"{str(exc)[:200]}")]
    events: list[Event] = []
    if out.unknown:
        events.append(Notice(level="warning", message=f"sample prompt: {len(out.unknown)} character(s) not in the "
                             f"vocabulary were left out: {out.unknown[:40]!r}"))
    events.append(SampleGenerated(iter=iteration, prompt=out.prompt, text=out.text,
                                  seconds=time.perf_counter() - t0, timeline=timeline))
    return events
