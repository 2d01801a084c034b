"""nanoGPT-style python configs (``config/train_shakespeare_char.py``), read without executing them.

A nanoGPT config is a python file of plain assignments that nanoGPT's ``configurator.py`` ``exec``\\ s on top
of train.py's defaults. Here the file is parsed with :mod:`ast` and only literal values are evaluated: numbers,
strings, True/False/None, arithmetic on them (``5 * 8``, ``learning_rate / 10``), names assigned earlier
(or nanoGPT's defaults) and f-strings of those. Anything else (a call, an attribute, a loop) is exit 2 naming the
line. Evaluation is bounded in size and time, not only in depth: an integer past MAX_INT_BITS is refused before it
is computed (``(10**64)**64`` raised again, or a chain of squarings, would take hours and gigabytes), and a file
may evaluate at most MAX_NODES expressions in MAX_SECONDS. ``import`` lines are skipped, not run: nanoGPT's own
``finetune_shakespeare.py`` imports ``time`` only to name its wandb run, so a wandb key whose value cannot be worked
out is an error only when it is used.

The same key mapping turns a nanoGPT checkpoint's ``config`` dict into tuigpt keys (:func:`translate`).
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
import re
import time
from pathlib import Path
from typing import Any, Callable

from tuigpt.run.errors import UserError
from tuigpt.run.fmt import clip, shown
from tuigpt.run.user_files import read_user_text

MAX_CONFIG_BYTES = 256 << 10  # nanoGPT's configs are 1-2 KB; parsing costs ~10 µs a byte on a loaded 2-core box

# nanoGPT's train.py defaults: what a key the file does not set means there. The system keys (device 'cuda',
# dtype, compile=True, backend 'nccl') are left out on purpose: tuigpt's 'auto' picks what this machine has.
NANOGPT_DEFAULTS: dict[str, Any] = {
    "out_dir": "out", "eval_interval": 2000, "log_interval": 1, "eval_iters": 200, "eval_only": False,
    "always_save_checkpoint": True, "init_from": "scratch", "dataset": "openwebtext",
    "gradient_accumulation_steps": 5 * 8, "batch_size": 12, "block_size": 1024,
    "n_layer": 12, "n_head": 12, "n_embd": 768, "dropout": 0.0, "bias": False,
    "learning_rate": 6e-4, "max_iters": 600000, "weight_decay": 1e-1, "beta1": 0.9, "beta2": 0.95, "grad_clip": 1.0,
    "decay_lr": True, "warmup_iters": 2000, "lr_decay_iters": 600000, "min_lr": 6e-5,
}
# nanoGPT's model is GPT-2's block, whatever tuigpt's arch default is (a file may still set arch = 'modern')
NANOGPT_ARCH = "gpt2"
# nanoGPT keys tuigpt reads under another name
RENAMED = {"backend": "ddp_backend"}
# nanoGPT's W&B keys: wandb_log = True is log_to: [wandb]; project and run name name the W&B (and trackio) run
WANDB_KEYS = {"wandb_log": "log_to", "wandb_project": "log_project", "wandb_run_name": "log_run_name"}
SYSTEM_KEYS = ("device", "dtype", "compile", "backend")
NANOGPT_KEYS = (*NANOGPT_DEFAULTS, *WANDB_KEYS, *SYSTEM_KEYS)
# datasets tuigpt has itself (the same text, tokenizer and 90/10 split as nanoGPT's prepare.py); any other
# nanoGPT dataset name is a folder data/<name>/ of train.bin + val.bin written by its prepare.py
OWN_DATASETS = ("shakespeare_char", "shakespeare", "text", "nanogpt")
NANOGPT_DATA_ROOT = "data"

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
MAX_POWER = 64  # 10 ** 10 ** 10 would hang the parser; no config value needs a bigger exponent
MAX_INT_BITS = 1024  # nor an integer past float's range (a seed is 64 bits, max_iters 40)
MAX_TEXT = 4096  # nor a longer string
MAX_NODES = 200_000  # expressions evaluated in one file (a 1 MiB file of `a = a + 1` lines is ~150,000)
MAX_SECONDS = 5.0  # and the time that may take: a legitimate config evaluates in milliseconds


class _Budget:
    """What evaluating one config file may still cost: expressions, and wall time."""

    def __init__(self) -> None:
        self.nodes = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def spend(self, where: str) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise UserError(f"{where}: the file evaluates more than {MAX_NODES:,} expressions (a config holds plain "
                            f"values)")
        if self.nodes % 1024 == 0 and time.monotonic() > self.deadline:
            raise UserError(f"{where}: the file takes more than {MAX_SECONDS:g} s to evaluate (a config holds plain "
                            f"values)")


class _Unusable:
    """A wandb key whose value could not be worked out: fine unless another line or wandb logging uses it."""

    def __init__(self, line: int, why: str) -> None:
        self.line, self.why = line, why


def read_py_config(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The file's assignments, on top of nanoGPT's defaults, in nanoGPT's key names: (values, notices)."""
    text = read_user_text(path, "config file", "give a nanoGPT-style .py config or a YAML file",
                          max_bytes=MAX_CONFIG_BYTES)
    try:
        tree = ast.parse(text, str(path))
    except SyntaxError as exc:
        raise UserError(f"config file {path} line {exc.lineno}: not valid python ({clip(str(exc.msg), 120)})") from None
    except (RecursionError, MemoryError, ValueError):  # 50,000 chained `+`: the parser's own recursion
        raise UserError(f"config file {path}: an expression nested or chained too deeply to read (a config holds "
                        f"plain values)") from None
    values: dict[str, Any] = dict(NANOGPT_DEFAULTS)
    assigned: dict[str, Any] = {}
    budget = _Budget()
    for node in tree.body:
        where = f"config file {path} line {node.lineno}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue  # not run: a name it would bring in makes the line that uses it fail instead
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring or a bare string used as a comment
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            raise UserError(f"{where}: only plain assignments like `batch_size = 12` are read (this is "
                            f"{_describe(node)}); tuigpt never runs a config file")
        names = []
        for target in targets:
            if not isinstance(target, ast.Name):
                raise UserError(f"{where}: assign to a plain key name (`{_src(target)} = ...` is not one)")
            names.append(target.id)
        scope = {**values, **assigned}
        if all(name in WANDB_KEYS for name in names):
            try:
                result: Any = _evaluate_bounded(value, scope, where, budget)
            except UserError as exc:  # never used by tuigpt, so only an error if another line refers to it
                result = _Unusable(node.lineno, str(exc))
        else:
            result = _evaluate_bounded(value, scope, where, budget)
        for name in names:
            assigned[name] = result
    return _merge(values, assigned, path)


