"""The block keys: arch names the defaults of the switches, a switch set overrides it, a stored config or a nanoGPT
one without the keys means GPT-2's block, and bad values are one line naming the key (exit 2 from the CLI)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import TINY
from tuigpt.cli import main as cli
from tuigpt.run.config import ARCHS, GPT2_SWITCHES, RESUME_POLICY, SWITCHES, TrainConfig, arch_of
from tuigpt.run.configfile import config_from_dict, load_config
from tuigpt.run.errors import UserError


def switches(config: TrainConfig) -> dict:
    return {key: getattr(config, key) for key in SWITCHES}


def test_arch_sets_every_switch_and_a_switch_set_overrides_it(tmp_path: Path) -> None:
    assert switches(TrainConfig(**TINY)) == GPT2_SWITCHES  # the default is today's block
    modern = TrainConfig(**TINY, arch="modern")
    assert switches(modern) == ARCHS["modern"] and modern.logit_softcap == 15.0 and all(
        getattr(modern, k) for k in SWITCHES)
    path = tmp_path / "c.yaml"
    path.write_text("arch: modern\nrope: false\nlogit_softcap: 30\nqk_norm:\n")  # empty: as arch
    config = load_config(path, {"relu2": "off"})
    assert (config.rope, config.relu2, config.logit_softcap, config.qk_norm, config.rmsnorm) == (False, False, 30.0,
                                                                                                   True, True)
    assert arch_of(switches(config)) is None and arch_of(switches(modern)) == "modern"


def test_every_switch_must_match_on_resume_but_the_initialisation() -> None:
    assert RESUME_POLICY["arch"] == "must match"
    assert {k: RESUME_POLICY[k] for k in SWITCHES if RESUME_POLICY[k] != "must match"} == {
        "zero_init": "kept from the checkpoint"}


def default_arch(monkeypatch: pytest.MonkeyPatch, arch: str) -> None:
    """As if TrainConfig's arch default were ``arch`` (the default may change once measurements say so)."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    defaults = list(TrainConfig.__init__.__defaults__)
    defaults[names.index("arch") - (len(names) - len(defaults))] = arch
    monkeypatch.setattr(TrainConfig.__init__, "__defaults__", tuple(defaults))


def test_a_stored_config_without_the_keys_means_gpt2_whatever_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = {k: v for k, v in TrainConfig(**TINY).to_dict().items() if k != "arch" and k not in SWITCHES}
    default_arch(monkeypatch, "modern")
    assert TrainConfig(**TINY).rope  # the default did change...
    assert switches(config_from_dict(stored, "checkpoint")) == GPT2_SWITCHES  # ...but not what was saved


def test_a_nanogpt_config_means_gpt2_whatever_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default_arch(monkeypatch, "modern")
    path = tmp_path / "train_shakespeare_char.py"
    path.write_text("dataset = 'shakespeare_char'\nn_layer = 2\n")
    assert switches(load_config(path)) == GPT2_SWITCHES
    path.write_text("dataset = 'shakespeare_char'\narch = 'modern'\nlogit_softcap = 20.0\n")  # said so: kept
    config = load_config(path)
    assert config.arch == "modern" and config.rope and config.logit_softcap == 20.0


@pytest.mark.parametrize("values, match", [
    ({"arch": "llama"}, "config key arch='llama' must be one of gpt2, modern"),
    ({"logit_softcap": 0.5}, r"config key logit_softcap=0.5 must be 0 \(off\) or a number from 1 to 1,000"),
    ({"logit_softcap": -1.0}, "config key logit_softcap=-1"),
    ({"rope": True, "n_embd": 30, "n_head": 2}, "head size n_embd / n_head = 15 is odd: pick an even head size, or "
                                                 "set rope=false"),
    ({"arch": "modern", "n_embd": 24, "n_head": 8}, "head size n_embd / n_head = 3 is odd"),
])
def test_bad_values_name_the_key_and_the_fix(values: dict, match: str) -> None:
    with pytest.raises(UserError, match=match) as err:
        TrainConfig(**{**TINY, **values})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override, needle", [
    ("--arch=nanochat", "arch='nanochat' must be one of gpt2, modern"),
    ("--rope=maybe", "--rope='maybe' on the command line has the wrong type: expected true/false or empty"),
    ("--logit_softcap=0.2", "logit_softcap=0.2 must be 0 (off) or a number from 1 to 1,000"),
])
def test_the_cli_refuses_bad_block_keys_in_one_line(tiny_yaml: Path, override: str, needle: str, capsys) -> None:  # noqa: ANN001
    code = cli.main([str(tiny_yaml), "--headless", override])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and needle in err and "Traceback" not in err, err
