"""`tuigpt plan CONFIG --time 1h`: which model size to train in a time on this machine.

Times training steps of a few model sizes around the config's (layers x width, at its batch and context, in the
dtype and compile setting the config resolves to here), and for each plans a run to the end as a run plans itself
(run/plan.py: its steps, an eval and its checkpoints every eval_interval, stable.pt, the final eval, the set-up):
the iterations and tokens it would train, tokens per parameter, when its cooldown would begin and when it ends.
Then the size a compute-optimal rule picks: the one whose tokens per parameter come nearest the rule's.
"""

from __future__ import annotations

import datetime as _dt
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from tuigpt.cli.args import Parser, split_overrides
from tuigpt.cli.train import END_FLAGS
from tuigpt.run import fmt
from tuigpt.run import plan as pl
from tuigpt.run.errors import UserError

# The compute-optimal rule: train D ≈ K·N tokens for N parameters. Chinchilla's K ≈ 20 (Hoffmann et al. 2022,
# "Training Compute-Optimal Large Language Models", arXiv:2203.15556: the compute-optimal frontier of their
# approaches 1-3 gives ~20 tokens per parameter; nanochat's base_train sets target_param_data_ratio = 20 from
# it). It was fitted on web text seen once; tiny Shakespeare is 1 M characters seen many times over, where no K
# has been measured yet (--rule K takes one), and the table says so.
CHINCHILLA_TOKENS_PER_PARAM = 20.0
STEPS, WARMUP = 8, 3

PLAN_HELP = """\
usage: tuigpt plan CONFIG.yaml (--time 1h | --until 07:00) [--sizes LxW,...] [--steps N] [--warmup W]
                   [--rule K] [--write FILE] [--apply] [--key=value ...]

Which model size to train in a time on this machine. Times a few training steps of
model sizes around CONFIG's (layers x width, at its batch and context) and prints, for
each, the iterations and tokens a run of that size would train before the end (its
evals, checkpoints and set-up counted, as the run itself plans them), tokens per
parameter, when its cooldown would begin and when it would end; then the size the
compute-optimal rule picks (tokens ~ K x parameters, the K it uses and where it comes
from are printed) and the command that trains it.

  --time D       a time budget: 8h, 90m, 45s (as for training)
  --until T      a deadline: 07:00 (the next one) or 2026-11-24T07:00
  --sizes LxW,…  the sizes to time, e.g. 1x256,2x256,4x384 (default: layers x{0.5,1,2}
                 and width x{0.7,1,1.4} around CONFIG's, rounded to whole heads)
  --steps N      timed steps a size (default 8), after W untimed ones (--warmup, default 3)
  --rule K       tokens per parameter of the compute-optimal rule (default: measured on
                 tiny Shakespeare for character data, Chinchilla's 20 otherwise)
  --write FILE   write CONFIG with the picked size and the end to FILE (comments kept): a
                 new file, or CONFIG itself to update it in place; another existing file is
                 refused before anything is timed
  --apply        train the picked size right after (as `tuigpt CONFIG --time ... --n_layer ...`)
  --key=value    override any config key first, as for training
  -h, --help     this help
"""


@dataclass
class Candidate:
    n_layer: int
    n_embd: int
    result: Any = None  # BenchResult
    plan: pl.Plan | None = None
    failed: str | None = None

    @property
    def label(self) -> str:
        return f"{self.n_layer} x {self.n_embd}"

    def tokens(self) -> int:
        return self.plan.total_iters * self.result.tokens_per_iter if self.plan and self.result else 0

    def tokens_per_param(self) -> float:
        return self.tokens() / self.result.n_params if self.result and self.result.n_params else 0.0


