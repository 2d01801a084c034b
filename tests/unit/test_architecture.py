"""The shape of tuigpt, enforced by concept: arrows point down only, torch lives in engine/, textual in ui/, no
import cycles, and a class lives in one file (no mixins spreading it over several).

    run/ (the contract) < telemetry/ < engine/ < control/ < ui/ < host/ < cli/

Every import is read from the source (lazy imports inside functions included, and ``if TYPE_CHECKING:`` imports
too: a circle drawn only for the type checker is still a circle a reader must follow), so a violation fails here
before it can fail on a user's machine. Size is no rule: a module is split when it holds two ideas.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "tuigpt"
LAYERS = ["run", "telemetry", "engine", "control", "ui", "host", "cli"]


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module this file imports (absolute names), ``if TYPE_CHECKING:`` blocks included."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from tuigpt.run import fmt`
    return found


MODULES = {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}
IMPORTS = {name: _imports(path) for name, path in MODULES.items()}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_layers_point_down_only() -> None:
    wrong = []
    for module, imported in IMPORTS.items():
        mine = _layer(module)
        for target in imported:
            theirs = _layer(target)
            if mine and theirs and LAYERS.index(theirs) > LAYERS.index(mine):
                wrong.append(f"{module} imports {target} ({mine} may not depend on {theirs})")
    assert not wrong, "\n".join(sorted(wrong))


def test_run_imports_no_other_tuigpt_layer() -> None:
    wrong = [f"{m} imports {t}" for m, imported in IMPORTS.items() if _layer(m) == "run"
             for t in imported if t.startswith("tuigpt") and _layer(t) != "run" and t != "tuigpt"]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package, home", [("torch", "engine"), ("textual", "ui")])
def test_third_party_packages_stay_in_their_layer(package: str, home: str) -> None:
    """torch only in engine/ (the monitor, `runs` and `watch` work where torch cannot be imported), textual only in
    ui/ (the trainer and the socket never depend on the front end)."""
    wrong = [f"{m} imports {t}" for m, imported in IMPORTS.items() if _layer(m) not in (home, None)
             for t in imported if t == package or t.startswith(package + ".")]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph = {m: {t for t in imported if t in MODULES and t != m} for m, imported in IMPORTS.items()}
    for m in graph:  # importing a.b.c imports its packages a and a.b first
        parent = m.rpartition(".")[0]
        while parent:
            if parent in graph and parent != m:
                graph[m].add(parent)
            parent = parent.rpartition(".")[0]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            # a package importing its own submodule (an __init__ re-export) is the one allowed loop
            if len(component) > 1 and not all(c.startswith(min(component, key=len)) for c in component):
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


# bases that combine with another without making a mixin: a str or int enum, a Protocol, a generic alias
PLAIN_BASES = {"str", "int", "enum.Enum", "Enum", "enum.IntEnum", "Protocol", "Generic", "object"}


def _base_name(base: ast.expr) -> str:
    return ast.unparse(base.value if isinstance(base, ast.Subscript) else base)


def test_no_mixins_a_class_lives_in_one_file() -> None:
    """No class inherits from two others: a class cut into mixins over several files (their attributes declared
    nowhere, their methods joined through TYPE_CHECKING imports) is one class a reader must assemble. A base
    class and its subclasses are fine; so is a str enum."""
    mixed = []
    for module, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [_base_name(b) for b in node.bases if _base_name(b) not in PLAIN_BASES]
                if len(bases) > 1 or node.name.endswith("Mixin"):
                    mixed.append(f"{module}.{node.name}({', '.join(bases)})")
    assert not mixed, "\n".join(mixed)


def _declared(cls: ast.ClassDef) -> set[str]:
    """What a class declares: its methods and class attributes, and every self.X it assigns."""
    names = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    names |= {t.id for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    names |= {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    for node in ast.walk(cls):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        names |= {t.attr for t in targets if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                  and t.value.id == "self"}
    return names


def test_no_base_class_uses_attributes_only_its_subclass_has() -> None:
    """The one-base mixin (Trainer(Chores) was one): a tuigpt class that others extend, with no base of its own,
    whose methods read self.X that it never declares: half a class, the other half in another file."""
    classes = {node.name: node for tree in TREES.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    extended = {_base_name(b) for c in classes.values() for b in c.bases} & set(classes)
    wrong = []
    for name in sorted(extended):
        cls = classes[name]
        if any(_base_name(b) not in PLAIN_BASES for b in cls.bases):
            continue  # it extends a class of its own (Textual's, torch's): what it reads may come from there
        declared = _declared(cls)
        used = {n.attr for n in ast.walk(cls) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                and n.value.id == "self" and isinstance(n.ctx, ast.Load)}
        if used - declared:
            wrong.append(f"{name} uses {', '.join(sorted(used - declared))} without declaring them")
    assert not wrong, "\n".join(wrong)


def test_no_module_adds_methods_to_a_class_from_another() -> None:
    """The other way to spread a class: assigning to an imported class's attributes (Trainer.x = f)."""
    wrong = []
    for module, tree in TREES.items():
        imported = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    for alias in node.names if alias.name[:1].isupper()}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and \
                            target.value.id in imported:
                        wrong.append(f"{module}: {ast.unparse(target)} = …")
    assert not wrong, "\n".join(wrong)


def test_ruff_is_clean() -> None:
    """pyflakes, pycodestyle's errors, import order and the banned imports (the rules pinned in pyproject.toml)."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runs_and_watch_help_work_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    blocker = tmp_path / "blocked" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is not installed here')\n")
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"type":"start","time":1.0,"max_iters":10,"device":"cpu"}\n'
                                       '{"type":"finish","iter":10,"reason":"done","best_val_loss":1.5}\n')
    env = {"PYTHONPATH": f"{blocker.parent}:{REPO}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for args, needle in ((["runs", "--out_dir", str(tmp_path / "runs")], "done"), (["watch", "--help"], "RUN_DIR")):
        result = subprocess.run([sys.executable, "-m", "tuigpt", *args], capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=60)
        assert result.returncode == 0, result.stderr
        assert needle in result.stdout
    check = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert check.returncode != 0, "the blocker works"
