"""Text generation: one path for the trainer and `tuigpt sample`, safe at any temperature."""

from __future__ import annotations

import torch

from tuigpt.engine.data import CharTokenizer
from tuigpt.engine.model import GPT, ModelArgs
from tuigpt.engine.sampling import generate, generate_text


def _model(vocab: int = 20) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelArgs(vocab_size=vocab, block_size=8, n_layer=1, n_head=2, n_embd=16)).eval()


def test_generate_appends_tokens_within_vocab_and_respects_top_k() -> None:
    model = _model()
    start = torch.zeros((1, 3), dtype=torch.long)
    out = generate(model, start, 12, temperature=0.9, top_k=1)  # longer than block_size: context is cropped
    assert out.shape == (1, 15)
    assert int(out.max()) < 20
    again = generate(model, start, 12, temperature=0.9, top_k=1)
    assert torch.equal(out, again)  # top_k=1 is greedy: deterministic


def test_temperature_zero_is_greedy_and_tiny_temperatures_never_produce_nan() -> None:
    model = _model()
    start = torch.zeros((1, 2), dtype=torch.long)
    greedy = generate(model, start, 10, temperature=0.0)
    assert torch.equal(greedy, generate(model, start, 10, temperature=0.9, top_k=1))
    for t in (1e-300, 1e-38, 1e-5):  # logits / t would overflow float32 into inf/NaN: greedy instead
        assert torch.equal(generate(model, start, 10, temperature=t), greedy)
    g = torch.Generator().manual_seed(1)
    hot = generate(model, start, 10, temperature=100.0, generator=g)
    assert int(hot.max()) < 20


def test_generate_text_reports_unknown_prompt_characters_and_restores_train_mode() -> None:
    tok = CharTokenizer("abcdefghij ")
    model = _model(vocab=tok.vocab_size).train()
    out = generate_text(model, tok, "a€b¥", max_new_tokens=5, temperature=0.8, top_k=None,
                        generator=torch.Generator().manual_seed(0))
    assert out.unknown == "€¥" and out.prompt == "ab" and len(out.text) == 5
    assert model.training


def test_generation_on_cuda_keeps_attention_off_cudnn_and_leaves_the_flags_as_they_were() -> None:
    """cuDNN builds an execution plan for every new sequence length; a sample grows by one token a step."""
    from tuigpt.engine.sampling import varying_length_attention

    before = (torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.flash_sdp_enabled(),
              torch.backends.cuda.mem_efficient_sdp_enabled(), torch.backends.cuda.math_sdp_enabled())
    with varying_length_attention(torch.device("cuda", 0)):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
        assert torch.backends.cuda.math_sdp_enabled()
    after = (torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.flash_sdp_enabled(),
             torch.backends.cuda.mem_efficient_sdp_enabled(), torch.backends.cuda.math_sdp_enabled())
    assert after == before
    with varying_length_attention(torch.device("cpu")):  # elsewhere torch chooses
        assert (torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.flash_sdp_enabled()) == before[:2]
