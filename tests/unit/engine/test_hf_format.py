"""Hugging Face GPT-2 folders, built from the layout of a downloaded ``gpt2`` snapshot with random weights:
they seed a run at the source's loss and round-trip through `tuigpt export --format hf`; GPT-2 variants the
model cannot compute are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from support.foreign import random_gpt, read_hf_as_nanogpt, reference_logits, reference_loss, write_hf_snapshot
from tuigpt.cli.main import main
from tuigpt.engine.sources import open_source
from tuigpt.engine.trainer import Trainer
from tuigpt.run.errors import UserError
from tuigpt.run.events import EvalResult

VOCAB = 50257  # GPT-2's: a snapshot without a tokenizer record is read as GPT-2's BPE


@pytest.fixture(scope="module")
def weights() -> dict:
    return random_gpt(VOCAB, 32, 2, 32, bias=True, seed=3)


def first_val_loss(trainer: Trainer) -> float:
    seen: list[EvalResult] = []
    trainer.bus.subscribe(lambda e: seen.append(e) if isinstance(e, EvalResult) else None)
    trainer.run()
    return seen[0].val_loss


def test_gpt2_snapshot_seeds_a_run_at_the_source_loss(tmp_path: Path, tiny_config, weights: dict,
                                                      gpt2_bpe: Path) -> None:
    snapshot = tmp_path / "gpt2"
    write_hf_snapshot(snapshot, weights, n_head=2)
    config = tiny_config(dataset="shakespeare", init_from=str(snapshot), eval_only=True, eval_iters=2,
                         block_size=16, dropout=0.1)
    trainer = Trainer(config)
    args = trainer.model_args
    assert (args.vocab_size, args.block_size, args.bias, args.gelu, args.dropout) == (VOCAB, 16, True, "tanh", 0.1)
    assert any("cropped from 32 to block_size 16" in n for n in trainer.pending_notices)
    expected = reference_loss(read_hf_as_nanogpt(snapshot), trainer.sampler, 2, seed=config.seed, iters=2,
                              conv1d=True, gelu="tanh")
    assert first_val_loss(trainer) == pytest.approx(expected, abs=1e-4)
    idx = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(0))
    logits = trainer.raw_model.eval().logits(idx)  # the tanh GELU kept: exact GELU is ~2e-3 off here
    assert torch.allclose(logits, reference_logits(read_hf_as_nanogpt(snapshot), idx, 2, conv1d=True, gelu="tanh"),
                          atol=1e-4)


def test_export_hf_round_trips_and_computes_the_same_function(tmp_path: Path, tiny_config, weights: dict,
                                                             capsys, gpt2_bpe: Path) -> None:  # noqa: ANN001
    snapshot = tmp_path / "gpt2"
    write_hf_snapshot(snapshot, weights, n_head=2, prefix="transformer.")  # GPT2LMHeadModel.save_pretrained names
    config = tiny_config(dataset="shakespeare", init_from=str(snapshot), max_iters=1, eval_interval=1)
    trainer = Trainer(config)
    trainer.run()
    run = trainer.run_dir.path
    assert main(["export", str(run), "--format", "hf", "--checkpoint", "last"]) == 0
    out = run / "export-hf"
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["n_positions"], cfg["vocab_size"]) == (2, 2, 32, 32, VOCAB)
    assert cfg["activation_function"] == "gelu_new" and cfg["model_type"] == "gpt2"
    trained = {k: v for k, v in torch.load(run / "last.pt", weights_only=True)["model"].items()}
    back = open_source(str(out))
    for key, value in trained.items():
        assert torch.equal(back.state[key], value), key
    idx = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))
    ours = trainer.raw_model.eval()
    full = ours.logits(idx)  # logits at every position
    theirs = reference_logits(read_hf_as_nanogpt(out), idx, 2, conv1d=True, gelu="tanh")
    assert torch.allclose(full, theirs, atol=1e-4)
    assert main(["export", str(run), "--format", "hf", "--checkpoint", "last"]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err


def test_a_model_without_biases_is_written_with_zero_biases(tmp_path: Path, tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=1, eval_interval=1, bias=False))
    trainer.run()
    out = tmp_path / "hf"
    assert main(["export", str(trainer.run_dir.path), "--format", "hf", "--out", str(out)]) == 0
    tensors = read_hf_as_nanogpt(out)
    assert torch.count_nonzero(tensors["transformer.h.0.attn.c_attn.bias"]) == 0
    idx = torch.randint(0, 65, (1, 10), generator=torch.Generator().manual_seed(1))
    ours = trainer.raw_model.eval().logits(idx)
    assert torch.allclose(ours, reference_logits(tensors, idx, 2, conv1d=True, gelu="exact"), atol=1e-5)
    back = open_source(str(out))  # the character vocabulary comes back from tuigpt.json
    assert back.tokenizer == trainer.data.tokenizer.to_meta() and back.args.bias


@pytest.mark.parametrize("change, message", [
    ({"activation_function": "relu"}, "activation_function 'relu'"),
    ({"n_inner": 100}, "n_inner 100"),
    ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon"),
    ({"model_type": "llama"}, "model_type 'llama' is not gpt2"),
])
def test_gpt2_variants_it_cannot_compute_are_refused(tmp_path: Path, weights: dict, change: dict,
                                                     message: str) -> None:
    write_hf_snapshot(tmp_path / "m", weights, n_head=2, **change)
    with pytest.raises(UserError, match=message):
        open_source(str(tmp_path / "m"))


def test_untied_or_incomplete_weights_are_refused(tmp_path: Path, weights: dict) -> None:
    from safetensors.torch import load_file, save_file

    write_hf_snapshot(tmp_path / "m", weights, n_head=2)
    tensors = load_file(str(tmp_path / "m" / "model.safetensors"))
    save_file({**tensors, "lm_head.weight": torch.zeros_like(tensors["wte.weight"])},
              str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(UserError, match="lm_head differs from wte"):
        open_source(str(tmp_path / "m"))
    del tensors["h.1.ln_2.weight"]
    save_file(tensors, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(UserError, match=r"no transformer.h.1.ln_2.weight"):
        from tuigpt.engine.model import GPT
        from tuigpt.engine.sources import load_source

        source = open_source(str(tmp_path / "m"))
        load_source(GPT(source.args), source)


def test_gpt2_by_name_is_found_in_the_local_cache_and_never_downloaded(tmp_path: Path, weights: dict,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="does not download weights and found no gpt2 in the Hugging Face cache"):
        open_source("gpt2")
    repo = tmp_path / "hf" / "hub" / "models--gpt2"
    write_hf_snapshot(repo / "snapshots" / "abc123", weights, n_head=2)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    source = open_source("gpt2")
    assert source.path == repo / "snapshots" / "abc123" and source.tokenizer["name"] == "gpt2"


def test_a_run_started_from_gpt2_weights_resumes_with_their_shape(tmp_path: Path, tiny_config, weights: dict,
                                                                   gpt2_bpe: Path) -> None:
    snapshot = tmp_path / "gpt2"
    write_hf_snapshot(snapshot, weights, n_head=2)
    config = tiny_config(dataset="shakespeare", init_from=str(snapshot), n_layer=4, n_embd=64, max_iters=1,
                         eval_interval=1)
    Trainer(config).run()
    resumed = Trainer(tiny_config(dataset="shakespeare", init_from=str(snapshot), n_layer=4, n_embd=64, max_iters=2,
                                  eval_interval=1), resume=True)
    args = resumed.model_args  # the shape, GELU and unpadded vocabulary of the source, not of the config
    assert (resumed.iter_num, args.n_layer, args.n_embd, args.gelu, args.vocab_size) == (1, 2, 32, "tanh", VOCAB)
    assert resumed.run().iter == 2
