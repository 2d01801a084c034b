"""nanoGPT's files, built from its documented layout: ckpt.pt samples, seeds a run at the source's loss, and
resumes with iter_num and best_val_loss; meta.pkl is read without running code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from support.foreign import (nanogpt_names, random_gpt, reference_loss, write_meta_pkl, write_nanogpt_ckpt)
from tuigpt.engine.data import load_dataset
from tuigpt.engine.data.nanogpt import SHAKESPEARE_CHARS, read_meta
from tuigpt.engine.model import GPT, ModelArgs
from tuigpt.engine.sources import open_source
from tuigpt.engine.trainer import Trainer
from tuigpt.run.errors import UserError
from tuigpt.run.events import EvalResult

ARGS = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, bias=True, vocab_size=65, dropout=0.0)


def first_eval(trainer: Trainer) -> EvalResult:
    seen: list[EvalResult] = []
    trainer.bus.subscribe(lambda e: seen.append(e) if isinstance(e, EvalResult) else None)
    trainer.run()
    return seen[0]


def test_tuigpt_model_has_nanogpts_parameter_names_in_its_order() -> None:
    for bias in (True, False):
        model = GPT(ModelArgs(vocab_size=65, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=bias))
        assert list(model.state_dict()) == nanogpt_names(2, bias)
        # AdamW state is indexed by parameter order: nanoGPT's named_parameters() order, lm_head tied to wte
        assert [n for n, _ in model.named_parameters()] == [n for n in nanogpt_names(2, bias) if n != "lm_head.weight"]


def test_shakespeare_char_vocabulary_is_nanogpts(shakespeare: Path) -> None:
    assert SHAKESPEARE_CHARS == "".join(sorted(set(shakespeare.read_text())))


def test_nanogpt_checkpoint_seeds_a_run_at_the_source_loss(tmp_path: Path, tiny_config) -> None:
    weights = random_gpt(65, 32, 2, 32, bias=True)
    data = load_dataset("shakespeare_char", tiny_config().data_path)
    from tuigpt.engine.data import BatchSampler

    elsewhere = reference_loss(weights, BatchSampler(data, 32, 4, seed=7), 2, seed=7, iters=4)
    ckpt = tmp_path / "out-shakespeare-char" / "ckpt.pt"
    write_nanogpt_ckpt(ckpt, weights, ARGS, iter_num=5000, best_val_loss=elsewhere, dataset="shakespeare_char")
    config = tiny_config(init_from=str(ckpt), n_layer=4, bias=False, eval_only=True, eval_iters=4)
    trainer = Trainer(config)
    assert (trainer.config.n_layer, trainer.config.bias, trainer.iter_num) == (2, True, 0)  # shape from the source
    expected = reference_loss(weights, trainer.sampler, 2, seed=config.seed, iters=4)
    result = first_eval(trainer)
    assert result.val_loss == pytest.approx(expected, abs=1e-5)
    assert abs(result.val_loss - elsewhere) < 0.1 * elsewhere  # other batches: the saved loss, within noise
    assert any("n_layer=2 from the source" in n for n in trainer.pending_notices)


def test_sample_reads_a_compiled_nanogpt_checkpoint(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from tuigpt.cli.main import main

    weights = random_gpt(65, 32, 2, 32, bias=True)
    ckpt = tmp_path / "out-shakespeare-char" / "ckpt.pt"
    write_nanogpt_ckpt(ckpt, weights, ARGS, iter_num=10, best_val_loss=2.0, dataset="shakespeare_char")
    assert main(["sample", str(ckpt), "--prompt", "ROMEO:", "--max_new_tokens", "30", "--temperature", "0"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("ROMEO:") and len(out.out.strip()) == len("ROMEO:") + 30
    assert set(out.out) <= set(SHAKESPEARE_CHARS)
    assert "65 characters" in out.err  # where the tokenizer came from is said
    # greedy decoding equals the reference model's argmax, token by token
    from support.foreign import reference_logits

    idx = torch.tensor([[SHAKESPEARE_CHARS.index(c) for c in "ROMEO:"]])
    for _ in range(30):
        nxt = reference_logits(weights, idx[:, -32:], 2, conv1d=False, gelu="exact")[0, -1].argmax()
        idx = torch.cat([idx, nxt.view(1, 1)], dim=1)
    assert out.out.rstrip("\n") == "".join(SHAKESPEARE_CHARS[i] for i in idx[0].tolist())


def test_resume_of_a_nanogpt_out_dir_keeps_iter_num_and_best_val_loss(tmp_path: Path, tiny_config) -> None:
    model = GPT(ModelArgs(**{k: v for k, v in ARGS.items()}))
    optimizer = torch.optim.AdamW(model.param_groups(0.1), lr=1e-3, fused=False)
    model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))[1].backward()
    optimizer.step()  # a real AdamW state, as nanoGPT's optimizer.state_dict() holds it
    run = tmp_path / "runs" / "out-shakespeare-char"
    write_nanogpt_ckpt(run / "ckpt.pt", model.state_dict(), ARGS, iter_num=30, best_val_loss=1.75,
                       dataset="shakespeare_char", optimizer=optimizer.state_dict())
    config = tiny_config(run_name="out-shakespeare-char", bias=True, max_iters=35, eval_interval=5, beta2=0.99)
    trainer = Trainer(config, resume=True)
    assert (trainer.iter_num, trainer.best_val_loss) == (30, 1.75)
    state = trainer.optimizer.state_dict()["state"]
    assert torch.equal(state[0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert any("continuing nanoGPT's" in n for n in trainer.pending_notices)
    outcome = trainer.run()
    assert outcome.iter == 35 and (run / "last.pt").is_file() and (run / "ckpt.pt").is_file()


def test_resume_names_a_shape_that_differs(tmp_path: Path, tiny_config) -> None:
    run = tmp_path / "runs" / "old"
    write_nanogpt_ckpt(run / "ckpt.pt", random_gpt(65, 32, 2, 32, bias=True), ARGS, iter_num=30, best_val_loss=2.0,
                       dataset="shakespeare_char")
    with pytest.raises(UserError, match="n_embd was 32 in the checkpoint but is 64 now"):
        Trainer(tiny_config(run_name="old", bias=True, n_embd=64), resume=True)


def test_meta_pkl_beside_the_checkpoint_gives_the_vocabulary(tmp_path: Path) -> None:
    chars = "abcdefghij \n"
    weights = random_gpt(len(chars), 16, 1, 16, bias=False)
    args = dict(ARGS, n_layer=1, n_embd=16, block_size=16, bias=False, vocab_size=len(chars))
    ckpt = tmp_path / "out" / "ckpt.pt"
    write_nanogpt_ckpt(ckpt, weights, args, iter_num=1, best_val_loss=2.0, dataset="letters", compiled=False)
    with pytest.raises(UserError, match=r"12-token vocabulary and no meta.pkl was found"):
        open_source(str(ckpt))
    write_meta_pkl(tmp_path / "data" / "letters" / "meta.pkl", chars)  # nanoGPT's tree: data/<dataset>/
    assert open_source(str(ckpt)).tokenizer["chars"] == chars
    write_meta_pkl(tmp_path / "out" / "meta.pkl", chars[:-1])  # beside the checkpoint wins; and must fit
    with pytest.raises(UserError, match="the model has 12 tokens but .* has 11"):
        open_source(str(ckpt))


def test_meta_pkl_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "meta.pkl"
    evil.write_bytes(pickle.dumps({"vocab_size": 1, "itos": {0: "a"}, "x": Evil()}))
    with pytest.raises(UserError, match="refused: it refers to .*system"):
        read_meta(evil)
    assert not marker.exists()
    evil.write_bytes(pickle.dumps({"vocab_size": 1, "itos": {0: "a"}, "x": [1.5]}))
    with pytest.raises(UserError, match="refused: it holds a list"):
        read_meta(evil)
    good = tmp_path / "good.pkl"
    write_meta_pkl(good, "xyz")
    assert read_meta(good).chars == "xyz"


def test_init_from_a_char_model_on_other_characters_names_the_difference(tmp_path: Path, tiny_config,
                                                                         gpt2_bpe: Path) -> None:
    ckpt = tmp_path / "ckpt.pt"
    write_nanogpt_ckpt(ckpt, random_gpt(65, 32, 2, 32, bias=True), ARGS, iter_num=1, best_val_loss=2.0,
                       dataset="shakespeare_char")
    text = tmp_path / "other.txt"
    text.write_text("0123456789 " * 2000)
    with pytest.raises(UserError, match=r"65-character vocabulary differs from the data's 11 characters \(only in "
                                        r"the data: '0124"):
        Trainer(tiny_config(init_from=str(ckpt), data_path=str(text), dataset="text"))
    with pytest.raises(UserError, match="trained with tokenizer char .* tokenized with gpt2"):
        Trainer(tiny_config(init_from=str(ckpt), dataset="shakespeare"))


def test_nanogpt_checkpoint_with_a_missing_weight_names_it(tmp_path: Path, tiny_config) -> None:
    weights = random_gpt(65, 32, 2, 32, bias=True)
    del weights["transformer.h.1.mlp.c_fc.weight"]
    ckpt = tmp_path / "ckpt.pt"
    write_nanogpt_ckpt(ckpt, weights, ARGS, iter_num=1, best_val_loss=2.0, dataset="shakespeare_char")
    with pytest.raises(UserError, match=r"no transformer.h.1.mlp.c_fc.weight \(1 missing"):
        Trainer(tiny_config(init_from=str(ckpt)))


def test_nanogpt_data_folder_trains_with_its_meta(tmp_path: Path, tiny_config, shakespeare: Path,
                                                  gpt2_bpe: Path) -> None:
    import numpy as np

    text = shakespeare.read_text()[:200_000]
    folder = tmp_path / "data" / "mychars"
    write_meta_pkl(folder / "meta.pkl", SHAKESPEARE_CHARS)
    ids = np.array([SHAKESPEARE_CHARS.index(c) for c in text], dtype=np.uint16)
    ids[:180_000].tofile(folder / "train.bin")
    ids[180_000:].tofile(folder / "val.bin")
    trainer = Trainer(tiny_config(dataset="nanogpt", data_path=str(folder), max_iters=2))
    assert trainer.data.tokenizer.vocab_size == 65 and len(trainer.data.val) == 20_000
    assert trainer.run().iter == 2
    (folder / "meta.pkl").unlink()
    with pytest.raises(UserError, match="token id .* outside"):  # gpt2 assumed: ids fit, so write a bad one
        (folder / "val.bin").write_bytes(np.array([60000], dtype=np.uint16).tobytes())
        load_dataset("nanogpt", str(folder))


def _nanogpt_run(tmp_path: Path, **config: object) -> Path:
    """A folder holding only nanoGPT's ckpt.pt, its saved config edited."""
    run = tmp_path / "out-nano"
    write_nanogpt_ckpt(run / "ckpt.pt", random_gpt(65, 32, 2, 32, bias=True), ARGS, iter_num=5, best_val_loss=2.0,
                       dataset="shakespeare_char")
    state = torch.load(run / "ckpt.pt", weights_only=False)
    state["config"].update(config)
    torch.save(state, run / "ckpt.pt")
    return run


