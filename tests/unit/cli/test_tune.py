"""`tuigpt tune`: every split of the same global batch, a table, the winner as overrides; OOM is "does not fit"."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tuigpt.cli import tune, tuning
from tuigpt.cli.tuning import splits_of
from tuigpt.run.errors import UserError

from conftest import REPO  # noqa: E402


def test_splits_keep_the_global_batch_and_divide_among_ranks() -> None:
    assert splits_of(32, 1) == [(32, 1), (16, 2), (8, 4), (4, 8), (2, 16)]  # no more than 16 micro-steps
    assert splits_of(32, 2) == [(16, 2), (8, 4), (4, 8), (2, 16), (1, 32)]  # accumulation a multiple of the ranks
    assert all(b * a == 12 for b, a in splits_of(12, 1))


class UnmeasuredLoad:
    """A load meter that reads nothing: the tests below are about the table, and a shared test box's real load
    changes would rightly make tune refuse (tests/e2e/test_tune_under_load.py tests that)."""

    def stop(self, min_seconds: float = 0.0) -> None:
        return None


@pytest.fixture
def unmeasured_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning, "LoadMeter", UnmeasuredLoad)


def test_table_winner_and_does_not_fit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                       tiny_yaml: Path, tmp_path: Path, unmeasured_load: None) -> None:
    from tuigpt.cli import timing

    real = timing.bench_config

    def bench_config(config, **kw):  # noqa: ANN001, ANN003
        if config.batch_size == 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(config, **kw)

    monkeypatch.setattr(timing, "bench_config", bench_config)
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


def test_bad_input_is_one_line_and_apply_trains(cli_env: dict, tiny_yaml: Path, unmeasured_load: None,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    run = lambda *a: subprocess.run([sys.executable, "-m", "tuigpt", "tune", *a], capture_output=True,  # noqa: E731
                                    text=True, env=cli_env, cwd=REPO, timeout=300, stdin=subprocess.DEVNULL)
    for args, needle in (([str(tiny_yaml), "--ranks", "3"], "not divisible by --ranks 3"),
                         ([str(tiny_yaml), "--rounds", "1"], "--rounds must be at least 2")):
        bad = run(*args)
        assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and needle in bad.stderr, bad.stderr
    assert tune.main([str(tiny_yaml), "--steps", "1", "--warmup", "0", "--only-splits", "--apply"]) == 0
    out = capfd.readouterr().out
    assert "fastest" in out and "tuigpt training tiny" in out and "done at iter 10" in out


def _result(flops_per_token: float, peak: float, last_ms: float = 10.0) -> SimpleNamespace:
    """A row's last BenchResult: its own round's ms/iter and MFU (1,000 tokens an iteration)."""
    return SimpleNamespace(flops_per_token=flops_per_token, peak_flops=peak, gpu_max_bytes=None, rss_bytes=1 << 28,
                           first_step_ms=80.0, mean_ms=last_ms, mfu=flops_per_token * 1000 / (last_ms / 1000) / peak)


def _table(rows: list[tuning.Row], tokens_per_iter: int) -> list[list[str]]:
    out = io.StringIO()
    tune.report(tuning.Tuned(rows, rows[0], rows[0]), "header", tokens_per_iter, 1, out)
    return [line.split() for line in out.getvalue().splitlines() if line.strip()[:1].isdigit()]


def test_every_row_is_measured_against_one_peak() -> None:
    """A slower float32 row must not show the higher MFU because float32's own peak is lower (#10's bench bug)."""
    bf16 = tuning.Row(tuning.Split(12, 1, "bfloat16", False), ms=[57.0], result=_result(1.13e7, 407e9))
    fp32 = tuning.Row(tuning.Split(12, 1, "float32", False), ms=[70.0], result=_result(1.13e7, 200e9))
    rows = _table([bf16, fp32], 768)
    assert [r[2] for r in rows] == ["bfloat16", "float32"]
    # both against the first row's peak (407 GFLOP/s): 1.13e7 FLOPs x 13,474 tok/s and x 10,971 tok/s
    assert rows[0][6] == "37.4%" and rows[1][6] == "30.5%"


def test_mfu_and_tokens_per_second_come_from_the_same_median_round() -> None:
    """`tune --rounds 2` showed 16,654 tok/s at 59.9% MFU beside 18,035 tok/s at 55.9% (issue 27): its MFU came from
    the last round, its tokens/s from the median. One speed, one formula: MFU = FLOPs/token x tokens/s / peak."""
    peak, flops = 100e9, 1e6
    # each row's last round is its slow one: a table built on the last round ranks them the other way round
    a = tuning.Row(tuning.Split(4, 1, "float32", False), ms=[10.0, 40.0], result=_result(flops, peak, 40.0))
    b = tuning.Row(tuning.Split(2, 2, "float32", False), ms=[30.0, 20.0], result=_result(flops, peak, 20.0))
    rows = _table([a, b], 1000)
    for cells, ms in zip(rows, (25.0, 25.0)):
        tokens = float(cells[5].replace(",", ""))
        assert tokens == pytest.approx(1000 / (ms / 1000), rel=1e-3)
        assert float(cells[6].rstrip("%")) == pytest.approx(flops * tokens / peak * 100, abs=0.05), cells
    c = tuning.Row(tuning.Split(1, 4, "float32", False), ms=[12.0, 50.0], result=_result(flops, peak, 50.0))
    d = tuning.Row(tuning.Split(4, 1, "bfloat16", False), ms=[18.0, 19.0], result=_result(flops, peak, 19.0))
    slower, faster = _table([c, d], 1000)  # c's last round is its fast one, its median the slower
    assert float(faster[5].replace(",", "")) > float(slower[5].replace(",", ""))
    assert float(faster[6].rstrip("%")) > float(slower[6].rstrip("%"))  # the faster row, the higher MFU


def test_write_never_overwrites_another_file_and_refuses_python_configs(tiny_yaml: Path, tmp_path: Path) -> None:
    other = tmp_path / "mine.yaml"
    other.write_text("keep: me\n")
    for target, message in ((other, "already exists and tune never overwrites it"),
                            (tmp_path / "new.py", "tune writes YAML configs")):
        with pytest.raises(UserError, match=message):
            tune.main([str(tiny_yaml), "--write", str(target)])  # refused before anything is timed
    assert other.read_text() == "keep: me\n" and not (tmp_path / "new.py").exists()
    tune.check_write_target(str(tiny_yaml), str(tiny_yaml))  # the config itself: an update in place, allowed
