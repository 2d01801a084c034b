"""`tuigpt info` / `tuigpt calibrate` output, and the rule that telemetry never imports textual."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

from tuigpt.cli import info
from tuigpt.engine import calibration
from tuigpt.telemetry.cpuinfo import read_cpu_info
from tuigpt.telemetry.load import Load


class QuietMeter:
    def stop(self) -> Load:
        return Load(0.01, 2, 0.1)


@pytest.fixture
def fake_measure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(calibration, "LoadMeter", QuietMeter)
    calls: list[tuple] = []

    def measure(dtype: str, threads: int, device: str = "cpu", seconds: float = 2.0) -> float:
        calls.append((dtype, threads, device))
        return {"fp32": 188e9, "bf16": 1.5e12}[dtype] * (100 if device.startswith("cuda") else 1)

    monkeypatch.setattr(calibration, "measure_peak", measure)
    return calls


def test_info_without_measuring_describes_the_machine(fake_measure: list[tuple]) -> None:
    out = io.StringIO()
    assert info.print_info(out, measure=False) == 0
    text = out.getvalue()
    assert read_cpu_info().model_name in text
    for heading in ("ISA", "bf16", "max clock", "temperatures", "NVML", "CPU fp32", "CPU bf16", "Calibration cache"):
        assert heading in text, heading
    assert "not measured (run tuigpt calibrate)" in text
    assert fake_measure == []


# What torch reports decides whether calibrate times GPUs too: both machines are tested on every machine.
@pytest.mark.parametrize("gpus", [[], ["NVIDIA H200"]], ids=["no GPU", "one GPU"])
def test_calibrate_measures_again_and_info_then_shows_it(fake_measure: list[tuple], tmp_path: Path, gpus: list[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(info, "_cuda_names", lambda torch: gpus)
    monkeypatch.setattr(info, "_default_threads", lambda cpu: 2)  # info shows the peaks of the threads calibrated
    out = io.StringIO()
    assert info.calibrate(out, threads=2, err=io.StringIO()) == 0
    text = out.getvalue()
    assert "CPU fp32: 188 GFLOP/s" in text and "CPU bf16: 1.5 TFLOP/s" in text
    assert "idle: other processes used 1% of 2 CPUs" in text
    assert str(tmp_path / "cache" / "peaks.json") in text
    cpu_calls = [("fp32", 2, "cpu"), ("bf16", 2, "cpu")]
    gpu_calls = [("fp32", 2, "cuda:0"), ("bf16", 2, "cuda:0")] if gpus else []
    assert fake_measure == cpu_calls + gpu_calls
    if gpus:  # measured beside the datasheet figure it is compared with
        assert "GPU0 NVIDIA H200 bf16: 150 TFLOP/s, 15% of datasheet 990 TFLOP/s" in text
    info.calibrate(io.StringIO(), dtypes=["float32"], threads=2, err=io.StringIO())
    assert len(fake_measure) == len(cpu_calls + gpu_calls) + 1 + len(gpus)  # recalibrates even though cached
    assert len(json.loads((tmp_path / "cache" / "peaks.json").read_text())) == 2 + 2 * len(gpus)

    shown = io.StringIO()
    info.print_info(shown, measure=False)
    assert re.search(r"measured +188 GFLOP/s.* · \d{4}-\d\d-\d\d \d\d:\d\d, idle: other processes used 1% of 2 CPUs",
                     shown.getvalue()), shown.getvalue()


def test_a_measurement_above_the_theoretical_ceiling_blames_the_ceiling() -> None:
    assert info.of_theoretical(100e9, 200e9) == " (50% of theoretical)"
    assert "above the ceiling, so the theoretical figure is too low" in info.of_theoretical(300e9, 200e9)


def test_telemetry_never_imports_textual() -> None:
    code = (
        "import sys\n"
        "import tuigpt.telemetry.cpu, tuigpt.telemetry.gpu, tuigpt.telemetry.peak, tuigpt.telemetry.sampler\n"
        "import tuigpt.telemetry.throttle, tuigpt.telemetry.cpuinfo\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("logical, says", [(8, "SMT on, 2 threads a core: tuigpt trains on 4 threads"),
                                           (4, "no SMT: one thread a core")])
def test_info_says_whether_the_cores_run_two_threads(fake_measure, monkeypatch, logical: int, says: str) -> None:
    from tuigpt.telemetry.cpuinfo import CpuInfo

    monkeypatch.setattr(info, "read_cpu_info", lambda: CpuInfo("Test CPU", "x86_64", "GenuineIntel", 4, logical,
                                                               frozenset({"avx2", "fma"}), None, None))
    out = io.StringIO()
    info.print_info(out, measure=False)
    assert f"4 physical, {logical} logical ({says}" in out.getvalue()


def test_calibrate_config_times_its_choices_and_plain_calibrate_forgets_them(
        fake_measure, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tiny_yaml: Path) -> None:
    from tuigpt.engine import auto
    from tuigpt.engine.trial import Timing

    timed: list[tuple[str, str]] = []

    def time_pair(args, batch, device, a, b, **kw):  # noqa: ANN001, ANN003
        timed.append((a.label, b.label))
        speed = 1.8 if not b.compiled else 0.9  # bf16 wins, compiling loses
        return Timing(a, b, batch, ms={a.label: 10 * speed, b.label: 10}, best_ms={a.label: 10 * speed, b.label: 10},
                      first_ms={a.label: 20, b.label: 900}, ratios=[speed] * 3)

    monkeypatch.setattr(auto, "time_pair", time_pair)
    monkeypatch.setattr(auto, "low_precision_candidate", lambda device: ("bfloat16", "CPU has AVX512_BF16"))
    assert info.calibrate_main([str(tiny_yaml)]) == 0  # tiny_yaml says dtype float32: timed as if auto anyway
    out = capsys.readouterr().out
    assert timed == [("float32", "bf16 autocast"), ("bf16 autocast", "bf16 autocast compiled")]
    assert "dtype    bfloat16 (auto: measured 1.80x float32's speed here (± 0.00 round to round), 3 rounds)" in out
    assert "compile  off (auto: compiled steps measured 0.90x eager's speed here (± 0.00 round to round), 3 rounds)" in out
    assert info.calibrate_main([]) == 0
    assert "Forgot 2 measured dtype/compile choice(s)" in capsys.readouterr().out


def test_info_says_what_the_measured_bf16_peak_means_beside_fp32s(fake_measure: list[tuple],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`info` said bf16 "runs at the fp32 rate" beside its own measurement of 1.37 against 183 GFLOP/s (issue 27)."""
    from tuigpt.telemetry.cpuinfo import CpuInfo

    monkeypatch.setattr(info, "read_cpu_info", lambda: CpuInfo("AMD EPYC Test", "x86_64", "AuthenticAMD", 2, 2,
                                                               frozenset({"avx", "avx2", "fma"}), None, None))
    monkeypatch.setattr(info, "_default_threads", lambda cpu: 2)
    monkeypatch.setattr(calibration, "measure_peak", lambda dtype, threads, device="cpu", seconds=2.0:
                        {"fp32": 183e9, "bf16": 1.37e9}[dtype])
    out = io.StringIO()
    info.print_info(out, measure=True)
    text = out.getvalue()
    assert "fp32 rate" not in text
    assert "no native bf16: emulated, the fp32 figure is only a ceiling" in text
    assert "134x slower than fp32 here (1.37 GFLOP/s vs fp32's 183 GFLOP/s): emulated, not worth training in" in text
    assert info.versus_fp32("bf16", 407e9, 158e9, True).startswith("2.58x fp32's measured rate here")
