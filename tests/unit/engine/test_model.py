"""The GPT: FLOP count against torch's own counter, parameter count, generation."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tuigpt.engine.model import GPT, ModelArgs
from tuigpt.run.config import ARCHS


TINY = dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)  # the tiny config


@pytest.mark.parametrize("args", [
    ModelArgs(**TINY),
    ModelArgs(vocab_size=65, block_size=128, n_layer=3, n_head=6, n_embd=192, bias=True),
    ModelArgs(vocab_size=50304, block_size=64, n_layer=1, n_head=12, n_embd=768),  # GPT-2 widths
    # each of nanochat's switches alone, and all of them (the untied head is the one that changes N)
    *[ModelArgs(**TINY, **{key: value}) for key, value in ARCHS["modern"].items()],
    ModelArgs(vocab_size=50304, block_size=64, n_layer=1, n_head=12, n_embd=768, **ARCHS["modern"]),
], ids=lambda a: ",".join(a.switches()) or f"{a.n_layer}x{a.n_embd} vocab {a.vocab_size}")
def test_flops_per_token_matches_flop_counter(args: ModelArgs) -> None:
    torch.manual_seed(0)
    model = GPT(args)
    batch = 2
    x = torch.randint(0, args.vocab_size, (batch, args.block_size))
    counter = FlopCounterMode(display=False)
    # the math backend decomposes attention into matmuls the counter sees (the fused CPU kernel is not counted)
    with sdpa_kernel(SDPBackend.MATH), counter:
        _, loss = model(x, x)
        loss.backward()
    counted = counter.get_total_flops() / (batch * args.block_size)
    assert counted == pytest.approx(model.flops_per_token(), rel=0.10)
    # and the two parts separately: weight matmuls vs 6N, attention matmuls vs 12·L·H·Q·T
    counts = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    weight_matmuls = counts.get("aten.mm", 0) + counts.get("aten.addmm", 0)  # addmm when bias=True
    assert weight_matmuls / (batch * args.block_size) == pytest.approx(6 * model.num_params(), rel=0.02)
    attention = 12 * args.n_layer * args.n_embd * args.block_size
    assert counts["aten.bmm"] / (batch * args.block_size) == pytest.approx(attention, rel=0.02)


def test_parameter_count_ties_embeddings_and_excludes_positions() -> None:
    args = ModelArgs(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    model = GPT(args)
    total = sum(p.numel() for p in model.parameters())  # tied weights appear once
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == total - 64 * 128
    assert model.lm_head.weight is model.transformer.wte.weight


def test_sequence_longer_than_block_size_is_refused() -> None:
    model = GPT(ModelArgs(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(ValueError, match="longer than block_size"):
        model(torch.zeros((1, 5), dtype=torch.long))
