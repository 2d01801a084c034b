"""`tuigpt export --format hf` read by the real transformers package (the test extra), offline: GPT-2's block loads
as GPT2LMHeadModel and nanochat's as NanoChatForCausalLM, and either computes tuigpt's logits (and, cached,
its greedy continuation); a block neither class computes, and nanoGPT's format for a block nanoGPT lacks, are
one line and exit 2 with nothing written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import transformers

from tuigpt.cli.main import main
from tuigpt.engine import hf
from tuigpt.engine.model import GPT, ModelArgs
from tuigpt.engine.sampling import generate
from tuigpt.engine.sources import load_source, open_source
from tuigpt.engine.trainer import Trainer
from tuigpt.run.config import ARCHS
from tuigpt.run.errors import UserError

SHAPE = dict(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32)
CHARS = {"kind": "char", "chars": "".join(chr(33 + i) for i in range(65))}
MODERN = ARCHS["modern"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only spins against other work on a loaded box
    yield
    torch.set_num_threads(threads)


def scrambled(seed: int = 0, **args) -> GPT:
    """A model whose every weight is far from its initialisation (zero_init's zeros and LayerNorm's ones would
    hide a wrong rotation, norm or layout)."""
    torch.manual_seed(seed)
    model = GPT(ModelArgs(**{**SHAPE, **args}))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.dim() == 1 else 0.0))
    return model.eval()


def load(folder: Path) -> torch.nn.Module:
    return transformers.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True,
                                                             torch_dtype=torch.float32).eval()


def write_hf(folder: Path, state: dict, args, tokenizer: dict, provenance: dict) -> None:  # noqa: ANN001
    """The files `tuigpt export --format hf` publishes (hf_files raises before any is made)."""
    files = hf.hf_files(state, args, tokenizer, provenance)
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def export(model: GPT, folder: Path) -> torch.nn.Module:
    write_hf(folder, model.state_dict(), model.args, CHARS, {"exported_from": "test"})
    return load(folder)


IDS = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("args", [
    {}, {"bias": True}, {"gelu": "tanh", "bias": True}, {"relu2": True, "untied_head": True, "zero_init": True},
], ids=["gpt2", "gpt2 bias", "gpt2 tanh gelu", "gpt2 relu2 untied"])
def test_gpt2s_block_loads_as_gpt2lmheadmodel_with_tuigpts_logits(tmp_path: Path, args: dict) -> None:
    ours = scrambled(**args)
    theirs = export(ours, tmp_path / "hf")
    assert type(theirs).__name__ == "GPT2LMHeadModel"
    assert torch.allclose(theirs(IDS).logits, ours.logits(IDS), atol=2e-5)


@pytest.mark.parametrize("args", [
    MODERN, {**MODERN, "relu2": False}, {**MODERN, "relu2": False, "gelu": "tanh"},
    {**MODERN, "untied_head": False, "logit_softcap": 0.0}, {**MODERN, "logit_softcap": 3.0},
], ids=["modern", "gelu", "tanh gelu", "tied no softcap", "softcap 3"])
def test_nanochats_block_loads_as_nanochatforcausallm_with_tuigpts_logits(tmp_path: Path, args: dict) -> None:
    ours = scrambled(**args)
    theirs = export(ours, tmp_path / "hf")
    assert type(theirs).__name__ == "NanoChatForCausalLM"
    assert torch.allclose(theirs(IDS).logits, ours.logits(IDS), atol=2e-5)
    # transformers decodes with its own key/value cache and rotary positions: the same greedy continuation
    prompt = IDS[:1, :4]
    continued = theirs.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=True, pad_token_id=0)
    assert torch.equal(continued, generate(ours, prompt, 12, temperature=0.0))
    back = open_source(str(tmp_path / "hf"))  # and back into tuigpt: the same model, the same weights
    assert back.kind == "Hugging Face NanoChat" and back.args == ModelArgs(**{**SHAPE, **args, "zero_init": False})
    model = GPT(back.args)
    load_source(model, back)
    for name, value in ours.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_a_run_of_the_modern_block_exports_through_the_cli(tmp_path: Path, tiny_config, capsys) -> None:  # noqa: ANN001
    trainer = Trainer(tiny_config(arch="modern", max_iters=2, eval_interval=2))
    trainer.run()
    out = tmp_path / "export"
    assert main(["export", str(trainer.run_dir.path), "--format", "hf", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "NanoChatForCausalLM.from_pretrained" in printed.out and "transformers 5.0" in printed.err
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["model_type"], cfg["hidden_act"], cfg["final_logit_softcapping"], cfg["tie_word_embeddings"]) == (
        "nanochat", "relu2", 15.0, False)
    ids = torch.randint(0, trainer.data.tokenizer.vocab_size, (1, 32), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(load(out)(ids).logits, trainer.raw_model.eval().logits(ids), atol=2e-5)
    capsys.readouterr()  # transformers' own progress lines
    assert main(["export", str(trainer.run_dir.path), "--format", "nanogpt", "--out", str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nanoGPT cannot compute it; export it with --format hf" in err, err
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize("args, named", [
    ({"rope": True}, "(this model has rope on), NanoChatForCausalLM needs rope, qk_norm, rmsnorm on and bias off "
                     "(this model has qk_norm, rmsnorm off); nothing was written"),
    ({"logit_softcap": 15.0}, "(this model has logit_softcap on)"),
    ({**MODERN, "bias": True}, "(this model has bias on)"),
])
def test_a_block_no_transformers_class_computes_is_refused_before_writing(tmp_path: Path, args: dict,
                                                                          named: str) -> None:
    model = scrambled(**args)
    with pytest.raises(UserError, match=re.escape(named)) as err:
        write_hf(tmp_path / "hf", model.state_dict(), model.args, CHARS, {})
    assert "\n" not in str(err.value) and not (tmp_path / "hf").exists()


def test_an_untied_gpt2_folder_reads_its_own_head(tmp_path: Path) -> None:
    ours = scrambled(untied_head=True, relu2=True, bias=True)
    export(ours, tmp_path / "hf")
    back = open_source(str(tmp_path / "hf"))
    assert back.args.untied_head and back.args.relu2 and torch.equal(back.state["lm_head.weight"],
                                                                      ours.lm_head.weight)