def test_a_nanogpt_resume_names_every_shape_difference_at_once(tmp_path: Path, shakespeare: Path) -> None:
    """A .py config that leaves the shape to nanoGPT's defaults differs in four keys: one message names them all
    and the one command line that resumes (issue 27: four tries, one mismatch each)."""
    from tuigpt.engine.checkpointing import CheckpointManager
    from tuigpt.run.configfile import load_config
    from tuigpt.run.rundir import RunDir

    run = _nanogpt_run(tmp_path)
    config = tmp_path / "train.py"
    config.write_text(f"out_dir = {str(run)!r}\ndataset = 'shakespeare_char'\ndata_path = {str(shakespeare)!r}\n")
    with pytest.raises(UserError) as err:
        CheckpointManager(RunDir(run), 0, 0o600).open_resume(load_config(config, {"max_iters": "10"}))
    message = str(err.value)
    for key, saved, default in (("block_size", 32, 1024), ("n_layer", 2, 12), ("n_head", 2, 12), ("n_embd", 32, 768)):
        assert f"{key} was {saved} in the checkpoint but is {default} now" in message
    assert "resume with --block_size=32 --n_layer=2 --n_head=2 --n_embd=32" in message


def test_a_resume_reports_no_device_or_dtype_change_that_does_not_happen(tmp_path: Path, tiny_config) -> None:
    """Trained with `config/x.py --device=cpu --compile=False`, resumed with `config/x.py --init_from=resume`: the .py
    config leaves device, dtype and compile to auto, and where auto picks the device trained on, the device stays
    (issue 27: "device changed from 'cpu' to 'auto'" on a CPU); what dtype and compile auto choose is the run's
    first line's to say. Trained on the device auto picks on this host, the CPU or a GPU."""
    from tuigpt.engine.checkpointing import CheckpointManager
    from tuigpt.engine.device import resolve_device
    from tuigpt.run.rundir import RunDir

    here = resolve_device("auto").type
    elsewhere = "cuda" if here == "cpu" else "cpu"
    trained = Trainer(tiny_config(max_iters=2, eval_interval=2, device=here, dtype="float32", compile=False))
    trained.run()
    run = RunDir(trained.run_dir.path)
    resumed = tiny_config(max_iters=4, device="auto", dtype="auto", compile="auto")
    said = "\n".join(CheckpointManager(run, 0, 0o600).open_resume(resumed).notices)
    assert "max_iters changed from 2 to 4" in said
    assert "device changed" not in said and "dtype changed" not in said and "compile changed" not in said, said
    state = torch.load(run.last, weights_only=False)
    state["config"]["device"] = elsewhere  # trained on another device, resumed here: that change is real, and said
    torch.save(state, run.last)
    notices = CheckpointManager(run, 0, 0o600).open_resume(resumed).notices
    assert f"resume: device changed from '{elsewhere}' to 'auto' ({here} here)" in notices, notices


