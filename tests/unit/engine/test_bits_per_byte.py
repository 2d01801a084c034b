"""Bits per byte: every eval reports them beside the loss, computed from the tokenizer's bytes per token; checked
against a hand computation on a small text for characters and GPT-2's BPE, whose per-byte denominators are the
same text's bytes however it is cut into tokens."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import tiktoken
import torch
import torch.nn.functional as F

from tuigpt.engine.data import BatchSampler, load_dataset
from tuigpt.engine.data.tokenizer import CharTokenizer, TiktokenTokenizer
from tuigpt.engine.evaluation import batch_loss, estimate_loss
from tuigpt.engine.model import GPT, ModelArgs
from tuigpt.run.numbers import bits_per_byte, loss_in_bits_per_byte

TEXT = "Héllo wörld — naïve café ☕, señor.\nThe quick brown fox jumps over the lazy dog.\n" * 40


class Recording(BatchSampler):
    """The batches an eval draws, kept for the hand computation."""

    drawn: list[tuple[str, torch.Tensor, torch.Tensor]]

    def read(self, split: str, starts: torch.Tensor, rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = super().read(split, starts, rows)  # sampled batches and a whole split's alike
        self.drawn.append((split, x, y))
        return x, y


def _hand_bpb(model: GPT, batches: list[tuple[torch.Tensor, torch.Tensor]], spelled: dict[int, bytes]) -> float:
    """Summed cross-entropy of every target that spells text, in bits, over the bytes those targets spell."""
    nats, n_bytes = 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            losses = F.cross_entropy(model.logits(x).flatten(0, 1).float(), y.flatten(), reduction="none",
                                     ignore_index=-1)
            for loss, target in zip(losses.tolist(), y.flatten().tolist()):
                if target >= 0 and spelled[target]:  # -1: a row that fills out a batch
                    nats += loss
                    n_bytes += len(spelled[target])
    return nats / math.log(2) / n_bytes


@pytest.mark.parametrize("tokenizer", ["char", "gpt2"])
def test_eval_bits_per_byte_match_a_hand_computation(tmp_path: Path, tokenizer: str) -> None:
    path = tmp_path / "small.txt"
    path.write_text(TEXT, encoding="utf-8")
    data = load_dataset("text", str(path), tokenizer)
    torch.manual_seed(0)
    model = GPT(ModelArgs(vocab_size=data.tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16,
                          dropout=0.0, bias=False))
    sampler = Recording(data, block_size=16, batch_size=4)
    sampler.drawn = []
    result = estimate_loss(model, model, sampler, eval_iters=3, seed=1, iter_num=0)
    if tokenizer == "char":
        spelled = {i: c.encode() for i, c in enumerate(data.tokenizer.chars)}  # type: ignore[attr-defined]
    else:
        enc = tiktoken.get_encoding("gpt2")
        spelled = {i: enc.decode_single_token_bytes(i) for i in range(enc.n_vocab)}
        spelled[enc.eot_token] = b""
    for split in ("train", "val"):
        batches = [(x, y) for s, x, y in sampler.drawn if s == split]
        assert result[f"{split}_bpb"] == pytest.approx(_hand_bpb(model, batches, spelled), rel=1e-5)
    assert sum(len(spelled[t]) for t in data.tokenizer.encode(TEXT)) == len(TEXT.encode()), \
        "the denominator is the text's own bytes, however it is tokenized"


def test_end_of_text_counts_in_the_loss_but_not_in_bits_per_byte() -> None:
    tok = TiktokenTokenizer("gpt2")
    spelled = torch.from_numpy(tok.token_bytes())
    y = torch.tensor([[tok.eot_token, *tok.encode(" hello"), tok.eot_token, *tok.encode(" wörld")]])
    per_token = torch.arange(1.0, y.numel() + 1)
    total, targets, nats, n_bytes = batch_loss(per_token, y, spelled).tolist()
    assert total == pytest.approx(per_token.sum().item()) and targets == y.numel()
    kept = [v for v, t in zip(per_token.tolist(), y.flatten().tolist()) if t != tok.eot_token]
    assert nats == pytest.approx(sum(kept)) and n_bytes == len(" hello wörld".encode())
    assert bits_per_byte(nats, n_bytes) == pytest.approx(sum(kept) / math.log(2) / n_bytes)
    assert bits_per_byte(1.0, 0) is None


def test_a_uniform_guess_is_log2_of_the_vocabulary_per_token_spread_over_its_bytes() -> None:
    """The same quantity for both tokenizers: a model guessing uniformly over V tokens pays log2(V) bits a token,
    which per byte is log2(V) over the bytes a token spells."""
    chars = CharTokenizer.from_text(TEXT)
    per_char_byte = len(TEXT.encode()) / len(TEXT)
    assert loss_in_bits_per_byte(math.log(chars.vocab_size), per_char_byte) == pytest.approx(
        math.log2(chars.vocab_size) * len(TEXT) / len(TEXT.encode()))
    gpt2 = TiktokenTokenizer("gpt2")
    ids = gpt2.encode(TEXT)
    per_token_bytes = gpt2.token_bytes()[ids].mean()
    assert per_token_bytes == pytest.approx(len(TEXT.encode()) / len(ids))
    assert loss_in_bits_per_byte(math.log(gpt2.vocab_size), per_token_bytes) == pytest.approx(
        math.log2(gpt2.vocab_size) * len(ids) / len(TEXT.encode()))


def test_rows_that_fill_out_a_batch_count_nowhere() -> None:
    tok = TiktokenTokenizer("gpt2")
    spelled = torch.from_numpy(tok.token_bytes())
    y = torch.tensor([tok.encode(" hello"), [-1] * len(tok.encode(" hello"))])
    per_token = torch.tensor([[2.0] * y.size(1), [0.0] * y.size(1)])  # what ignore_index=-1 gives a filler target
    total, targets, nats, n_bytes = batch_loss(per_token, y, spelled).tolist()
    assert (total, targets, nats, n_bytes) == (2.0 * y.size(1), y.size(1), 2.0 * y.size(1), len(b" hello"))
