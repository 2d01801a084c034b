"""The core and telemetry never depend on the UI: importing them must not import textual."""

from __future__ import annotations

import subprocess
import sys

CORE = ["tuigpt.config", "tuigpt.data", "tuigpt.model", "tuigpt.trainer", "tuigpt.checkpoint", "tuigpt.events",
        "tuigpt.runner", "tuigpt.metrics", "tuigpt.metrics_log", "tuigpt.telemetry.cpu", "tuigpt.telemetry.gpu",
        "tuigpt.telemetry.peak", "tuigpt.telemetry.sampler", "tuigpt.telemetry.throttle", "tuigpt.ui.headless"]


def test_core_modules_do_not_import_textual() -> None:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in CORE) +
            "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
            "print(bad[:3]); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
