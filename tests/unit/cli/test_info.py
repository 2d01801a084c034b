"""`tuigpt info` / `tuigpt calibrate` output, and the rule that telemetry never imports textual."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

from tuigpt.cli import info
from tuigpt.engine import calibration
from tuigpt.telemetry.cpuinfo import read_cpu_info


@pytest.fixture
def fake_measure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[tuple] = []

    def measure(dtype: str, threads: int, device: str = "cpu", seconds: float = 2.0) -> float:
        calls.append((dtype, threads, device))
        return {"fp32": 188e9, "bf16": 1.5e12}[dtype]

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


def test_calibrate_measures_again_and_info_then_shows_it(fake_measure: list[tuple], tmp_path: Path) -> None:
    out = io.StringIO()
    assert info.calibrate(out, threads=2) == 0
    text = out.getvalue()
    assert "CPU fp32: 188 GFLOP/s" in text and "CPU bf16: 1.5 TFLOP/s" in text
    assert str(tmp_path / "cache" / "peaks.json") in text
    assert [c[:2] for c in fake_measure] == [("fp32", 2), ("bf16", 2)]
    info.calibrate(io.StringIO(), dtypes=["float32"], threads=2)
    assert len(fake_measure) == 3  # recalibrates even though cached
    assert len(json.loads((tmp_path / "cache" / "peaks.json").read_text())) == 2


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
