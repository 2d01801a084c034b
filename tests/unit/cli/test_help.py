"""`tuigpt --help` and the README's command list name every option each subcommand's own parser accepts."""

from __future__ import annotations

import re

import pytest

from tuigpt.cli.args import HELP
from tuigpt.cli.main import SUBCOMMANDS, main

from conftest import REPO  # noqa: E402

README = (REPO / "README.md").read_text()


def _options(sub: str, capsys: pytest.CaptureFixture[str]) -> set[str]:
    """The --options the subcommand's own --help lists (what its parser really accepts)."""
    try:
        main([sub, "--help"])
    except SystemExit as exc:  # argparse's help exits 0
        assert exc.code == 0
    text = capsys.readouterr().out
    assert text, f"tuigpt {sub} --help printed nothing"
    # option lines ("  --steps N   timed steps") and usage brackets ("[--steps N]"), not examples in prose
    found = re.findall(r"^\s+(--[a-z][\w-]*)", text, re.M) + re.findall(r"\[(--[a-z][\w-]*)", text)
    return set(found) - {"--help", "--key"}


def _usage_block(text: str, sub: str) -> str:
    """The lines of ``text`` from `tuigpt SUB` up to the next `tuigpt ` usage line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.search(rf"\btuigpt {sub}\b", line))
    block = [lines[start]]
    for line in lines[start + 1:]:
        if "tuigpt " in line or not line.strip():
            break
        block.append(line)
    return "\n".join(block)


@pytest.mark.parametrize("sub", sorted(SUBCOMMANDS))
def test_top_level_help_and_readme_list_every_option_of(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    options = _options(sub, capsys)
    assert options, f"tuigpt {sub} --help lists no options"
    readme_commands = re.search(r"## Command line\s+```\n(.*?)```", README, re.S).group(1)
    for where, text in (("tuigpt --help", HELP), ("README Command line", readme_commands)):
        block = _usage_block(text, sub)
        missing = sorted(o for o in options if o not in block)
        assert not missing, f"{where} omits {missing} of `tuigpt {sub}`: {block!r}"
