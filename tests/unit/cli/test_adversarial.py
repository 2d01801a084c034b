"""The adversarial pass, a sample of it: generated bad configs, overrides, data files, checkpoints and socket messages
never exit 1, never hang, and never change a run directory they should not touch (the full pass, with counts:
benchmarks/adversarial_pass.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.adversarial import SocketHarness, run_all
from support.adversarial_cases import all_cases


def test_a_sample_of_the_adversarial_pass_keeps_every_invariant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 shakespeare: Path) -> None:
    monkeypatch.setenv("TUIGPT_SHAKESPEARE_URL", "http://127.0.0.1:9/unreachable")  # never download
    harness = SocketHarness(tmp_path / "sock")
    try:
        report = run_all(all_cases(seed=11, scale=0.3, harness=harness), tmp_path / "pass")
    finally:
        harness.close()
    assert len(report.results) >= 200
    broken = "\n".join(f"{r.case.category} {r.case.name[:80]}: {r.problem}" for r in report.failures[:10])
    assert not report.failures, f"{report.summary()}\n{broken}"
