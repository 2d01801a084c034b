"""Reading a user's YAML file safely: no code, no aliases, bounded size and nesting, one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tuigpt.run.errors import UserError
from tuigpt.run.fmt import clip, shown
from tuigpt.run.user_files import read_user_text


class _ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases and with a nesting limit.

    A config is a page of ``key: value`` lines: an alias (``*name``) is never needed there, and a few lines of
    nested aliases expand to billions of nodes; deep nesting would exhaust the composer's recursion, and a
    megabyte of list items would take PyYAML's pure-Python composer most of a minute.
    """

    depth = 0
    nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a config file",
                                              self.peek_event().start_mark)
        self.nodes += 1
        if self.nodes > MAX_CONFIG_NODES:  # half a million list items take PyYAML half a minute
            raise yaml.composer.ComposerError(None, None, f"more than {MAX_CONFIG_NODES:,} values",
                                              self.peek_event().start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_CONFIG_NESTING:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_CONFIG_NESTING} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


MAX_CONFIG_NESTING = 8
MAX_CONFIG_NODES = 10_000  # a config has about fifty keys


def read_mapping(path: Path, what: str, fix: str, max_bytes: int) -> dict[str, Any]:
    """A YAML file of ``key: value`` lines as a dict with text keys; every way it can be unusable (not a regular
    file, too big, not UTF-8, not YAML, aliases, deep nesting, unreadable values) is a one-line UserError."""
    text = read_user_text(path, what, fix, max_bytes=max_bytes)
    shown_path = clip(str(path), 200)
    try:
        data = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = clip(str(getattr(exc, "problem", None) or "invalid YAML"), 120)
        raise UserError(f"{what} {shown_path} is not valid YAML{where}: {problem}") from None
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise UserError(f"{what} {shown_path} holds a value that cannot be read ({clip(str(exc), 120)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} {shown_path} must be a mapping of key: value lines, not a {type(data).__name__}")
    for key in data:
        if not isinstance(key, str):
            raise UserError(f"{what} {shown_path} has a non-text key {shown(key, 60)}: keys are names like "
                            f"batch_size")
    return data
