"""A mistyped subcommand or option names the one meant (issue 27: `--headles` said "needs a value", `tuigpt sampel`
said "config file sampel does not exist")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuigpt.cli.main import main


def error_of(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize("typed, meant", [("sampel", "sample"), ("tunr", "tune"), ("wacth", "watch"),
                                          ("calibarte", "calibrate")])
def test_a_mistyped_subcommand_names_the_one_meant(typed: str, meant: str, capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    said = error_of([typed, "x"], capsys)
    assert f"unknown command '{typed}': did you mean `tuigpt {meant}`?" in said


def test_a_config_file_of_that_name_still_trains_from_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sampel").write_text("max_iters: [1]\n")  # a file is what it names, typo-like or not
    assert "unknown command" not in error_of(["sampel"], capsys)


@pytest.mark.parametrize("args, meant", [
    (["--headles"], "--headless"),
    (["--resum"], "--resume"),
    (["--nprocs", "2"], "--nproc"),
    (["--max_iter=5"], "max_iters"),  # a config key: the closest key
    (["--max_iter", "5"], "max_iters"),
])
def test_a_mistyped_training_option_names_the_one_meant(args: list[str], meant: str, tiny_yaml: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    said = error_of([str(tiny_yaml), *args], capsys)
    assert f"did you mean {meant}?" in said and "needs a value" not in said


@pytest.mark.parametrize("args, meant", [
    (["tune", "{cfg}", "--step", "5"], "--steps"),
    (["tune", "{cfg}", "--only-split"], "--only-splits"),
    (["bench", "{cfg}", "--warmpu", "1"], "--warmup"),
    (["sample", "ckpt.pt", "--promt", "hi"], "--prompt"),
    (["watch", "--outdir", "x"], "--out_dir"),
    (["calibrate", "{cfg}", "--therads", "2"], "--threads"),
])
def test_a_mistyped_subcommand_option_names_the_one_meant(args: list[str], meant: str, tiny_yaml: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    said = error_of([a.replace("{cfg}", str(tiny_yaml)) for a in args], capsys)
    assert f"did you mean {meant}?" in said, said