def _merge(values: dict[str, Any], assigned: dict[str, Any], path: Path) -> tuple[dict[str, Any], list[str]]:
    values.update(assigned)
    unset = [k for k in ("n_layer", "n_embd", "block_size", "batch_size", "max_iters") if k not in assigned]
    notices = []
    if unset:
        shown = ", ".join(f"{k}={NANOGPT_DEFAULTS[k]}" for k in unset)
        notices.append(f"{path} is a nanoGPT-style config: keys it does not set take nanoGPT's train.py defaults "
                       f"({shown}, ...); device, dtype and compile stay auto")
    return values, notices


def _describe(node: ast.AST) -> str:
    kind = type(node).__name__
    return {"If": "an if statement", "For": "a for loop", "While": "a while loop", "FunctionDef": "a function",
            "Expr": "an expression", "AugAssign": "an in-place update like `x += 1`", "With": "a with block",
            "ClassDef": "a class", "Try": "a try block", "Delete": "a del statement"}.get(kind, f"a {kind} statement")


def _evaluate_bounded(node: ast.expr, scope: dict[str, Any], where: str, budget: _Budget) -> Any:
    """:func:`_evaluate`, with an expression too deep for the interpreter's recursion an error like any other."""
    try:
        return _evaluate(node, scope, where, budget)
    except RecursionError:
        raise UserError(f"{where}: an expression nested or chained too deeply to read (a config holds plain "
                        f"values)") from None


def _src(node: ast.AST) -> str:
    """An expression as an error line quotes it: its source, clipped."""
    try:
        return clip(ast.unparse(node), 80)
    except (RecursionError, ValueError):
        return "the expression"


def _evaluate(node: ast.expr, scope: dict[str, Any], where: str, budget: _Budget) -> Any:
    """The value of a literal expression; UserError naming ``where`` for anything that would need running code."""
    budget.spend(where)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, int) and not isinstance(node.value, bool):
            return _bounded_int(node.value, where)
        if isinstance(node.value, (float, str, bool)) or node.value is None:
            return node.value
        raise UserError(f"{where}: {shown(node.value)} is not a number, text, True, False or None")
    if isinstance(node, ast.Name):
        if node.id not in scope:
            raise UserError(f"{where}: {shown(node.id)} is not a key assigned above (tuigpt evaluates plain values only, "
                            f"it runs no imports or code)")
        value = scope[node.id]
        if isinstance(value, _Unusable):
            raise UserError(f"{where}: uses {node.id}, whose line {value.line} could not be read ({value.why})")
        return value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        operand = _evaluate(node.operand, scope, where, budget)
        _require_number(operand, node, where)
        return _UNARY[type(node.op)](operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left, scope, where, budget), _evaluate(node.right, scope, where, budget)
        return _binary(node, left, right, where)
    if isinstance(node, ast.JoinedStr):
        return _fstring(node, scope, where, budget)
    raise UserError(f"{where}: `{_src(node)}` is not a literal value (tuigpt reads numbers, text, "
                    f"True/False/None and arithmetic on them, without running code)")


