"""Config typing and validation: every bad value is refused before training, naming the key."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest

from tuigpt.run.config import TrainConfig
from tuigpt.run.configfile import KEY_ALIASES, load_config
from tuigpt.run.errors import UserError

from conftest import REPO  # noqa: E402


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_are_valid_and_run_name_comes_from_the_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "max_iters: 5\n"))
    assert cfg.run_name == "c"
    assert cfg.max_iters == 5 and cfg.out_dir == "checkpoints"
    assert cfg.effective_min_lr == pytest.approx(cfg.learning_rate / 10)
    assert cfg.effective_lr_decay_iters == 5


@pytest.mark.parametrize("name", ["train_cpu_optimized", "train_shakespeare_char", "train_shakespeare_char_tiny",
                                  "train_gpt2_shakespeare"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.run_name


def test_baby_gpt_config_has_nanogpts_data_and_size_and_the_ablations_recipe() -> None:
    cfg = load_config(REPO / "configs" / "train_shakespeare_char.yaml")
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.batch_size) == (6, 6, 384, 256, 64)
    assert (cfg.learning_rate, cfg.dropout, cfg.beta2, cfg.warmup_iters) == (1e-3, 0.2, 0.99, 100)
    # issue 22's GPU ablation: the modern block, Muon and WSD reached val 1.47 soonest (docs/PERFORMANCE.md)
    assert (cfg.arch, cfg.optimizer, cfg.schedule, cfg.max_iters) == ("modern", "muon", "wsd", 1250)
    # ... and the lowest best val at that length: the matrices decayed, a long cooldown to zero (six runs <= 1.43)
    assert (cfg.muon_weight_decay, cfg.cooldown_frac, cfg.min_lr) == (0.25, 0.4, 0.0)
    # evals every 125 iterations whose train loss samples 20 batches (val read whole): 1.47 2.7 s sooner than 200
    assert (cfg.eval_interval, cfg.eval_iters) == (125, 20)


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"unknown config key 'n_layers'.*did you mean n_layer\?"):
        load_config(write(tmp_path, "n_layers: 4\n"))


def test_unknown_override_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"'learning_rat'.*command line.*did you mean learning_rate"):
        load_config(write(tmp_path, ""), {"learning_rat": "1"})


@pytest.mark.parametrize("typed, meant", [("lr", "learning_rate"), ("LR", "learning_rate"), ("bs", "batch_size"),
                                          ("grad_accum", "gradient_accumulation_steps"), ("max_steps", "max_iters"),
                                          ("d_model", "n_embd"), ("n_embed", "n_embd")])
def test_short_and_nanogpt_style_names_get_the_key_they_mean(tmp_path: Path, typed: str, meant: str) -> None:
    with pytest.raises(UserError, match=rf"unknown config key '{typed}'.*did you mean {meant}\?"):
        load_config(write(tmp_path, ""), {typed: "1"})


def test_every_alias_points_at_a_real_key_and_none_is_one() -> None:
    keys = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(KEY_ALIASES.values()) <= keys
    assert not set(KEY_ALIASES) & keys  # an alias is only ever a hint, never a second spelling


@pytest.mark.parametrize("text, key", [
    ("batch_size: twelve\n", "batch_size"),
    ("batch_size: 1.5\n", "batch_size"),
    ("dropout: [0.1]\n", "dropout"),
    ("bias: 3\n", "bias"),
    ("compile: 3\n", "compile"),
    ("dataset: 5\n", "dataset"),
])
def test_wrong_type_names_key_value_and_expected_type(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(UserError, match=rf"{key}=.*wrong type: expected"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("override, value", [("max_iters", "ten"), ("learning_rate", "fast"), ("bias", "maybe")])
def test_wrong_type_override(tmp_path: Path, override: str, value: str) -> None:
    with pytest.raises(UserError, match=rf"--{override}=.*expected"):
        load_config(write(tmp_path, ""), {override: value})


def test_overrides_are_typed(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""), {"max_iters": "300", "learning_rate": "3e-4", "bias": "true",
                                            "min_lr": "none", "data_path": "x.txt"})
    assert cfg.max_iters == 300 and cfg.learning_rate == 3e-4 and cfg.bias is True
    assert cfg.min_lr is None and cfg.data_path == "x.txt"


@pytest.mark.parametrize("values, key", [
    ({"batch_size": 0}, "batch_size"),
    ({"n_layer": -1}, "n_layer"),
    ({"block_size": 0}, "block_size"),
    ({"eval_interval": 0}, "eval_interval"),
    ({"max_iters": -5}, "max_iters"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": math.nan}, "learning_rate"),
    ({"dropout": 1.0}, "dropout"),
    ({"beta2": 1.5}, "beta2"),
    ({"device": "gpu"}, "device"),
    ({"dtype": "fp8"}, "dtype"),
    ({"run_name": "../escape"}, "run_name"),
])
def test_impossible_values_name_the_key(values: dict, key: str) -> None:
    with pytest.raises(UserError, match=key):
        TrainConfig(**values)


def test_n_embd_must_divide_by_n_head() -> None:
    with pytest.raises(UserError, match="n_embd 130 is not divisible by n_head 4"):
        TrainConfig(n_embd=130, n_head=4)


def test_min_lr_above_learning_rate() -> None:
    with pytest.raises(UserError, match="min_lr 0.01 is above learning_rate 0.001"):
        TrainConfig(learning_rate=1e-3, min_lr=1e-2)


def test_warmup_longer_than_decay() -> None:
    with pytest.raises(UserError, match="warmup_iters 500 is longer than lr_decay_iters 200"):
        TrainConfig(warmup_iters=500, lr_decay_iters=200)


@pytest.mark.parametrize("content, match", [
    (b"a: [unclosed\n", "not valid YAML at line"),
    (b"- just\n- a list\n", "must be a mapping"),
    (b"\xff\xfe\x00binary", "not UTF-8"),
])
def test_bad_files(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(UserError, match=match):
        load_config(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="is a directory"):
        load_config(tmp_path)


def test_yaml_is_read_safely(tmp_path: Path) -> None:
    path = write(tmp_path, "run_name: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(path)
    assert not Path("pwned").exists()


def test_compile_takes_auto_true_or_false(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "compile: true\n")).compile is True
    assert load_config(write(tmp_path, ""), {"compile": "auto"}).compile == "auto"
    with pytest.raises(UserError, match="compile='yes please' must be auto, true or false"):
        load_config(write(tmp_path, "compile: yes please\n"))


def test_log_to_takes_a_yaml_list_or_comma_separated_names_and_refuses_anything_else(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "log_to: [tensorboard, wandb]\n")).log_to == ["tensorboard", "wandb"]
    assert load_config(write(tmp_path, "log_to: trackio, wandb\n")).log_to == ["trackio", "wandb"]
    assert load_config(write(tmp_path, "log_to:\n")).log_to == []
    assert load_config(None, {"log_to": "tensorboard,trackio"}).log_to == ["tensorboard", "trackio"]
    assert load_config(None, {"log_to": "none"}).log_to == []
    for text, message in [("log_to: [tensorbord]\n", r"log_to='tensorbord' is not a dashboard tuigpt logs to \(did "
                                                      r"you mean tensorboard\?\): use tensorboard, wandb, trackio"),
                          ("log_to: [wandb, wandb]\n", "names a dashboard twice"),
                          ("log_to: {wandb: true}\n", "log_to=.* has the wrong type: expected a list of names"),
                          ("log_to: [1, 2]\n", "expected a list of names"),
                          ("log_project: my/project\n", "log_project='my/project' must be a plain name"),
                          ("log_project: ''\n", "log_project='' must be a plain name"),
                          ("log_run_name: \"a\\x07b\"\n", "log_run_name=.* must be a printable name")]:
        with pytest.raises(UserError, match=message):
            load_config(write(tmp_path, text))


def test_nanogpt_and_hugging_face_names_for_dashboards_point_at_log_to(tmp_path: Path) -> None:
    for typed, meant in [("wandb_log", "log_to"), ("report_to", "log_to"), ("wandb_project", "log_project"),
                         ("wandb_run_name", "log_run_name")]:
        with pytest.raises(UserError, match=f"did you mean {meant}"):
            load_config(write(tmp_path, f"{typed}: x\n"))


@pytest.mark.parametrize("values, match", [
    ({"schedule": "linear"}, "config key schedule='linear' must be one of cosine, wsd"),
    ({"cooldown_shape": "step"}, "config key cooldown_shape='step' must be one of linear, cosine"),
    ({"cooldown_frac": 1.5}, "config key cooldown_frac=1.5 must be a number from 0 to 1"),
])
def test_schedule_keys_name_what_they_take(values: dict, match: str) -> None:
    with pytest.raises(UserError, match=re.escape(match)):
        TrainConfig(**values)


def test_nanochats_warmdown_ratio_points_at_cooldown_frac(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="did you mean cooldown_frac"):
        load_config(str(write(tmp_path, "warmdown_ratio: 0.4\n")))
