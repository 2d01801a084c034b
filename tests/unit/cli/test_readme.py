"""The README tells the truth: every config key with its default, and CI runs its test command."""

from __future__ import annotations

import dataclasses
import re

from tuigpt.run.config import FLOAT_RANGES, INT_RANGES, TrainConfig, range_text

from conftest import REPO  # noqa: E402
README = (REPO / "README.md").read_text()


def _yaml_default(value: object) -> str:
    if value is None or value == "" or value == []:
        return "*"  # shown as *empty* or *config file name*
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float) and 0 < value < 0.01:
        return f"`{value:.0e}`".replace("e-0", "e-")
    return f"`{value}`"


def _table(header: str) -> dict[str, str]:
    """The rows of the README table under ``header`` (up to the first blank line), by their first cell."""
    start = README.index(header)
    table = README[start:README.index("\n\n", start)]
    return dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, re.M))


def test_every_config_key_is_documented_with_its_default() -> None:
    rows = _table("| key | default | meaning |")
    for f in dataclasses.fields(TrainConfig):
        assert f.name in rows, f"README has no row for config key {f.name}"
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        assert rows[f.name].strip().startswith(_yaml_default(default)), (f.name, rows[f.name])


def test_every_numeric_key_has_its_range_in_the_readme() -> None:
    rows = _table("| key | accepted |")
    for key in [*INT_RANGES, *FLOAT_RANGES]:
        assert key in rows, f"README's range table has no row for {key}"
        assert range_text(key) in rows[key], (key, rows[key], range_text(key))


def test_ci_runs_the_readme_test_command() -> None:
    test_command = re.search(r"pip install -e '\.\[test\]' && (.+)$", README, re.M).group(1).strip()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in [line.strip() for line in ci]