def test_a_planned_runs_nanogpt_export_reads_back(tmp_path: Path, tiny_config, monkeypatch: pytest.MonkeyPatch,
                                                  capsys) -> None:  # noqa: ANN001
    """The default config ends at a time (max_iters empty): its nanoGPT export carried max_iters None, which
    nanoGPT's train.py cannot use and tuigpt's own reader refused ("config key max_iters is empty")."""
    import time

    from tuigpt.cli.main import main

    monkeypatch.setattr("tuigpt.engine.planner.process_started", lambda: (time.time(), time.monotonic()))
    cfg = tiny_config(time_budget="3s", max_iters=None, eval_interval=40, log_interval=5, warmup_iters=5)
    trainer = Trainer(cfg)
    trainer.run()
    trainer.close()
    assert main(["export", str(trainer.run_dir.path), "--format", "nanogpt", "--checkpoint", "last"]) == 0
    ckpt = trainer.run_dir.path / "export-nanogpt" / "ckpt.pt"
    config = torch.load(ckpt, weights_only=True)["config"]
    assert config["max_iters"] == config["lr_decay_iters"] == trainer.iter_num  # where its plan ended it
    capsys.readouterr()
    assert main(["sample", str(ckpt), "--prompt", "RO", "--max_new_tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("RO")
