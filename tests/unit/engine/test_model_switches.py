"""nanochat's block switches: every one off is nanoGPT's model to the bit, each one on changes what it names and
nothing else, generation with the key/value cache computes what the whole context computes, and a run of the
modern block checkpoints its switches and resumes exactly (one saved before the switches resumes as GPT-2)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from support.foreign import nanogpt_init, nanogpt_names, reference_logits
from tuigpt.engine.checkpoint import load_checkpoint, save_checkpoint
from tuigpt.engine.model import GPT, KVCache, ModelArgs
from tuigpt.engine.sampling import generate
from tuigpt.engine.trainer import Trainer
from tuigpt.run.config import ARCHS, SWITCHES
from tuigpt.run.errors import UserError

SHAPE = dict(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32)
MODERN = ARCHS["modern"]
ONE_BY_ONE = [{key: MODERN[key]} for key in SWITCHES]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread computes them fastest, and a second spins against other work on a loaded box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(seed: int = 0, **switches) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelArgs(**SHAPE, **switches))


@pytest.mark.parametrize("bias", [False, True])
def test_every_switch_off_is_nanogpts_model_to_the_bit(bias: bool) -> None:
    args = {**SHAPE, "bias": bias}
    ours = build(5, bias=bias, **ARCHS["gpt2"])
    theirs = nanogpt_init(args, seed=5)
    state = ours.state_dict()
    assert list(state) == nanogpt_names(2, bias) and state.keys() == theirs.keys()  # names, in nanoGPT's order
    for key, value in state.items():
        assert torch.equal(value, theirs[key]), key  # the same random stream, drawn in the same order
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(ours.eval().logits(idx), reference_logits(theirs, idx, 2, conv1d=False, gelu="exact"),
                          atol=1e-6)
    assert ModelArgs(**args).switches() == {}  # model_args saved before the switches read as GPT-2's block


@pytest.mark.parametrize("switch", ONE_BY_ONE, ids=lambda s: next(iter(s)))
def test_each_switch_changes_what_it_names(switch: dict) -> None:
    gpt2, on = build(), build(**switch)
    key = next(iter(switch))
    names, before = set(on.state_dict()), gpt2.state_dict()
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(1))
    if key == "rope":  # no position table; the rotation tables are computed, never saved
        assert names == set(before) - {"transformer.wpe.weight"} and hasattr(on, "rope_cos")
    elif key == "rmsnorm":  # no gains: nothing to save
        assert names == {k for k in before if ".ln_" not in k}
    elif key == "untied_head":  # a matrix of its own, counted as the head (the embedding is a lookup)
        assert on.lm_head.weight is not on.transformer.wte.weight and names == set(before)
        assert on.num_params(non_embedding=False) == gpt2.num_params(non_embedding=False) + 65 * 32
        assert on.num_params() == gpt2.num_params()
    else:  # the same weights, drawn from the same stream
        assert names == set(before)
        for name, value in on.state_dict().items():
            if key == "zero_init" and name.endswith("c_proj.weight"):
                assert not value.any(), name
            else:
                assert torch.equal(value, before[name]), name
    if key == "zero_init":  # every block starts as the identity: the logits are those of the embedding alone
        x = on.transformer.ln_f(on.transformer.wte(idx) + on.transformer.wpe(torch.arange(16)))
        assert torch.allclose(on.logits(idx), on.lm_head(x), atol=1e-6)
    else:
        assert not torch.allclose(on.logits(idx), gpt2.logits(idx), atol=1e-4)
    if key == "logit_softcap":
        on.lm_head.weight.data.mul_(1000)  # logits far beyond the cap are squashed to it
        assert on.lm_head(on._hidden(idx)).abs().max() > 100
        assert on.logits(idx).abs().max() <= MODERN["logit_softcap"]


def test_the_modern_block_trains_under_bf16_autocast() -> None:
    """The rotation tables are float32; under autocast q and k are 16-bit, and attention needs one dtype."""
    model = build(**MODERN)
    idx = torch.randint(0, 65, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = model(idx, idx)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_rotation_is_nanochats_formula_to_the_bit(dtype: torch.dtype) -> None:
    """apply_rotary computes [x1 cos + x2 sin, x2 cos - x1 sin] (nanochat's apply_rotary_emb) in fewer kernels: the
    same products and sums, so the same bits, for q and k rotated together (B, T, 2, nh, hs)."""
    from tuigpt.engine.model import apply_rotary, rotary_tables

    hs, T = 8, 16
    x = torch.randn(3, T, 2, 4, hs, generator=torch.Generator().manual_seed(2)).to(dtype)
    cos2, sin2 = rotary_tables(hs, T, 10_000.0)
    cos, sin = cos2[:, :hs // 2].to(dtype).view(T, 1, 1, -1), sin2[:, :hs // 2].to(dtype).view(T, 1, 1, -1)
    x1, x2 = x[..., :hs // 2], x[..., hs // 2:]
    expected = torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)
    assert torch.equal(apply_rotary(x, cos2.to(dtype), sin2.to(dtype)), expected)
    assert torch.equal(cos2[:, hs // 2:], cos2[:, :hs // 2]) and torch.equal(sin2[:, hs // 2:], -sin2[:, :hs // 2])


@pytest.mark.parametrize("switches", [{}, {"rope": True}, {"qk_norm": True}, MODERN], ids=["gpt2", "rope", "qk_norm",
                                                                                           "modern"])
def test_cached_generation_computes_what_the_whole_context_computes(switches: dict) -> None:
    model = build(**switches).eval()
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(2))
    whole = model.logits(idx)  # every position, no cache
    cache = KVCache(SHAPE["n_layer"])
    steps = [model(idx[:, :5], cache=cache)[0]]  # the prompt at once, then one token at a time...
    steps += [model(idx[:, t:t + 1], cache=cache)[0] for t in range(5, 12)]
    steps += [model(idx[:, 12:16], cache=cache)[0]]  # ...and several at once after the prompt
    for step, position in zip(steps, [*range(4, 12), 15]):
        assert torch.allclose(step[:, -1], whole[:, position], atol=1e-5), position
    assert cache.length == 16
    with pytest.raises(ValueError, match="longer than block_size"):
        model(idx[:, :1], cache=cache)
    prompt = idx[:, :3]
    for temperature, top_k in ((0.0, None), (0.9, 5), (1.5, None)):  # past block_size: the window slides
        cached = generate(model, prompt, 30, temperature, top_k, torch.Generator().manual_seed(3))
        uncached = generate(model, prompt, 30, temperature, top_k, torch.Generator().manual_seed(3), cache=False)
        assert torch.equal(cached, uncached), temperature


def test_a_modern_run_saves_its_switches_and_resumes_exactly(tiny_config) -> None:
    keys = dict(arch="modern", rope=False, max_iters=8, eval_interval=4, lr_decay_iters=8, dropout=0.1)
    straight = Trainer(tiny_config(run_name="straight", **keys))
    straight.run()
    saved = load_checkpoint(straight.run_dir / "last.pt")
    assert {k: saved["model_args"][k] for k in SWITCHES} == {**MODERN, "rope": False}
    assert "transformer.wpe.weight" in saved["model"] and "lm_head.weight" in saved["model"]
    Trainer(tiny_config(run_name="split", **{**keys, "max_iters": 4})).run()
    resumed = Trainer(tiny_config(run_name="split", **keys), resume=True)
    assert resumed.model_args == straight.model_args
    resumed.run()
    for (name, a), b in zip(straight.raw_model.named_parameters(), resumed.raw_model.parameters()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("change, message", [
    ({"arch": "gpt2"}, "arch was 'modern' in the checkpoint but is 'gpt2' now, rope was True .*; resume with --arch=modern, "
                       "or start a new run"),
    ({"rmsnorm": False}, "rmsnorm was True in the checkpoint but is False now"),
    ({"logit_softcap": 30.0}, "logit_softcap was 15.0 in the checkpoint but is 30.0 now"),
])
def test_resume_with_another_block_names_the_switch(tiny_config, change: dict, message: str) -> None:
    Trainer(tiny_config(arch="modern", max_iters=2)).run()
    with pytest.raises(UserError, match=message):
        Trainer(tiny_config(**{"arch": "modern", "max_iters": 4, **change}), resume=True)
    resumed = Trainer(tiny_config(arch="modern", zero_init=False, max_iters=4), resume=True)  # only the first weights
    assert any("zero_init=False ignored, True kept" in n for n in resumed.pending_notices)


def test_a_checkpoint_from_before_the_switches_resumes_as_gpt2(tiny_config) -> None:
    first = Trainer(tiny_config(max_iters=2))
    first.run()
    path = first.run_dir / "last.pt"
    old = load_checkpoint(path)
    for key in ("arch", *SWITCHES):
        old["config"].pop(key)
    old["model_args"] = {k: v for k, v in old["model_args"].items() if k not in (*SWITCHES, "rope_theta")}
    save_checkpoint(old, path)
    resumed = Trainer(tiny_config(max_iters=4), resume=True)
    assert resumed.model_args == dataclasses.replace(first.model_args) and resumed.model_args.switches() == {}
    assert resumed.run().iter == 4
    with pytest.raises(UserError, match="arch was 'gpt2' in the checkpoint but is 'modern' now"):
        Trainer(tiny_config(arch="modern", max_iters=6), resume=True)
