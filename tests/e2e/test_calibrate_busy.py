"""A calibration taken while other processes burn every CPU is marked busy and warned about, never passed off as
the machine's peak (the 139.7% MFU of issue #10 came from such a measurement)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuigpt.cli import info

from conftest import REPO  # noqa: E402


def test_calibrating_while_every_cpu_burns_is_marked_busy(cli_env: dict, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    env = dict(cli_env, TUIGPT_CACHE_DIR=str(tmp_path / "cache"))
    cpus = len(os.sched_getaffinity(0))
    burners = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(cpus)]
    try:
        result = subprocess.run([sys.executable, "-m", "tuigpt", "calibrate"], capture_output=True, text=True,
                                env=env, cwd=REPO, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert result.returncode == 0, result.stderr
    assert "busy: other processes used" in result.stdout
    assert "warning: CPU fp32 was timed while the machine was busy" in result.stderr
    assert "stored marked busy" in result.stderr and "tuigpt calibrate" in result.stderr
    entries = json.loads((tmp_path / "cache" / "peaks.json").read_text())
    cpu_entries = [e for key, e in entries.items() if key.startswith("cpu|")]
    assert cpu_entries and all(e["busy"] and e["load"]["others"] > 0.2 for e in cpu_entries)

    monkeypatch.setenv("TUIGPT_CACHE_DIR", env["TUIGPT_CACHE_DIR"])  # `tuigpt info` then reads the same cache
    shown = io.StringIO()
    assert info.print_info(shown, measure=False) == 0
    assert "busy: other processes used" in shown.getvalue() and "MFU against it reads high" in shown.getvalue()
