"""Write targets (`tuigpt export`, `tune --write`): an output appears whole or not at all, a full disk is exit 4 with
nothing left and a retry that works, a bad target is one line and exit 2 before any work, and nothing that exists is
ever replaced — a file, a dangling link, or one made while the work went on (issue 26, item 7)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from support import mounted
from tuigpt.cli import main as cli
from tuigpt.cli import tune
from tuigpt.engine.trainer import Trainer
from tuigpt.run.errors import UserError


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuigpt.run.config import TrainConfig

    from conftest import TINY
    from support.corpus import shakespeare

    root = tmp_path_factory.mktemp("export")
    trainer = Trainer(TrainConfig(**{**TINY, "out_dir": str(root), "run_name": "r", "data_path": str(shakespeare()),
                                     "max_iters": 1, "eval_interval": 1}))
    trainer.run()
    return trainer.run_dir.path


def export(run: Path, out: Path, capsys: pytest.CaptureFixture, fmt: str = "nanogpt") -> tuple[int, str]:
    code = cli.main(["export", str(run), "--format", fmt, "--out", str(out)])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in captured.err and (code == 0 or len(errors) == 1), captured.err
    return code, errors[0] if errors else ""


def test_export_onto_a_full_disk_is_exit_4_leaves_nothing_and_the_retry_works(run: Path, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    with mounted(tmp_path / "full", "-t", "tmpfs", "-o", "size=256k", "tmpfs") as full:  # ckpt.pt is ~350 KB
        code, error = export(run, full / "out", capsys)
        assert code == 4 and "No space left on device" in error and "nothing was written" in error
        assert os.listdir(full) == []  # no partial folder, no temporary one
    code, _ = export(run, tmp_path / "out", capsys)  # the same export where there is room
    assert code == 0 and sorted(os.listdir(tmp_path / "out")) == ["ckpt.pt", "meta.pkl"]


@pytest.mark.parametrize("make, message", [
    (lambda out: out.write_text("x"), "is a file, not a folder"),
    (lambda out: (out.parent / "afile").write_text("x"), "afile is a file, not a folder"),
    (lambda out: (out.mkdir(), os.symlink(out / "gone", out / "ckpt.pt")), "ckpt.pt already exists"),
])
def test_a_bad_export_target_is_one_line_and_nothing_is_replaced(run: Path, tmp_path: Path, make, message: str,
                                                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    make(out)
    target = tmp_path / "afile" / "sub" if "afile" in message else out
    before = {p: os.readlink(p) if p.is_symlink() else p.read_bytes() for p in tmp_path.rglob("*") if not p.is_dir()}
    code, error = export(run, target, capsys)
    assert code == 2 and message in error
    assert before == {p: os.readlink(p) if p.is_symlink() else p.read_bytes() for p in tmp_path.rglob("*")
                      if not p.is_dir()}


def test_a_name_taken_while_the_export_was_written_is_not_replaced(run: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    from tuigpt.engine import hf

    out = tmp_path / "out"
    out.mkdir()
    real = hf.hf_files

    def slow(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - another process writes config.json meanwhile
        (out / "config.json").write_text("theirs")
        return real(*args, **kwargs)

    monkeypatch.setattr(hf, "hf_files", slow)
    code, error = export(run, out, capsys, fmt="hf")
    assert code == 2 and "config.json already exists" in error
    assert sorted(os.listdir(out)) == ["config.json"] and (out / "config.json").read_text() == "theirs"


# ---------------------------------------------------------------- tune --write


def test_tune_write_into_a_missing_folder_is_refused_before_timing(tiny_yaml: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tune, "tune", lambda *a, **k: pytest.fail("timed before the target was checked"))
    for target, message in ((tmp_path / "missing" / "t.yaml", "does not exist: create it first"),
                            (tmp_path, "already exists and tune never overwrites it")):
        with pytest.raises(UserError, match=message):
            tune.main([str(tiny_yaml), "--write", str(target)])


def test_tune_write_never_replaces_a_file_that_appeared_during_timing(tiny_yaml: Path, tmp_path: Path) -> None:
    target = tmp_path / "new.yaml"
    tune.check_write_target(str(tiny_yaml), str(target))  # free when checked ...
    target.write_text("mine\n")  # ... taken while timing
    with pytest.raises(UserError, match="a file appeared there while tune was timing"):
        tune.write_config(str(tiny_yaml), str(target), {"batch_size": "2"})
    assert target.read_text() == "mine\n"


def test_tune_write_in_place_keeps_the_link_the_mode_and_hard_links(tiny_yaml: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    real = tmp_path / "real.yaml"
    real.write_text(tiny_yaml.read_text())
    real.chmod(0o644)
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    tune.check_write_target(str(link), str(link))
    assert tune.write_config(str(link), str(link), {"batch_size": "2"}) is None
    assert link.is_symlink() and "batch_size: 2" in real.read_text()
    assert stat.S_IMODE(real.stat().st_mode) == 0o644
    os.link(real, tmp_path / "hard.yaml")
    note = tune.write_config(str(real), str(real), {"batch_size": "1"})
    assert note is not None and "2 hard links" in note
    assert "batch_size: 1" in (tmp_path / "hard.yaml").read_text() and os.stat(real).st_nlink == 2
    assert stat.S_IMODE(real.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary file left
