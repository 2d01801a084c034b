"""Filesystem errors as documented: unusable at the start is exit 2 with nothing written, a write failing during the
run is exit 4 with the previous checkpoint intact, and a run's files are private unless shared.

Read-only and full disks are real: tmpfs mounts inside the test (root in a namespace that allows mounts; the tests
skip, saying why, where it does not)."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from tuigpt.cli import main as cli
from tuigpt.engine.checkpoint import load_checkpoint
from tuigpt.engine.trainer import Trainer
from tuigpt.run.commands import Stop
from tuigpt.run.events import Notice, RunState, StateChanged
from tuigpt.run.metrics_log import read_metrics

from conftest import TINY
from support import corpus, mounted, start_local, wait_for


def _config(tmp_path: Path, out_dir: Path, **values: object) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "out_dir": str(out_dir), "data_path": str(corpus.shakespeare()), **values}))
    return path


def _main(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _one_error_line(text: str, needle: str) -> None:
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], text
    assert "Traceback" not in text


def test_a_read_only_out_dir_is_exit_2_before_anything_is_written(tmp_path: Path, capsys) -> None:
    with mounted(tmp_path / "ro", "-t", "tmpfs", "-o", "ro", "tmpfs") as ro:
        code, text = _main([str(_config(tmp_path, ro / "runs")), "--headless"], capsys)
        assert code == 2
        _one_error_line(text, "read-only")
        assert list(ro.iterdir()) == []


def test_an_out_dir_that_is_a_file_is_exit_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "runs").write_text("not a folder")
    code, text = _main([str(_config(tmp_path, tmp_path / "runs")), "--headless"], capsys)
    assert code == 2
    _one_error_line(text, "a file is in the way")
    assert (tmp_path / "runs").read_text() == "not a folder"


def test_an_unwritable_metrics_jsonl_is_exit_2_and_nothing_changes(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text('{"type":"iter","iter":1,"loss":4.0}\n')
    with mounted(metrics, "--bind", str(metrics)):
        done = subprocess.run(["mount", "-o", "remount,ro,bind", str(metrics)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot remount read-only here: {done.stderr.strip()}")
        code, text = _main([str(_config(tmp_path, tmp_path / "runs")), "--headless"], capsys)
    assert code == 2
    _one_error_line(text, "metrics.jsonl: the file system is read-only")
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.jsonl"]
    assert metrics.read_text() == '{"type":"iter","iter":1,"loss":4.0}\n'


def _fill(directory: Path) -> None:
    """Write a filler file until the disk is full (on a loaded machine the run itself may fill it first: then
    there is no room for the filler file either, and the disk is just as full)."""
    try:
        with open(directory / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC


def test_a_full_disk_at_the_start_is_exit_2_before_anything_is_written(tmp_path: Path, capsys) -> None:
    with mounted(tmp_path / "full", "-t", "tmpfs", "-o", "size=256k", "tmpfs") as full:
        _fill(full)
        code, text = _main([str(_config(tmp_path, full / "runs")), "--headless"], capsys)
        assert code == 2
        _one_error_line(text, "disk is full")
        assert sorted(p.name for p in full.iterdir()) == ["filler"]
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=1m", "tmpfs") as small:
        code, text = _main([str(_config(tmp_path, small / "runs")), "--headless"], capsys)  # no room for a checkpoint
        assert code == 2
        _one_error_line(text, "a checkpoint of this model needs about")
        assert list(small.iterdir()) == []


def test_a_disk_that_fills_during_the_run_is_exit_4_with_the_checkpoint_intact(tmp_path: Path, capsys) -> None:
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=8m", "tmpfs") as disk:
        run_dir = disk / "runs" / "tiny"
        filled = threading.Event()

        def fill_after_the_first_checkpoint() -> None:
            wait_for(lambda: (run_dir / "last.pt").exists(), 120, "the first checkpoint")
            _fill(disk)
            filled.set()

        # the config first: without the corpus the test skips here, before a thread waits for a run that never starts
        config = _config(tmp_path, disk / "runs", max_iters=1_000_000, eval_interval=5, log_interval=1)
        threading.Thread(target=fill_after_the_first_checkpoint, daemon=True).start()
        code, text = _main([str(config), "--headless"], capsys)
        assert filled.is_set()
        assert code == 4, text[-2000:]
        assert "event sink" not in text and "Traceback" not in text
        full = [line for line in text.splitlines() if "No space left on device" in line and
                not line.startswith("!!! ALERT")]  # a checkpoint's failure is also the alert that rings the bell
        # one error line a file that could not be written (no sink repeats it): the checkpoint, and metrics.jsonl
        # too where the disk filled between the two writes
        failed = [line.partition("could not write ")[2].split(" (")[0] or line for line in full]
        assert full and len(failed) == len(set(failed)) and len(full) <= 2, text[-2000:]
        assert "stopped at iter" in text and "a file could not be written" in text  # the closing alert
        (disk / "filler").unlink(missing_ok=True)
        assert load_checkpoint(run_dir / "last.pt")["iter_num"] % 5 == 0  # the last one written, whole


def test_a_write_failure_pauses_the_monitor(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=100_000, eval_interval=100_000), pause_on_trouble=True)
    run, rec = start_local(trainer)
    rec.wait_for(lambda e: getattr(e, "iter", 0) >= 2)
    trainer.report_write_failure("could not write metrics.jsonl (No space left on device)")
    rec.wait(StateChanged, lambda e: e.state == RunState.PAUSED)
    assert any("No space left" in n.message and "paused" in n.message for n in rec.of(Notice))
    trainer.send(Stop(save=False))
    assert run.wait(60)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_run_files_are_private_unless_shared(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path, tmp_path / "runs", max_iters=2, eval_interval=2)
    assert _main([str(config), "--headless"], capsys)[0] == 0
    run_dir = tmp_path / "runs" / "tiny"
    assert _mode(run_dir) == 0o700
    assert {p.name: _mode(p) for p in run_dir.iterdir()} == {"metrics.jsonl": 0o600, "last.pt": 0o600,
                                                             "best.pt": 0o600}
    assert _main([str(config), "--headless", "--run_name=shared", "--share_with_group=true"], capsys)[0] == 0
    shared = tmp_path / "runs" / "shared"
    assert _mode(shared) == 0o750 and {_mode(p) for p in shared.iterdir()} == {0o640}


def test_a_restart_after_a_kill_before_the_first_checkpoint_logs_no_iteration_twice(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    killed = "".join(f'{{"type":"iter","iter":{i},"loss":4.0,"time":{i}}}\n' for i in range(1, 4))
    (run_dir / "metrics.jsonl").write_text(killed)
    code, _ = _main([str(_config(tmp_path, tmp_path / "runs", max_iters=4, eval_interval=4)), "--headless"], capsys)
    assert code == 0
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["iter"] for r in records if r["type"] == "iter"] == [1, 2, 3, 4]
    assert any("moved to metrics.unfinished-" in r.get("message", "") for r in records)
    (moved,) = run_dir.glob("metrics.unfinished-*.jsonl")
    assert moved.read_text() == killed


def test_runs_skips_a_metrics_file_that_is_a_fifo(tmp_path: Path, capsys) -> None:
    (tmp_path / "runs" / "odd").mkdir(parents=True)
    os.mkfifo(tmp_path / "runs" / "odd" / "metrics.jsonl")
    assert cli.main(["runs", "--out_dir", str(tmp_path / "runs")]) == 0  # returns (reading a FIFO would block)
    assert "no runs under" in capsys.readouterr().out


def test_a_full_disk_while_a_stop_checkpoint_is_written_is_exit_4_with_last_pt_intact(tmp_path: Path,
                                                                                      tiny_config) -> None:
    from tuigpt.host.local import LocalRun
    from tuigpt.run.commands import CheckpointNow
    from tuigpt.run.events import CheckpointWritten, IterationStats
    from tuigpt.run.exits import exit_code

    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=8m", "tmpfs") as disk:
        # no eval writes after the untrained one: the stop's is the only write after the disk fills (with an eval
        # every 3 iterations, a loaded machine ran on to the next eval's write before the fill, and the stop at
        # that same iteration had nothing new to write)
        trainer = Trainer(tiny_config(out_dir=str(disk / "runs"), max_iters=100_000, eval_interval=100_000))
        run, rec = start_local(trainer, CheckpointNow())
        saved = rec.wait(CheckpointWritten).iter  # a last.pt to keep
        _fill(disk)
        rec.wait(IterationStats, lambda e: e.iter > saved)  # the stop has an iteration of its own to write
        trainer.send(Stop(save=True))  # what SIGTERM sends, now on a full disk
        assert run.wait(60)
        assert isinstance(run, LocalRun) and run.outcome is not None and run.outcome.reason == "disk"
        assert exit_code(run.ending, signalled=15) == 4  # the disk, not the signal: the stop could not be saved
        assert any("No space left" in n.message for n in rec.of(Notice) if n.level == "error")
        (disk / "filler").unlink()
        assert load_checkpoint(trainer.run_dir / "last.pt")["iter_num"] == saved  # the one before, whole
