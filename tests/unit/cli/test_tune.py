"""`tuigpt tune`: every split of the same global batch, a table, the winner as overrides; OOM is "does not fit"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tuigpt.cli import tune
from tuigpt.cli.tune import splits_of
from tuigpt.run.errors import UserError

from conftest import REPO  # noqa: E402


def test_splits_keep_the_global_batch_and_divide_among_ranks() -> None:
    assert splits_of(32, 1) == [(32, 1), (16, 2), (8, 4), (4, 8), (2, 16)]  # no more than 16 micro-steps
    assert splits_of(32, 2) == [(16, 2), (8, 4), (4, 8), (2, 16), (1, 32)]  # accumulation a multiple of the ranks
    assert all(b * a == 12 for b, a in splits_of(12, 1))


def test_table_winner_and_does_not_fit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                       tiny_yaml: Path, tmp_path: Path) -> None:
    from tuigpt.cli import bench

    real = bench.bench_config

    def bench_config(config, **kw):  # noqa: ANN001, ANN003
        if config.batch_size == 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(config, **kw)

    monkeypatch.setattr(bench, "bench_config", bench_config)
    written = tmp_path / "tuned.yaml"
    code = tune.main([str(tiny_yaml), "--steps", "1", "--warmup", "0", "--only-splits", "--write", str(written)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "global batch 4 sequences x 32 tokens = 128 tokens/iter" in out and "same learning dynamics" in out
    rows = {tuple(line.split()[:2]): line for line in out.splitlines() if line.strip()[:1].isdigit()}
    assert set(rows) == {("4", "1"), ("2", "2"), ("1", "4")}
    assert "does not fit" in rows[("4", "1")] and "(config)" in rows[("4", "1")]
    assert "<- fastest" in rows[("2", "2")] or "<- fastest" in rows[("1", "4")]
    for split in (("2", "2"), ("1", "4")):  # the rows that ran: ms/iter, tokens/s, MFU, memory
        cells = rows[split].split()
        assert float(cells[4]) > 0 and cells[6].endswith("%") and "RSS" in rows[split], rows[split]
    fastest = next(line for line in out.splitlines() if line.startswith("fastest:"))
    assert "--batch_size=" in fastest and "--gradient_accumulation_steps=" in fastest
    text = written.read_text()
    batch = fastest.split("--batch_size=")[1].split()[0]
    assert f"batch_size: {batch}" in text and "gradient_accumulation_steps:" in text


def test_bad_input_is_one_line_and_apply_trains(cli_env: dict, tiny_yaml: Path) -> None:
    run = lambda *a: subprocess.run([sys.executable, "-m", "tuigpt", "tune", *a], capture_output=True,  # noqa: E731
                                    text=True, env=cli_env, cwd=REPO, timeout=300, stdin=subprocess.DEVNULL)
    bad = run(str(tiny_yaml), "--ranks", "3")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "not divisible by --ranks 3" in bad.stderr
    ok = run(str(tiny_yaml), "--steps", "1", "--warmup", "0", "--only-splits", "--apply")
    assert ok.returncode == 0, ok.stderr
    assert "fastest" in ok.stdout and "tuigpt training tiny" in ok.stdout


def test_every_row_is_measured_against_one_peak() -> None:
    """A slower float32 row must not show the higher MFU because float32's own peak is lower (#10's bench bug)."""
    import io
    from types import SimpleNamespace

    def result(mfu: float, peak: float) -> SimpleNamespace:
        return SimpleNamespace(mfu=mfu, peak_flops=peak, gpu_max_bytes=None, rss_bytes=1 << 28, first_step_ms=80.0)

    bf16 = tune.Row(tune.Split(12, 1, "bfloat16", False), ms=[57.0], result=result(0.373, 407e9))
    fp32 = tune.Row(tune.Split(12, 1, "float32", False), ms=[70.0], result=result(0.615, 200e9))
    out = io.StringIO()
    tune.report([bf16, fp32], bf16, bf16, "header", 768, 1, out)
    rows = [line.split() for line in out.getvalue().splitlines() if line.strip()[:1].isdigit()]
    assert [r[2] for r in rows] == ["bfloat16", "float32"]
    assert rows[0][6] == "37.3%" and rows[1][6] == "30.2%"  # 0.615 x 200/407: below the faster row, as it must be


def test_write_never_overwrites_another_file_and_refuses_python_configs(tiny_yaml: Path, tmp_path: Path) -> None:
    other = tmp_path / "mine.yaml"
    other.write_text("keep: me\n")
    for target, message in ((other, "already exists and tune never overwrites it"),
                            (tmp_path / "new.py", "tune writes YAML configs")):
        with pytest.raises(UserError, match=message):
            tune.main([str(tiny_yaml), "--write", str(target)])  # refused before anything is timed
    assert other.read_text() == "keep: me\n" and not (tmp_path / "new.py").exists()
    tune.check_write_target(str(tiny_yaml), str(tiny_yaml))  # the config itself: an update in place, allowed