def _require_number(value: Any, node: ast.expr, where: str) -> None:
    if not isinstance(value, (int, float)):
        raise UserError(f"{where}: `{_src(node)}` does arithmetic on {shown(value)}, which is not a number")


def _binary(node: ast.BinOp, left: Any, right: Any, where: str) -> Any:
    if isinstance(node.op, ast.Add) and isinstance(left, str) and isinstance(right, str):
        result = left + right
        if len(result) > MAX_TEXT:
            raise UserError(f"{where}: text longer than {MAX_TEXT} characters")
        return result
    _require_number(left, node, where)
    _require_number(right, node, where)
    if isinstance(node.op, ast.Pow) and abs(right) > MAX_POWER:
        raise UserError(f"{where}: exponent {right} is too large for a config value")
    _refuse_big(node, left, right, where)
    try:
        result = _BINARY[type(node.op)](left, right)
    except (ZeroDivisionError, OverflowError) as exc:
        raise UserError(f"{where}: `{_src(node)}` cannot be computed ({exc})") from None
    if isinstance(result, complex) or (isinstance(result, float) and not math.isfinite(result)):
        raise UserError(f"{where}: `{_src(node)}` is not a finite real number")
    return _bounded_int(result, where) if isinstance(result, int) else result


def _refuse_big(node: ast.BinOp, left: Any, right: Any, where: str) -> None:
    """Refuse, before computing it, an integer product or power whose result would pass MAX_INT_BITS."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return
    if isinstance(node.op, ast.Pow) and right > 0 and abs(left) > 1:
        bits = (abs(left).bit_length() - 1) * right
    elif isinstance(node.op, ast.Mult) and left and right:
        bits = abs(left).bit_length() + abs(right).bit_length() - 2
    else:
        return
    if bits > MAX_INT_BITS:
        raise UserError(f"{where}: `{_src(node)}` makes an integer of about {bits:,} bits; a config value has at "
                        f"most {MAX_INT_BITS}")


def _bounded_int(value: int, where: str) -> int:
    if abs(value).bit_length() > MAX_INT_BITS:
        raise UserError(f"{where}: an integer of {abs(value).bit_length():,} bits; a config value has at most "
                        f"{MAX_INT_BITS}")
    return value


def _fstring(node: ast.JoinedStr, scope: dict[str, Any], where: str, budget: _Budget) -> str:
    parts = []
    for part in node.values:
        if isinstance(part, ast.Constant):
            parts.append(str(part.value))
            continue
        assert isinstance(part, ast.FormattedValue)
        value = _evaluate(part.value, scope, where, budget)
        spec = _fstring(part.format_spec, scope, where, budget) if part.format_spec is not None else ""
        if any(int(n) > MAX_TEXT for n in re.findall(r"\d+", spec)):  # f"{1:>1000000000}" would take a gigabyte
            raise UserError(f"{where}: f-string format {shown(spec)} makes text longer than {MAX_TEXT} characters")
        if part.conversion == ord("r"):
            value = repr(value)
        try:
            parts.append(format(value, spec))
        except (ValueError, TypeError) as exc:
            raise UserError(f"{where}: f-string format {shown(spec)} does not apply to {shown(value)} "
                            f"({clip(str(exc), 80)})") from None
    text = "".join(parts)
    if len(text) > MAX_TEXT:
        raise UserError(f"{where}: text longer than {MAX_TEXT} characters")
    return text


# ---------------------------------------------------------------- nanoGPT keys -> tuigpt keys


def translate(values: dict[str, Any], where: str, known: list[str], *,
              saved: bool = False) -> tuple[dict[str, Any], list[str]]:
    """nanoGPT keys and values as tuigpt keys: (values, notices). ``known`` are tuigpt's keys (also accepted
    as they are); an unknown key is a UserError with the closest name. ``saved``: the config stored in a nanoGPT
    checkpoint, where unknown keys (a fork's) are skipped and named in a notice, and the machine it ran on
    (device, dtype, compile, backend) and wandb settings are left out: this machine's are chosen here."""
    out: dict[str, Any] = {}
    notices: list[str] = []
    if not saved:
        out, notices = wandb_keys(values, where)
    skipped = []
    for key, value in values.items():
        if key in WANDB_KEYS or (saved and key in SYSTEM_KEYS):
            continue
        if key == "log_to" and "log_to" in out and isinstance(value, (list, str)):  # and wandb_log = True
            given = [s.strip() for s in value.split(",")] if isinstance(value, str) else value
            out["log_to"] = [*given, *(s for s in out["log_to"] if s not in given)]
            continue
        if key == "out_dir":
            out.update(run_folder(value, where))
        elif key == "dataset":
            out.update(dataset_keys(value, values.get("data_path"), where))
        elif key == "data_path" and "dataset" in values:
            continue  # set together with dataset above
        elif key in RENAMED:
            out[RENAMED[key]] = value
        elif key in known:
            out[key] = value
        elif not saved:
            raise unknown_key(key, where, known)
        else:
            skipped.append(key)
    if skipped:
        notices.append(f"{where}: nanoGPT keys tuigpt has no use for were left out: {', '.join(skipped)}")
    out.setdefault("arch", NANOGPT_ARCH)
    return out, notices


def wandb_keys(values: dict[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """nanoGPT's wandb_log, wandb_project and wandb_run_name as tuigpt's log_to, log_project and log_run_name:
    (keys, notices). With wandb_log off the names are kept for a ``--log_to`` given on the command line."""
    log = values.get("wandb_log", False)
    if isinstance(log, _Unusable):
        raise UserError(log.why)
    if not isinstance(log, bool):
        raise UserError(f"wandb_log={shown(log)} in {clip(where, 200)} must be True or False")
    out: dict[str, Any] = {"log_to": ["wandb"]} if log else {}
    notices: list[str] = []
    for key in ("wandb_project", "wandb_run_name"):
        value = values.get(key)
        if isinstance(value, str) and value.strip():
            out[WANDB_KEYS[key]] = value.strip()
        elif key not in values or not log:
            continue
        elif key == "wandb_project":
            raise UserError(value.why if isinstance(value, _Unusable) else
                            f"wandb_project={shown(value)} in {clip(where, 200)} must name a W&B project")
        else:
            why = f"line {value.line} is not a plain value" if isinstance(value, _Unusable) else f"it is {shown(value)}"
            notices.append(f"wandb_run_name could not be used ({why}): the W&B run is named after the run's folder")
    if log:
        notices.append(f"wandb_log = True: the run also goes to Weights & Biases, project "
                       f"{out.get('log_project', 'tuigpt')} (offline unless you are logged in; see the README's "
                       f"Dashboards)")
    return out, notices


def translate_override(key: str, known: list[str]) -> str:
    """The tuigpt key a ``--key=value`` on a nanoGPT-style config's command line sets."""
    if key in RENAMED:
        return RENAMED[key]
    if key in known or key in WANDB_KEYS or key in ("out_dir", "dataset"):
        return key
    raise unknown_key(key, "the command line", known)


def literal_value(text: str) -> Any:
    """A wandb key's ``--key=value`` as nanoGPT's configurator reads it: a python literal, else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def unknown_key(key: str, where: str, known: list[str]) -> UserError:
    close = difflib.get_close_matches(key, sorted(set(known) | set(NANOGPT_KEYS)), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "see the README's key table and 'Coming from nanoGPT'"
    return UserError(f"unknown config key {shown(key, 60)} in {clip(where, 200)}: {hint}")


def run_folder(out_dir: Any, where: str) -> dict[str, str]:
    """nanoGPT's out_dir is the run's own folder: tuigpt's out_dir (its parent) and run_name (its name)."""
    if not isinstance(out_dir, str) or not out_dir.strip():
        raise UserError(f"out_dir={shown(out_dir)} in {clip(where, 200)} must name a folder, like 'out-shakespeare-char'")
    path = Path(out_dir.strip()).expanduser()
    if path.name in ("", ".", ".."):
        raise UserError(f"out_dir={shown(out_dir)} in {clip(where, 200)} must name the run's own folder, like "
                        f"'out-shakespeare-char' (nanoGPT writes ckpt.pt into it)")
    return {"out_dir": str(path.parent), "run_name": path.name}


def dataset_keys(dataset: Any, data_path: Any, where: str) -> dict[str, Any]:
    """A nanoGPT dataset name as tuigpt's dataset (and data_path, for a prepared data/<name>/ folder)."""
    if not isinstance(dataset, str) or not dataset.strip():
        raise UserError(f"dataset={shown(dataset)} in {clip(where, 200)} must be a dataset name like 'shakespeare_char'")
    if dataset in OWN_DATASETS:
        return {"dataset": dataset, **({"data_path": data_path} if data_path is not None else {})}
    if any(c in dataset for c in "/\\") or dataset.startswith("."):
        raise UserError(f"dataset={shown(dataset)} in {clip(where, 200)} must be a folder name under data/ (nanoGPT reads "
                        f"data/<dataset>/train.bin); for another folder set data_path")
    return {"dataset": "nanogpt", "data_path": data_path if data_path is not None else
            str(Path(NANOGPT_DATA_ROOT) / dataset)}
