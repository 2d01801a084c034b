"""Checkpoints that load but are wrong: every damaged field is exit 2 naming it, before anything is built or trained."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from tuigpt.cli import main as cli
from tuigpt.engine.checkpoint import load_checkpoint, save_checkpoint
from tuigpt.engine.checkpoint_check import check_optimizer, check_structure
from tuigpt.engine.model import GPT, ModelArgs
from tuigpt.engine.trainer import Trainer
from tuigpt.run.config import TrainConfig
from tuigpt.run.errors import UserError
from tuigpt.run.events import CheckpointWritten, IterationStats, Notice

from conftest import TINY
from support import corpus
from support import start_local


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real checkpoint of a tiny run after a few steps (optimizer moments, RNG and sampler states included)."""
    out = tmp_path_factory.mktemp("good")
    trainer = Trainer(TrainConfig(**{**TINY, "out_dir": str(out), "run_name": "g", "data_path": str(corpus.shakespeare()),
                                     "max_iters": 3, "eval_interval": 3}))
    run, _ = start_local(trainer)
    assert run.wait(120) and run.error is None
    return load_checkpoint(out / "g" / "last.pt")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(state: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = state
        for p in parents:
            target = target[p]
        target[last] = value
    return edit


def _first_weight(state: dict[str, Any]) -> str:
    return next(iter(state["model"]))


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("negative iter_num", _set("iter_num", -1), "iter_num"),
    ("iter_num as text", _set("iter_num", "3"), "iter_num"),
    ("iter_num true", _set("iter_num", True), "iter_num"),
    ("config not a mapping", _set("config", [1, 2]), "config"),
    ("config out of range", lambda s: s["config"].update(batch_size=-4), "config"),
    ("config unknown key", lambda s: s["config"].update(bogus=1), "config"),
    ("model_args missing", lambda s: s["model_args"].pop("n_embd"), "model_args"),
    ("model_args wrong type", _set("model_args.n_layer", "2"), "model_args.n_layer"),
    ("model_args huge", _set("model_args.n_embd", 10**9), "model_args.n_embd"),
    ("model_args vs weights", _set("model_args.n_layer", 3), "model"),
    ("NaN weights", lambda s: s["model"][_first_weight(s)].fill_(math.nan), "not finite"),
    ("a weight of another shape", lambda s: s["model"].update({_first_weight(s): torch.zeros(3, 3)}),
     "1 of another shape"),
    ("integer weights", lambda s: s["model"].update({_first_weight(s): s["model"][_first_weight(s)].long()}),
     "floating point"),
    ("optimizer not a mapping", _set("optimizer", "adam"), "optimizer"),
    ("rng missing python", lambda s: s["rng"].pop("python"), "rng"),
    ("rng torch state of another size", lambda s: s["rng"].update(torch=torch.zeros(7, dtype=torch.uint8)), "rng"),
    ("world_size zero", _set("world_size", 0), "world_size"),
    ("world_size text", _set("world_size", "2"), "world_size"),
    ("samplers not a list", _set("samplers", {"a": 1}), "samplers"),
    ("sampler state damaged", lambda s: s["sampler"].update(train_generator=torch.zeros(5, dtype=torch.uint8)),
     "sampler"),
    ("best_val_loss text", _set("best_val_loss", "low"), "best_val_loss"),
    ("train_seconds NaN", _set("train_seconds", math.nan), "train_seconds"),
    ("tokenizer smaller than the vocabulary", lambda s: s["tokenizer"].update(chars=s["tokenizer"]["chars"][:-5],
                                                                            vocab_size=len(s["tokenizer"]["chars"]) - 5),
     "tokenizer"),
    ("tokenizer garbage", _set("tokenizer", {"kind": "magic"}), "tokenizer"),
]


@pytest.mark.parametrize("what, edit, field", CASES, ids=[c[0] for c in CASES])
def test_each_damaged_field_is_named(good: dict[str, Any], what: str, edit: Callable, field: str) -> None:
    state = copy.deepcopy(good)
    edit(state)
    with pytest.raises(UserError, match=field.replace(".", r"\.")) as err:
        check_structure(state, "last.pt", for_training=True)
    assert len(str(err.value)) < 400 and "\n" not in str(err.value)


def _optimizer_for(state: dict[str, Any]) -> torch.optim.Optimizer:
    model = GPT(ModelArgs(**state["model_args"]))
    return torch.optim.AdamW(model.param_groups(0.1), lr=1e-3)


