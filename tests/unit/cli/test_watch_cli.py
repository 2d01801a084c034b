"""`tuigpt watch` on the command line: bad input is one line and exit 2."""

from __future__ import annotations

from pathlib import Path

from tuigpt.cli.main import main


def test_bad_run_dir_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main(["watch", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert main(["watch", "--out_dir", str(tmp_path)]) == 2
    assert "no runs under" in capsys.readouterr().err


def test_a_watcher_stopped_by_a_signal_says_the_run_goes_on(monkeypatch, capsys) -> None:  # noqa: ANN001
    """`timeout 10 tuigpt watch RUN > log` ended its output with "stopped by SIGTERM", read as the run stopping."""
    import signal

    from tuigpt.cli import watch
    from tuigpt.cli.main import main
    from tuigpt.run.interrupts import Stopped

    def stopped(args):  # noqa: ANN001, ANN202
        raise Stopped(signal.SIGTERM)

    monkeypatch.setattr(watch, "_watch", stopped)
    assert main(["watch", "somerun"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "tuigpt watch stopped by SIGTERM; the run goes on in its own process\n"


def test_sample_names_its_own_argument_in_its_errors(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """`tuigpt sample checkpoints/nope/best.pt` said "init_from …", a key the user never set."""
    from tuigpt.cli.main import main

    assert main(["sample", str(tmp_path / "nope" / "best.pt")]) == 2
    assert capsys.readouterr().err.startswith("error: tuigpt sample ")
