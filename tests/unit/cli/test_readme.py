"""The README tells the truth: every config key with its default, and CI runs its test command."""

from __future__ import annotations

import dataclasses
import re

from tuigpt.run.config import TrainConfig

from conftest import REPO  # noqa: E402
README = (REPO / "README.md").read_text()


def _yaml_default(value: object) -> str:
    if value is None or value == "":
        return "*"  # shown as *empty* or *config file name*
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float) and 0 < value < 0.01:
        return f"`{value:.0e}`".replace("e-0", "e-")
    return f"`{value}`"


def test_every_config_key_is_documented_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", README, re.M))
    for f in dataclasses.fields(TrainConfig):
        assert f.name in rows, f"README has no row for config key {f.name}"
        assert rows[f.name].strip().startswith(_yaml_default(f.default)), (f.name, rows[f.name])


def test_ci_runs_the_readme_test_command() -> None:
    test_command = re.search(r"pip install -e '\.\[test\]' && (.+)$", README, re.M).group(1).strip()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in [line.strip() for line in ci]