def around(n_layer: int, n_embd: int, n_head: int) -> list[tuple[int, int]]:
    """Sizes around (n_layer, n_embd): half, the same and twice the layers, 0.7x, 1x and 1.4x the width (about
    half and twice the parameters a step), widths rounded to whole heads of the config's head size."""
    head = max(1, n_embd // n_head)
    depths = sorted({max(1, n_layer // 2), n_layer, n_layer * 2})
    widths = sorted({max(head, round(n_embd * f / head) * head) for f in (1 / math.sqrt(2), 1.0, math.sqrt(2))})
    return [(d, w) for d in depths for w in widths]


def parse_sizes(text: str, n_head: int, n_embd: int) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        layers, x, width = part.strip().lower().partition("x")
        if not (x and layers.strip().isdigit() and width.strip().isdigit()) or int(layers) < 1 or int(width) < 1:
            raise UserError(f"--sizes {fmt.shown(part)} must look like LAYERSxWIDTH, e.g. --sizes 2x256,4x384")
        head = max(1, n_embd // n_head)
        if int(width) % head:
            raise UserError(f"--sizes {part.strip()}: width {width} is not a whole number of heads of {head} "
                            f"(n_embd {n_embd} / n_head {n_head}); use a multiple of {head}")
        sizes.append((int(layers), int(width)))
    return list(dict.fromkeys(sizes))


def main(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(PLAN_HELP, end="")
        return 0
    parser = Parser(prog="tuigpt plan", add_help=False, allow_abbrev=False)
    parser.add_argument("config")
    parser.add_argument("--time", default=None)
    parser.add_argument("--until", default=None)
    parser.add_argument("--sizes", default=None)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--rule", type=float, default=None)
    parser.add_argument("--write", default=None)
    parser.add_argument("--apply", action="store_true")
    ns, rest = parser.parse_known_args(args)
    if ns.config.startswith("--"):
        raise UserError(f"the first argument must be a config file, not {fmt.shown(ns.config)} "
                        f"(e.g. tuigpt plan configs/train_cpu_optimized.yaml --time 1h)")
    if ns.steps < 1 or ns.warmup < 0:
        raise UserError("--steps must be a positive integer and --warmup 0 or more")
    if ns.rule is not None and not (math.isfinite(ns.rule) and 0 < ns.rule <= 1e6):
        raise UserError(f"--rule {ns.rule:g} must be a positive number of tokens per parameter, e.g. --rule 20")
    if ns.write:
        from tuigpt.cli.tune import check_write_target

        check_write_target(ns.config, ns.write)  # before minutes of timing, not after

    from tuigpt.run.configfile import load_config
    from tuigpt.run.deadline import parse_duration, run_end

    overrides = split_overrides(rest)
    if ns.time is not None and ns.until is not None:
        raise UserError("--time and --until both given: keep one")
    if ns.time is not None:
        parse_duration(ns.time, "--time")
        overrides.update(time_budget=ns.time, deadline="")
    elif ns.until is not None:
        overrides.update(deadline=ns.until, time_budget="")
    config = load_config(ns.config, overrides)
    if not config.planned:
        raise UserError(f"tuigpt plan needs a time: add --time 1h or --until 07:00 (or set time_budget in "
                        f"{ns.config})")
    startup = _startup_seconds()
    started = time.time()
    end = run_end(config.time_budget, config.deadline, started, started)
    assert end is not None
    sizes = (parse_sizes(ns.sizes, config.n_head, config.n_embd) if ns.sizes
             else around(config.n_layer, config.n_embd, config.n_head))
    candidates = [Candidate(d, w) for d, w in sizes]
    choice = _time_all(ns.config, overrides, config, candidates, ns.steps, ns.warmup)
    setup = _setup_seconds(startup, candidates)
    for c in candidates:
        if c.result is not None:
            c.plan = _plan(c.result, config, end.end_wall(0.0) - started - setup)
    rule, why = _rule(ns.rule, config)
    fits = [c for c in candidates if c.plan is not None and c.plan.total_iters > 0]
    picked = min(fits, key=lambda c: abs(math.log(max(c.tokens_per_param(), 1e-9) / rule))) if fits else None
    shown = [*rest, *(["--time", ns.time] if ns.time else ["--until", ns.until] if ns.until else [])]
    _report(ns.config, shown, config, candidates, picked, end, started, setup, choice, rule, why, sys.stdout)
    if picked is None:
        print("nothing to pick: no size trains a single iteration in this time here")
        return 1
    flag, value = ("--time", config.time_budget) if config.time_budget is not None else ("--until", config.deadline)
    keys = {"n_layer": str(picked.n_layer), "n_embd": str(picked.n_embd)}
    line = [f"{flag} {value}", *(f"--{k}={v}" for k, v in keys.items()
                                if str(getattr(config, k)) != v)]
    print(f"train it: tuigpt {ns.config} {' '.join([*rest, *line])}")
    if ns.write:
        from tuigpt.cli.tune import write_config

        end_key = END_FLAGS[flag][0]
        write_config(ns.config, ns.write, {**keys, end_key: f"{value}"})
        print(f"wrote {ns.write}: {ns.config} with {picked.label} and {end_key}: {value}")
    if ns.apply:
        from tuigpt.cli.train import main as train_main

        sys.stdout.flush()
        return train_main([ns.config, *rest, flag, str(value), *(f"--{k}={v}" for k, v in keys.items())])
    return 0


def _time_all(path: str, overrides: dict[str, str], config: Any, candidates: list[Candidate], steps: int,
              warmup: int) -> Any:
    """Every size timed in the dtype and compile the config resolves to (measured once, on its own size)."""
    from tuigpt.cli.timing import Progress, bench_config
    from tuigpt.engine.build import resolved_choices
    from tuigpt.engine.device import forget_compiled
    from tuigpt.engine.trial import failure_text
    from tuigpt.run.configfile import load_config

    choice = resolved_choices(config)
    progress = Progress("plan", len(candidates), sys.stderr)
    with tempfile.TemporaryDirectory(prefix="tuigpt-plan-") as tmp:
        for k, c in enumerate(candidates):
            values = dict(overrides, n_layer=str(c.n_layer), n_embd=str(c.n_embd), out_dir=tmp, run_name=f"plan{k}",
                          telemetry_interval="0", dtype=choice.dtype, compile="true" if choice.compiled else "false",
                          time_budget="", deadline="", max_iters="1000", init_from="scratch")
            try:
                c.result = bench_config(load_config(path, values), steps=steps, warmup=warmup, quiet=True)
            except UserError as exc:
                c.failed = "does not fit" if "needs at least" in str(exc) else str(exc)
            except Exception as exc:  # noqa: BLE001 - out of memory marks the size, not the plan
                c.failed = failure_text(exc)
            finally:
                if choice.compiled:  # each size compiles afresh: the ninth hit torch's recompile limit (8), ran
                    forget_compiled()  # eager and printed dynamo's warnings over the table
            progress.update(k + 1, c.label)
    progress.close("done")
    return choice


def _setup_seconds(started: float, candidates: list[Candidate]) -> float:
    """A run's set-up here, as this process measured its own: starting Python and importing torch (``started``:
    seconds), then building a trainer (data, model, optimizer: the timed sizes' median)."""
    built = sorted(c.result.setup_seconds for c in candidates if c.result is not None)
    return started + (built[len(built) // 2] if built else 0.0)


def _startup_seconds() -> float:
    """What a fresh `tuigpt` run spends before its set-up: starting Python and importing torch, timed as a process of
    its own (this process's age would count whatever ran in it before, a test session's minutes)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, timeout=600)
    if done.returncode:
        raise UserError(f"cannot time a fresh start here: {sys.executable} -c 'import torch' failed "
                        f"({done.stderr.decode(errors='replace').strip().splitlines()[-1:]})")
    return time.perf_counter() - started


def _plan(result: Any, config: Any, seconds: float) -> pl.Plan:
    """The run a size would train in ``seconds`` after its set-up, planned as the run plans itself."""
    from tuigpt.engine.planner import CHECKPOINT_BYTES_PER_S, EXIT_SECONDS

    checkpoint = 0.02 + 12 * result.n_params / CHECKPOINT_BYTES_PER_S
    costs = pl.Costs(result.mean_ms / 1000.0, result.eval_seconds + 2 * checkpoint, checkpoint)
    return pl.fit(0, seconds - result.eval_seconds - EXIT_SECONDS, costs, eval_interval=config.eval_interval,
                  cooldown_frac=config.cooldown_frac if config.decay_lr else None,
                  cap=config.max_iters)


def _rule(given: float | None, config: Any) -> tuple[float, str]:
    if given is not None:
        return given, f"K = {given:g} (--rule)"
    return CHINCHILLA_TOKENS_PER_PARAM, ("K = 20, Chinchilla's (Hoffmann et al. 2022, arXiv:2203.15556), fitted on "
                                         "web text seen once; --rule K for another")


def _report(path: str, rest: list[str], config: Any, candidates: list[Candidate], picked: Candidate | None,
            end: Any, started: float, setup: float, choice: Any, rule: float, why: str, out: Any) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    first = next((c.result for c in candidates if c.result is not None), None)
    length = end.end_wall(0.0) - started
    at = lambda t: pl.clock(t, started, length)  # noqa: E731
    p(f"tuigpt plan {path}" + (f" {' '.join(rest)}" if rest else "") + f" · {_dt.datetime.now():%Y-%m-%d %H:%M}")
    p(f"{end.describe()}: ends by {at(end.end_wall(0.0))} if started now")
    if first is not None:
        p(f"{first.device} · {first.threads} thread{'s' if first.threads != 1 else ''} · {choice.dtype} · compile "
          f"{'on' if choice.compiled else 'off'} · batch {config.batch_size} x {config.gradient_accumulation_steps} "
          f"x context {config.block_size} = {first.tokens_per_iter:,} tokens/iter · set-up ~{fmt.duration(setup)} · "
          f"an eval every {config.eval_interval:,} iterations")
    cols = ["size", "params", "ms/iter", "iterations", "tokens", "tokens/param", "cooldown from", "ends"]
    rows = []
    for c in candidates:
        r, plan = c.result, c.plan
        if r is None or plan is None:
            rows.append(([c.label, c.failed or "n/a", "", "", "", "", "", ""], ""))
            continue
        cooldown = (f"~{at(started + setup + r.eval_seconds + plan.seconds_to_cooldown)}"
                    if plan.seconds_to_cooldown is not None else "-")
        ends = at(started + setup + r.eval_seconds + plan.seconds_to_end)
        mark = "  <- rule" if c is picked else ""
        mark += " (config)" if (c.n_layer, c.n_embd) == (config.n_layer, config.n_embd) else ""
        rows.append(([c.label, fmt.count(r.n_params), f"{r.mean_ms:.1f}", f"{plan.total_iters:,}",
                      fmt.count(c.tokens()), f"{c.tokens_per_param():.1f}", cooldown,
                      ends + (" (max_iters)" if plan.capped else "")], mark))
    widths = [max(len(col), *(len(cells[i]) for cells, _ in rows)) for i, col in enumerate(cols)]
    p("  ".join(col.rjust(w) for col, w in zip(cols, widths)))
    for cells, mark in rows:
        p("  ".join(cell.rjust(w) for cell, w in zip(cells, widths)) + mark)
    p(f"compute-optimal rule: tokens ~ K x parameters, {why}")
    if picked is not None:
        p(f"picks {picked.label}: {fmt.count(picked.result.n_params)} params, {fmt.count(picked.tokens())} tokens, "
          f"{picked.tokens_per_param():.1f} tokens/param")
        ratios = [c.tokens_per_param() for c in candidates if c.plan is not None and c.plan.total_iters > 0]
        if rule > 1.5 * max(ratios) or rule < min(ratios) / 1.5:  # every size timed is too big, or too small
            smaller = rule > max(ratios)
            p(f"the rule's size is {'smaller' if smaller else 'larger'} than every size timed: time "
              f"{'smaller' if smaller else 'larger'} ones with --sizes")
