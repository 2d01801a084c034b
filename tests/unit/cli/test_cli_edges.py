"""Edges of the command line that were exit 1 with a traceback: each is one line and exit 2 (issue 26, item 9c)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tuigpt.cli import main as cli
from tuigpt.engine.trainer import Trainer


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuigpt.run.config import TrainConfig

    from conftest import TINY
    from support.corpus import shakespeare

    root = tmp_path_factory.mktemp("edges")
    trainer = Trainer(TrainConfig(**{**TINY, "out_dir": str(root / "runs"), "run_name": "tiny",
                                     "data_path": str(shakespeare()), "max_iters": 2, "eval_interval": 2}))
    trainer.run()
    return trainer.run_dir.path


def one_error(capsys: pytest.CaptureFixture, needle: str) -> None:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and needle in errors[0], err


@pytest.mark.parametrize("device", ["bogus", "meta", "cuda:x", ""])
def test_sample_on_a_device_tuigpt_does_not_run_on_is_exit_2(run: Path, device: str, capsys) -> None:
    assert cli.main(["sample", str(run / "last.pt"), "--device", device, "--max_new_tokens", "2"]) == 2
    one_error(capsys, "is not one tuigpt runs on")


def test_nproc_over_a_run_that_exists_is_one_line_before_torchrun(run: Path, tmp_path: Path, capsys,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from conftest import TINY
    from support.corpus import shakespeare

    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail("torchrun was started"))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY, "out_dir": str(run.parent), "run_name": run.name,
                                      "data_path": str(shakespeare()), "max_iters": 2}))
    assert cli.main([str(config), "--nproc=2", "--headless"]) == 2
    one_error(capsys, "already holds a run (last.pt): continue it with --resume")
    assert cli.main([str(config), "--nproc=2", "--headless", "--resume"]) == 2  # and it is at max_iters already
    one_error(capsys, "already reached iteration 2")


def test_crash_log_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(tmp_path))
    (tmp_path / "crash.log").write_text("old\n")
    os.chmod(tmp_path / "crash.log", 0o644)  # as an earlier tuigpt left it
    path = cli._crash_log("Traceback ...\n")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and path.read_text() == "old\nTraceback ...\n"


def test_a_value_with_a_newline_stays_on_the_one_error_line(tmp_path: Path, capsys) -> None:
    import yaml

    from conftest import TINY
    from support.corpus import shakespeare

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY, "out_dir": str(tmp_path / "runs"), "data_path": str(shakespeare())}))
    assert cli.main([str(config), "--headless", "--init_from=auto\n"]) == 2  # found by the adversarial pass, seed 2
    one_error(capsys, "init_from 'auto\\n'")
    assert not (tmp_path / "runs").exists()
