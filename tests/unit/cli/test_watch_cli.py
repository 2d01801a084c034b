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
