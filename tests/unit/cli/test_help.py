"""`tuigpt --help` and the README's command list name every option each subcommand's own parser accepts."""

from __future__ import annotations

import re

import pytest
from conftest import REPO  # noqa: E402

from tuigpt.cli.args import HELP
from tuigpt.cli.main import SUBCOMMANDS, main

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



def test_sigterm_during_set_up_is_a_clean_stop(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Before a run's own handlers are in place (data, dtype/compile trials) SIGTERM unwinds like Ctrl+C, so the
    host's clean-up runs (a start's run folder is removed), and the exit code says which signal."""
    import os
    import signal
    import time

    import tuigpt.cli.train
    from tuigpt.cli import main as cli

    unwound = []

    def slow_set_up(args: list[str]) -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal arrives during this
        except BaseException:
            unwound.append(True)  # where the host releases the lock and removes the folder it made
            raise
        return 0

    monkeypatch.setattr(tuigpt.cli.train, "main", slow_set_up)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        for s in before:
            signal.signal(s, signal.SIG_DFL)  # as in a fresh process
        assert cli.main(["some.yaml"]) == 128 + signal.SIGTERM
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    assert unwound == [True]
    assert capsys.readouterr().err.strip() == "stopped by SIGTERM"


def test_version_and_help_as_words_answer_rather_than_read_a_config(capsys: pytest.CaptureFixture[str]) -> None:
    """`tuigpt --version` said "the first argument must be a config file" and suggested a key that does not exist;
    `tuigpt help` looked for a config file named help."""
    assert main(["--version"]) == 0 and re.fullmatch(r"tuigpt \S+\n", capsys.readouterr().out)
    assert main(["help"]) == 0 and capsys.readouterr().out == HELP
