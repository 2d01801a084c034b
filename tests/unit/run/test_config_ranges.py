"""Bounded input: every numeric key has a range the code can run, YAML cannot blow up, errors stay one short line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuigpt.run.config import FLOAT_RANGES, INT_RANGES, TrainConfig, range_text
from tuigpt.run.configfile import load_config
from tuigpt.run.errors import UserError

from conftest import TINY


@pytest.mark.parametrize("key, value", [
    ("seed", 2**64), ("seed", -1), ("num_threads", 10**10), ("learning_rate", 1e300), ("n_embd", 10**20),
    ("eval_iters", 10**8), ("gradient_accumulation_steps", 10**9), ("ddp_timeout", 1e300), ("max_iters", 10**30),
    ("telemetry_interval", 1e-9), ("sample_max_new_tokens", 10**6), ("sample_temperature", 1e6),
])
def test_values_the_code_cannot_run_are_refused_with_their_range(key: str, value: object) -> None:
    with pytest.raises(UserError, match=rf"config key {key}=.* must be .*{range_text(key).split()[-1]}"):
        TrainConfig(**{**TINY, key: value})


@pytest.mark.parametrize("key", [*INT_RANGES, *FLOAT_RANGES])
def test_both_ends_of_every_range_are_accepted(key: str) -> None:
    lo, hi = INT_RANGES[key] if key in INT_RANGES else FLOAT_RANGES[key][:2]
    open_lo, open_hi = (False, False) if key in INT_RANGES else FLOAT_RANGES[key][2:]
    extra = {"n_head": 1} if key == "n_embd" else {"n_embd": 1024} if key == "n_head" else {}
    if key in ("learning_rate", "min_lr"):
        extra = {"learning_rate": 10.0}
    if key in ("warmup_iters", "lr_decay_iters"):
        extra = {"decay_lr": False}
    for value in (lo + (1e-9 if open_lo else 0), hi - (1e-9 if open_hi else 0)):
        if key == "telemetry_interval" and 0 < value < 0.1:
            continue
        TrainConfig(**{**TINY, **extra, key: value})  # no error


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_a_yaml_alias_bomb_is_refused_in_one_short_line(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for k in range(1, 9):
        lines.append(f"l{k}: &l{k} [" + ",".join([f"*{'a' if k == 1 else f'l{k - 1}'}"] * 9) + "]")
    with pytest.raises(UserError, match="aliases") as err:
        load_config(_write(tmp_path, "\n".join(lines) + "\nbatch_size: *l8\n"))
    assert len(str(err.value)) < 300


def test_deep_nesting_and_huge_integers_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nested deeper than 8 levels"):
        load_config(_write(tmp_path, "n_layer: " + "[" * 50_000 + "]" * 50_000 + "\n"))
    with pytest.raises(UserError, match="cannot be read") as err:
        load_config(_write(tmp_path, "seed: " + "9" * 20_000 + "\n"))
    assert len(str(err.value)) < 400
    with pytest.raises(UserError, match="more than 10,000 values") as err:  # composing them would take a minute
        load_config(_write(tmp_path, "batch_size: [" + "1," * 400_000 + "1]\n"))
    assert len(str(err.value)) < 300
    with pytest.raises(UserError) as err:  # a list of a thousand items in a value: named, not printed
        load_config(_write(tmp_path, "batch_size: [" + "1," * 1_000 + "1]\n"))
    assert "wrong type" in str(err.value) and "1,001 items" in str(err.value) and len(str(err.value)) < 300


def test_long_values_are_clipped_in_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        load_config(None, {"dataset": "x" * 100_000})
    assert "dataset" in str(err.value) and len(str(err.value)) < 300
    with pytest.raises(UserError) as err:
        load_config(None, {"batch_size": "y" * 100_000})
    assert "batch_size" in str(err.value) and len(str(err.value)) < 300


@pytest.mark.parametrize("overrides, match", [
    ({"out_dir": "a" * 300}, "longer than 255 bytes"),
    ({"out_dir": "/".join(["b" * 200] * 25)}, "is too long"),
    ({"data_path": "c\0d"}, "NUL"),
    ({"run_name": "r" * 201}, "at most 200 bytes"),
    ({"run_name": "日" * 70}, "at most 200 bytes"),
])
def test_paths_and_names_must_fit_the_file_system(overrides: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        TrainConfig(**{**TINY, **overrides})


def test_a_long_config_file_name_still_names_a_run(tmp_path: Path) -> None:
    path = tmp_path / ("n" * 250 + ".yaml")
    path.write_text("max_iters: 1\n")
    assert len(load_config(path).run_name.encode()) <= 200


def test_config_files_that_are_fifos_or_devices_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(UserError, match="not a regular file"):
            load_config(path)


def test_every_numeric_key_has_a_range() -> None:
    """A new numeric key must say what the code can run (INT_RANGES or FLOAT_RANGES, and the README's range table)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        args = set(typing.get_args(hints[f.name])) or {hints[f.name]}
        if bool in args:
            continue
        if int in args:
            assert f.name in INT_RANGES, f"{f.name} has no range in INT_RANGES"
        elif float in args:
            assert f.name in FLOAT_RANGES, f"{f.name} has no range in FLOAT_RANGES"


@pytest.mark.parametrize("text, match", [
    ("dataset = " + " + ".join(['"a"'] * 40_000), "nested or chained too deeply"),
    ("batch_size = 1" + " * 99999999999" * 2000, "nested or chained too deeply|makes an integer of about"),
    ('dataset = f"{1:>1000000000}"', "longer than"),
    ("batch_size = foo(" + "1," * 10_000 + ")", "is not a literal value"),
])
def test_python_configs_cannot_blow_up_either(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "c.py"
    path.write_text(text + "\n")
    with pytest.raises(UserError, match=match) as err:
        load_config(path)
    assert len(str(err.value)) < 400
