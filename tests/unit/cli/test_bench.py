"""`tuigpt bench` as a user runs it: report, --compare table, one-line errors. Timings are never asserted."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tuigpt.cli.bench import finish_clock, parse_compare
from tuigpt.run.errors import UserError

from conftest import REPO  # noqa: E402
CLOCK = r"→ (\w{3} )?\d\d:\d\d"  # "→ 14:32", or "→ Sun 02:10" when it finishes on another day


def bench(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuigpt", "bench", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120, stdin=subprocess.DEVNULL)


def test_bench_reports_speed_memory_and_projections(cli_env, tiny_yaml: Path, tmp_path: Path) -> None:
    result = bench(str(tiny_yaml), "--steps", "3", "--warmup", "1", env=cli_env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for word in ("tokens/s", "ms/step", "p50", "p90", "MFU", "peak RSS", "GPU max allocated n/a", "dtype float32",
                 "threads", "compile off"):
        assert word in out, out
    assert re.search(r"1k steps\s+\S+\s+" + CLOCK, out), out
    assert re.search(r"max_iters 10\s+\S+\s+" + CLOCK, out), out
    assert "bench" in result.stderr  # the progress bar
    assert not (tmp_path / "runs").exists()  # nothing written where the config points


def test_compare_prints_variants_side_by_side(cli_env, tiny_yaml: Path) -> None:
    result = bench(str(tiny_yaml), "--steps=3", "--warmup=1", "--compare", "dtype=float32,bfloat16", env=cli_env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "speed-up" in out and "tokens/s" in out and "MFU" in out
    rows = [line for line in out.splitlines() if line.startswith("dtype=")]
    assert [r.split()[0] for r in rows] == ["dtype=float32", "dtype=bfloat16"], out
    assert rows[0].split()[6] == "1.00x"  # the first variant is the reference
    assert re.search(r"\d+\.\d\dx", rows[1]), out


@pytest.mark.parametrize("args, needles", [
    (["--compare", "n_layers=2,4"], ["n_layers", "did you mean n_layer"]),
    (["--compare", "dtype=float32,float8"], ["dtype", "float8"]),
    (["--compare", "block_size=64"], ["at least two values"]),
    (["--compare", "block_size=32,big"], ["block_size", "expected integer"]),
    (["--steps", "0"], ["--steps"]),
    (["--batch_size=big"], ["--batch_size", "expected integer"]),
])
def test_bad_input_is_one_line_and_exit_2(cli_env, tiny_yaml: Path, args: list[str], needles: list[str]) -> None:
    result = bench(str(tiny_yaml), *args, env=cli_env)
    assert result.returncode == 2, result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_help(cli_env) -> None:
    result = bench("--help", env=cli_env)
    assert result.returncode == 0
    for word in ("--steps", "--warmup", "--compare", "max_iters"):
        assert word in result.stdout


def test_helpers() -> None:
    now = dt.datetime(2026, 3, 2, 14, 0)  # a Monday
    assert finish_clock(32 * 60, now) == "14:32"
    assert finish_clock(12 * 3600, now) == "Tue 02:00"
    assert finish_clock(10 * 86400, now) == "2026-03-12 14:00"
    assert parse_compare("dtype=float32,bfloat16") == ("dtype", ["float32", "bfloat16"])
    with pytest.raises(UserError, match="run_name"):
        parse_compare("run_name=a,b")