@pytest.mark.parametrize("what, edit, field", [
    ("a moment of another shape", lambda o: o["state"][0].update(exp_avg=torch.zeros(2, 2)), r"optimizer.state\[0\].exp_avg"),
    ("inf second moments", lambda o: o["state"][1]["exp_avg_sq"].fill_(math.inf), "not finite"),
    ("a negative step", lambda o: o["state"][0].update(step=torch.tensor(-1.0)), "step"),
    ("a group too many", lambda o: o["param_groups"].append(dict(o["param_groups"][0])), "param_groups"),
    ("a parameter short", lambda o: o["param_groups"][0]["params"].pop(), "param_groups"),
])
def test_an_optimizer_state_that_does_not_fit_the_model_is_refused(good: dict[str, Any], what: str, edit: Callable,
                                                                    field: str) -> None:
    state = copy.deepcopy(good)
    edit(state["optimizer"])
    with pytest.raises(UserError, match=field):
        check_optimizer(state, "last.pt", _optimizer_for(state))


def test_a_good_checkpoint_passes(good: dict[str, Any]) -> None:
    config, args, tokenizer = check_structure(good, "last.pt", for_training=True)
    check_optimizer(good, "last.pt", _optimizer_for(good))
    assert config.n_layer == args.n_layer == 2 and tokenizer.vocab_size == args.vocab_size


def _resume_case(tmp_path: Path, state: dict[str, Any], capsys: pytest.CaptureFixture) -> tuple[int, str, bytes]:
    import yaml

    run_dir = tmp_path / "runs" / "g"
    run_dir.mkdir(parents=True)
    save_checkpoint(state, run_dir / "last.pt")
    (run_dir / "metrics.jsonl").write_text('{"type":"iter","iter":3,"loss":1.0}\n')
    before = (run_dir / "metrics.jsonl").read_bytes()
    cfg = tmp_path / "g.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "out_dir": str(tmp_path / "runs"), "data_path": str(corpus.shakespeare()),
                                   "max_iters": 6}))
    code = cli.main([str(cfg), "--headless", "--resume"])
    assert (run_dir / "metrics.jsonl").read_bytes() == before, "a refused resume changes nothing"
    assert sorted(p.name for p in run_dir.iterdir()) == ["last.pt", "metrics.jsonl"]
    return code, capsys.readouterr().err, before


def test_resume_of_an_optimizer_of_another_shape_is_exit_2_before_training(good: dict[str, Any], tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    state = copy.deepcopy(good)
    state["optimizer"]["state"][2]["exp_avg"] = torch.zeros(1)
    code, err, _ = _resume_case(tmp_path, state, capsys)
    assert code == 2 and err.startswith("error: ") and "optimizer.state[2].exp_avg" in err, err


def test_resume_of_nan_weights_and_negative_iterations_is_exit_2(good: dict[str, Any], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    state = copy.deepcopy(good)
    state["iter_num"] = -5
    code, err, _ = _resume_case(tmp_path / "a", state, capsys)
    assert code == 2 and "iter_num" in err
    state = copy.deepcopy(good)
    next(iter(state["model"].values())).fill_(math.nan)
    code, err, _ = _resume_case(tmp_path / "b", state, capsys)
    assert code == 2 and "not finite" in err


def test_sample_with_a_tokenizer_that_does_not_fit_is_exit_2_not_garbage(good: dict[str, Any], tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    state = copy.deepcopy(good)
    chars = state["tokenizer"]["chars"]
    state["tokenizer"] = {"kind": "char", "chars": chars[:20], "vocab_size": 20}
    save_checkpoint(state, tmp_path / "bad.pt")
    assert cli.main(["sample", str(tmp_path / "bad.pt"), "--max_new_tokens", "5"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "does not fit its model's vocabulary" in captured.err
    save_checkpoint(good, tmp_path / "good.pt")
    assert cli.main(["sample", str(tmp_path / "good.pt"), "--max_new_tokens", "5", "--temperature", "1e-50"]) == 0
    assert len(capsys.readouterr().out) > 5


def test_a_fifo_as_last_pt_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "last.pt")
    with pytest.raises(UserError, match="not a regular file"):
        load_checkpoint(tmp_path / "last.pt")


def test_inf_adamw_moments_are_never_written(tiny_config) -> None:
    """The finite check before a checkpoint covers the optimizer state: the moments of the last step are made inf
    just before the final eval's checkpoint, which is refused with a notice naming them."""
    trainer = Trainer(tiny_config(max_iters=2, eval_interval=100))

    def poison(event: object) -> None:
        if isinstance(event, IterationStats) and event.iter == 2:
            next(iter(trainer.optimizer.state.values()))["exp_avg_sq"].fill_(math.inf)

    trainer.bus.subscribe(poison)
    run, rec = start_local(trainer)
    assert run.wait(60)
    assert rec.of(CheckpointWritten) == [] and not trainer.run_dir.last.exists()
    assert any("optimizer exp_avg_sq" in n.message and "not finite" in n.message for n in rec.of(Notice))
