"""`tuigpt netcheck` and `--netcheck` outside torchrun: one line saying how to launch them, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuigpt.cli.main import main


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


def test_netcheck_in_a_single_process_says_how_to_launch_it(tiny_yaml: Path, capsys) -> None:
    assert main(["netcheck", str(tiny_yaml)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: netcheck measures what several ranks gain over one")
    assert "torchrun --nnodes=2 --node_rank=R --nproc_per_node=1 --master_addr=NODE0_ADDRESS" in err
    assert "-m tuigpt netcheck CONFIG" in err


def test_training_with_netcheck_needs_several_ranks(tiny_yaml: Path, capsys) -> None:
    assert main([str(tiny_yaml), "--netcheck", "--headless"]) == 2
    assert "--netcheck measures what several ranks gain over one" in capsys.readouterr().err
    assert not (tiny_yaml.parent / "runs").exists()  # refused before anything was written


def test_netcheck_checks_its_arguments_and_has_help(tiny_yaml: Path, capsys) -> None:
    assert main(["netcheck", str(tiny_yaml), "--rounds=0"]) == 2
    assert "--rounds must be a positive integer, not 0" in capsys.readouterr().err
    assert main(["netcheck", str(tiny_yaml), "--seconds=-1"]) == 2
    assert "--seconds must be between 0 and 3600, not -1" in capsys.readouterr().err
    assert main(["netcheck", str(tiny_yaml), "--no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    assert main(["netcheck", "--help"]) == 0
    assert "predicted speed-up" in capsys.readouterr().out.replace("\n", " ")
    assert main(["--help"]) == 0
    assert "netcheck" in capsys.readouterr().out
