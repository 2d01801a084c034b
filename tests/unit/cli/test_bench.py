"""`tuigpt bench` as a user runs it: report, --compare table, one-line errors. Timings are never asserted."""

from __future__ import annotations

import datetime as dt
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tuigpt.cli.bench import finish_clock, parse_compare, report, report_comparison
from tuigpt.cli.timing import BenchResult, Comparison
from tuigpt.run.rounds import LoadChange
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
    assert re.search(r"load while timing: (busy|idle): other processes used \d+% of \d+ CPUs?", out), out
    assert not (tmp_path / "runs").exists()  # nothing written where the config points


def test_a_busy_machine_is_said_beside_the_figures(tiny_yaml: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A newcomer's bench printed 3 s steps (130 ms quiet) and 10k-step projections of 8 hours without a word on
    the load."""
    from tuigpt.cli import bench as bench_cli
    from tuigpt.cli.main import main
    from tuigpt.telemetry.load import Load

    class Busy:
        def stop(self, min_seconds: float = 0.0) -> Load:
            return Load(others=0.55, cpus=2, load_avg=3.9)

    monkeypatch.setattr(bench_cli, "LoadMeter", Busy)
    assert main(["bench", str(tiny_yaml), "--steps", "2", "--warmup", "1"]) == 0
    assert ("load while timing: busy: other processes used 55% of 2 CPUs; the figures above are this machine's "
            "speed under that load, not its own") in capsys.readouterr().out


def test_compare_prints_variants_side_by_side(cli_env, tiny_yaml: Path) -> None:
    result = bench(str(tiny_yaml), "--steps=4", "--warmup=1", "--rounds=2", "--compare", "dtype=float32,bfloat16",
                   env=cli_env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "timed steps each in 2 alternating rounds" in out
    verdict = next(line for line in out.splitlines() if line.startswith("verdict: "))
    assert re.match(r"verdict: dtype=bfloat16 is (faster than|slower than|not clearly faster or slower than) dtype=float32",
                    verdict)
    assert "speed-up" in out and "tokens/s" in out and "MFU" in out
    rows = [line for line in out.splitlines() if line.startswith("dtype=")]
    assert [r.split()[0] for r in rows] == ["dtype=float32", "dtype=bfloat16"], out
    assert re.search(r"\s1\.00x\s", rows[0]), out  # the first variant is the reference
    assert re.search(r"\d+\.\d\dx", rows[1]), out


@pytest.mark.parametrize("args, needles", [
    (["--compare", "n_layers=2,4"], ["n_layers", "did you mean n_layer"]),
    (["--compare", "dtype=float32,float8"], ["dtype", "float8"]),
    (["--compare", "block_size=64"], ["at least two values"]),
    (["--compare", "block_size=32,big"], ["block_size", "expected integer"]),
    (["--steps", "0"], ["--steps"]),
    (["--compare", "dtype=float32,bfloat16", "--rounds", "1"], ["--rounds", "at least 2"]),
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


def result(label: str, ms: float, peak: float | None, peak_label: str, **extra: object) -> BenchResult:
    values = dict(label=label, n_params=1000, shape="2 layers x 32", tokens_per_iter=1000, flops_per_token=1e6,
                  device="cpu", dtype="float32", dtype_reason="set", threads=2, compile=False, step_ms=[ms] * 3,
                  first_step_ms=ms, forward_ms=ms / 3, peak_flops=peak, peak_label=peak_label, peak_warning=None,
                  peak_rss_bytes=None, gpu_max_bytes=None, max_iters=100, eval_interval=50, eval_batches=4,
                  round_ms=[ms] * 3)
    values.update(extra)
    return BenchResult(**values)  # type: ignore[arg-type]


def table(results: list[BenchResult], load: LoadChange | None = None) -> dict[str, list[str]]:
    out = io.StringIO()
    report_comparison("dtype", Comparison(results, load, None), dt.datetime(2026, 3, 2, 14, 0), out)
    lines = out.getvalue().splitlines()
    header = next(line for line in lines if line.startswith("variant"))
    cells = re.split(r"\s{2,}", header.strip())
    return {"_text": [out.getvalue()], "_header": cells,
            **{line.split()[0]: re.split(r"\s{2,}", line.strip()) for line in lines if line.startswith("dtype=")}}


def test_compare_puts_dtypes_with_different_peaks_against_one_common_peak() -> None:
    """The slower bf16 must not read as the better MFU because it divides by a smaller bf16 peak."""
    fp32 = result("dtype=float32", 10.0, 300e9, "300 GFLOP/s (fp32, measured)")  # 1e6 * 1e5 / 300e9 = 33.3%
    bf16 = result("dtype=bfloat16", 20.0, 91.2e9, "91.2 GFLOP/s (bf16, measured)")  # own peak: 54.8%
    rows = table([fp32, bf16])
    header = rows["_header"]
    common, own = header.index("MFU common"), header.index("MFU own")
    assert rows["dtype=float32"][common] == "33.3%" and rows["dtype=bfloat16"][common] == "16.7%"
    assert rows["dtype=bfloat16"][own] == "54.8%"  # still there, said to be against its own peak
    assert "every variant against dtype=float32's peak, 300 GFLOP/s (fp32, measured)" in rows["_text"][0]


def test_compare_with_one_peak_has_one_mfu_column_and_flags_an_impossible_one() -> None:
    slow = result("dtype=float32", 10.0, 100e9, "100 GFLOP/s (fp32, measured)")
    fast = result("dtype=bfloat16", 5.0, 100e9, "100 GFLOP/s (fp32, measured)")  # 200% of the peak: stale
    rows = table([slow, fast])
    assert "MFU" in rows["_header"] and "MFU own" not in rows["_header"]
    assert rows["dtype=bfloat16"][rows["_header"].index("MFU")] == "200.0%?!"
    assert "?! over 100%: impossible: the peak looks stale, run `tuigpt calibrate`" in rows["_text"][0]


def test_a_speed_up_is_called_only_beyond_the_round_to_round_spread() -> None:
    base = result("dtype=float32", 10.0, 100e9, "p", round_ms=[10.0, 10.0, 10.0, 10.0])
    clear = result("dtype=bfloat16", 8.0, 100e9, "p", round_ms=[8.1, 7.9, 8.0, 8.0])  # 1.25x ± 0.02
    noisy = result("dtype=float16", 8.0, 100e9, "p", round_ms=[6.0, 12.0, 8.0, 7.0])  # 1.33x ± 0.42
    text = table([base, clear, noisy])["_text"][0]
    assert "verdict: dtype=bfloat16 is faster than dtype=float32: 1.25x ± 0.02 over 4 rounds" in text
    assert ("verdict: dtype=float16 is not clearly faster or slower than dtype=float32: 1.34x ± 0.42 over 4 rounds: "
            "within the round-to-round spread") in text


def test_a_load_that_changed_twice_gives_no_verdict() -> None:
    base = result("dtype=float32", 10.0, 100e9, "p", round_ms=[10.0, 10.0])
    fast = result("dtype=bfloat16", 5.0, 100e9, "p", round_ms=[5.0, 5.0])
    text = table([base, fast], LoadChange(0.02, 0.81, 2))["_text"][0]
    assert "no verdict: the machine's load changed while timing, twice (other processes used 2% → 81% of 2 CPUs)" \
           in text
    assert "faster than" not in text


def test_single_report_flags_an_mfu_over_100_percent() -> None:
    out = io.StringIO()
    report(result("", 5.0, 100e9, "100 GFLOP/s (fp32, measured)"), dt.datetime(2026, 3, 2, 14, 0), out)
    line = next(line for line in out.getvalue().splitlines() if line.startswith("MFU"))
    assert "200.0% (impossible: the peak looks stale, run `tuigpt calibrate`) of 100 GFLOP/s" in line
