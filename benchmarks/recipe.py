"""The recipe ablation of issue 22: today's recipe (AdamW, nanoGPT's GPT-2 block, cosine), each block switch on
its own, Muon, WSD, and all of them together, on one model shape, the same data and token budget, several seeds.

Every run is a whole `tuigpt CONFIG --headless` process, as a user starts it, with the recipe's keys as overrides
and the shape's keys (eval cadence) for all alike. The clock is this script's, from starting the process to each
eval line; a run goes to its end (best val needs the whole run). Per run: steps to the target val (the first eval
at or under it), wall time to it (the whole process: start-up, evals and checkpoints included), best val, and the
median ms a step of its iteration lines. Recipes alternate within each seed, their order reversed from one seed
to the next, so a busy spell hits all alike.

    python benchmarks/recipe.py --shape cpu-default [--recipes today,muon,wsd,all] [--seeds 1337,1338]
        [--target 1.886] [--jsonl results.jsonl] [--key=value ...  (overrides for every run)]
    python benchmarks/recipe.py --table results.jsonl [--baseline today]    # the table of what was run

Runs append one JSON line each to --jsonl, so a long ablation can run in chunks of a few minutes (on a shared
CPU: one chunk a `flock -x`) and be tabled at the end. Before a recipe's first run its dtype/compile trials run
once with --calibrate (`tuigpt calibrate`, not counted), as after a user's first run; the figures in
docs/PERFORMANCE.md pass dtype and compile instead (what `auto` picks on that machine), so no run times a trial.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from time_to_loss import TUI_EVAL, race  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
ITER_MS = re.compile(r"^iter (\d+)/\d+ \|.* \| ([\d.]+) ms/it \|")

# model shapes: config, overrides every recipe shares, the default target val
SHAPES: dict[str, tuple[str, dict[str, str], float]] = {
    # the shipped default (1 x 256, ctx 64, batch 12, 1,000 iterations); evals every 100 for a finer clock
    "cpu-default": ("configs/train_cpu_optimized.yaml", {"eval_interval": "100"}, 1.886),
    # nanoGPT's macbook shape and schedule (4 x 128, 2,000 iterations): its final val is 1.886
    "tiny": ("configs/train_shakespeare_char_tiny.yaml", {"eval_interval": "100"}, 1.886),
    # nanoGPT's baby GPT (6 x 384, ctx 256, batch 64, dropout 0.2), 2,500 of its 5,000 iterations (it over-fits
    # after ~2,000), evals as nanoGPT's (every 250, 200 batches); the decay and the cooldown as they were when the
    # ablation was measured (the shipped config's since the eighth session differ)
    "baby": ("configs/train_shakespeare_char.yaml", {"max_iters": "2500", "lr_decay_iters": "2500",
                                                     "muon_weight_decay": "0", "cooldown_frac": "0.2",
                                                     "min_lr": "1e-4"}, 1.47),
    # the baby GPT's config as shipped: nothing overridden (the race against nanoGPT's train.py)
    "baby-shipped": ("configs/train_shakespeare_char.yaml", {}, 1.47),
    # GPT-2 124M on BPE Shakespeare (32 k tokens a step); 300 iterations: 10 M tokens, 30 passes over its 300 k
    # training tokens, long past its best val (the table's --target-from picks the target from today's best)
    "gpt2": ("configs/train_gpt2_shakespeare.yaml", {"max_iters": "300", "lr_decay_iters": "300",
                                                     "eval_interval": "25", "warmup_iters": "30"}, 0.0),
}

# AdamW, nanoGPT's block, cosine: what every config trained before issue 22 (said explicitly, so a shipped config
# that moved on still gets today's recipe here)
TODAY = {"optimizer": "adamw", "arch": "gpt2", "schedule": "cosine"}
SWITCHES = ("rope", "qk_norm", "relu2", "rmsnorm", "untied_head", "zero_init", "logit_softcap")
RECIPES: dict[str, dict[str, str]] = {
    "today": TODAY,
    "rope": {**TODAY, "rope": "true"},
    "qk_norm": {**TODAY, "qk_norm": "true"},
    "relu2": {**TODAY, "relu2": "true"},
    "rmsnorm": {**TODAY, "rmsnorm": "true"},
    "untied_head": {**TODAY, "untied_head": "true"},
    "zero_init": {**TODAY, "zero_init": "true"},
    "softcap": {**TODAY, "logit_softcap": "15"},
    "modern": {**TODAY, "arch": "modern"},  # every block switch together
    "muon": {**TODAY, "optimizer": "muon"},
    "wsd": {**TODAY, "schedule": "wsd"},
    "all": {"arch": "modern", "optimizer": "muon", "schedule": "wsd"},
    "shipped": {},  # the config as it is
    # the baby GPT's candidates for its shipped recipe: "all" learns fastest and over-fits after ~1,250 of 2,500
    # iterations (H100, seed 1337), so its schedule ends there, the cooldown before the over-fitting
    "all-1250": {"arch": "modern", "optimizer": "muon", "schedule": "wsd", "max_iters": "1250",
                 "lr_decay_iters": "1250", "cooldown_frac": "0.4", "min_lr": "1e-5"},
    "all-1000": {"arch": "modern", "optimizer": "muon", "schedule": "wsd", "max_iters": "1000",
                 "lr_decay_iters": "1000", "cooldown_frac": "0.5", "min_lr": "1e-5"},
    # a lower floor than the shipped schedule's (issue 22 asks for <= 1.43): a longer cooldown, more dropout
    # against the over-fitting, a higher Muon rate
    "all-1500": {"arch": "modern", "optimizer": "muon", "schedule": "wsd", "max_iters": "1500",
                 "lr_decay_iters": "1500", "cooldown_frac": "0.4", "min_lr": "1e-5"},
    "all-2000-d3": {"arch": "modern", "optimizer": "muon", "schedule": "wsd", "max_iters": "2000",
                    "lr_decay_iters": "2000", "cooldown_frac": "0.5", "min_lr": "1e-5", "dropout": "0.3"},
    "all-2500-d3": {"arch": "modern", "optimizer": "muon", "schedule": "wsd", "max_iters": "2500",
                    "lr_decay_iters": "2500", "cooldown_frac": "0.5", "min_lr": "1e-5", "dropout": "0.3"},
    "all-1500-m3": {"arch": "modern", "optimizer": "muon", "schedule": "wsd", "max_iters": "1500",
                    "lr_decay_iters": "1500", "cooldown_frac": "0.4", "min_lr": "1e-5", "muon_lr": "0.03"},
    # the baby GPT's floor at the shipped length (the eighth session): each names all three keys, so it means the
    # same whatever the shipped config says. `shipped-7` is the recipe shipped until then (no decay, the cooldown
    # from 1,000 to 1e-4); cd4: the cooldown from 750, cd5: from 625, min0: down to zero; mwdN: Muon's decoupled
    # weight decay 0.N (times its lr); d25: dropout 0.25. The config ships mwd25-cd4-min0.
    "shipped-7": {"muon_weight_decay": "0", "cooldown_frac": "0.2", "min_lr": "1e-4"},
    "shipped-cd4-min0": {"muon_weight_decay": "0", "cooldown_frac": "0.4", "min_lr": "0"},
    "shipped-mwd1": {"muon_weight_decay": "0.1", "cooldown_frac": "0.2", "min_lr": "1e-4"},
    "shipped-mwd25": {"muon_weight_decay": "0.25", "cooldown_frac": "0.2", "min_lr": "1e-4"},
    "shipped-d25": {"muon_weight_decay": "0", "cooldown_frac": "0.2", "min_lr": "1e-4", "dropout": "0.25"},
    "shipped-mwd1-cd4-min0": {"muon_weight_decay": "0.1", "cooldown_frac": "0.4", "min_lr": "0"},
    "shipped-mwd25-cd4-min0": {"muon_weight_decay": "0.25", "cooldown_frac": "0.4", "min_lr": "0"},
    "shipped-mwd1-cd5-min0": {"muon_weight_decay": "0.1", "cooldown_frac": "0.5", "min_lr": "0"},
    "shipped-mwd25-cd5-min0": {"muon_weight_decay": "0.25", "cooldown_frac": "0.5", "min_lr": "0"},
    "shipped-mwd4-cd5-min0": {"muon_weight_decay": "0.4", "cooldown_frac": "0.5", "min_lr": "0"},
    # the ninth session: what an eval costs on the way to the target. eN: the train split sampled with N batches
    # (its 3,921 windows read whole are 62 batches of 64, nine tenths of an eval); the val split stays whole
    "shipped-mwd25-cd4-min0-e20": {"muon_weight_decay": "0.25", "cooldown_frac": "0.4", "min_lr": "0",
                                   "eval_iters": "20"},
}


def run_one(config: str, overrides: dict[str, str], target: float, timeout: float, env: dict[str, str],
            out_dir: str, name: str) -> dict:
    """One whole run; its evals (iteration, val, seconds from the start) and step times."""
    command = [sys.executable, "-m", "tuigpt", config, "--headless", f"--out_dir={out_dir}", f"--run_name={name}",
               *(f"--{k}={v}" for k, v in overrides.items())]
    ms: list[float] = []
    got = race(command, TUI_EVAL, None, timeout, env, on_line=lambda line: _iter_ms(line, ms))
    evals = [(i, v, s) for i, v, s, _ in got["evals"]]
    reached = next(((i, s) for i, v, s in evals if v <= target), None)
    timed = ms[5:] if len(ms) > 10 else ms  # the first logged steps include warm-up
    return {"evals": evals, "steps_to_target": reached[0] if reached else None,
            "seconds_to_target": reached[1] if reached else None,
            "best_val": min((v for _, v, _ in evals), default=None),
            "ms_per_step": statistics.median(timed) if timed else None, "total_seconds": got["total"],
            "first_line": got["first"], "tail": got["tail"]}


NANO_EVAL = re.compile(r"^step (\d+): train loss [\d.]+, val loss ([\d.]+)")
NANO_ITER = re.compile(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms")


def run_nanogpt(folder: str, args: list[str], target: float, timeout: float, env: dict[str, str]) -> dict:
    """nanoGPT's own train.py in ``folder`` (its config and data prepared there), timed as :func:`run_one`."""
    import time_to_loss

    ms: list[float] = []

    def on_line(line: str) -> None:
        m = NANO_ITER.match(line)
        if m:
            ms.append(float(m.group(2)))

    cwd = time_to_loss.REPO
    time_to_loss.REPO = Path(folder)  # race() runs its command in REPO
    try:
        # stopped at the target: its best val is not what this run is for (the issue measured 1.467)
        got = race([sys.executable, "train.py", *args], NANO_EVAL, target, timeout, env, on_line=on_line)
    finally:
        time_to_loss.REPO = cwd
    evals = [(i, v, s) for i, v, s, _ in got["evals"]]
    reached = next(((i, s) for i, v, s in evals if v <= target), None)
    timed = ms[5:] if len(ms) > 10 else ms
    return {"evals": evals, "steps_to_target": reached[0] if reached else None,
            "seconds_to_target": reached[1] if reached else None,
            "best_val": min((v for _, v, _ in evals), default=None),
            "ms_per_step": statistics.median(timed) if timed else None, "total_seconds": got["total"],
            "first_line": got["first"], "tail": got["tail"]}


def _iter_ms(line: str, ms: list[float]) -> None:
    m = ITER_MS.match(line)
    if m:
        ms.append(float(m.group(2)))


def machine() -> str:
    import torch

    from tuigpt.telemetry.cpuinfo import read_cpu_info

    gpu = f" | {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    info = read_cpu_info()
    return (f"{info.model_name} ({info.physical_cores} cores){gpu} | torch {torch.__version__} | Python "
            f"{platform.python_version()}")


def ablate(args: argparse.Namespace, rest: list[str]) -> None:
    config, shared, default_target = SHAPES[args.shape]
    target = args.target if args.target is not None else default_target
    common = dict(shared)
    common.update(a.removeprefix("--").split("=", 1) for a in rest)
    if "data_path" not in common and "dataset" not in common and DATA.exists():
        common.update(data_path=str(DATA))  # offline: the text the shipped datasets download
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    recipes = args.recipes.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{time.strftime('%Y-%m-%d %H:%M')} | {machine()} | load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"shape {args.shape}: {config} {' '.join(f'--{k}={v}' for k, v in common.items())} | target val "
          f"{target}", flush=True)
    with tempfile.TemporaryDirectory(prefix="recipe-") as tmp:
        for recipe in recipes if args.calibrate else []:
            keys = {**common, **RECIPES[recipe]}
            subprocess.run([sys.executable, "-m", "tuigpt", "calibrate", config,
                            *(f"--{k}={v}" for k, v in keys.items())],
                           env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        def record(recipe: str, seed: int, keys: dict[str, str], got: dict) -> None:
            row = {"shape": args.shape, "recipe": recipe, "seed": seed, "target": target, "config": config,
                   "overrides": keys, "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M"),
                   "concurrent": args.concurrent > 1, **got}
            print(f"{recipe} seed {seed}: {_describe(row)}", flush=True)
            if args.jsonl:
                with open(args.jsonl, "a") as f:
                    f.write(json.dumps(row) + "\n")

        if args.nanogpt:  # nanoGPT's train.py first, alone, as the clock every recipe is compared with
            extra = [a for a in args.nanogpt_args.split() if a]
            record("nanogpt", 0, {"train.py": " ".join(extra)}, run_nanogpt(args.nanogpt, extra, target,
                                                                           args.timeout, env))
        jobs = [(recipe, seed) for k, seed in enumerate(seeds)
                for recipe in (recipes if k % 2 == 0 else recipes[::-1])]
        if args.concurrent:  # N at a time: their losses count, their clocks do not (they share the device)
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(len(jobs), args.concurrent)) as pool:
                futures = [(recipe, seed, keys, pool.submit(run_one, config, keys, target, args.timeout, env, tmp,
                                                            f"{recipe}-{seed}"))
                           for recipe, seed in jobs
                           for keys in [{**common, **RECIPES[recipe], "seed": str(seed)}]]
                for recipe, seed, keys, future in futures:
                    record(recipe, seed, keys, future.result())
            return
        for recipe, seed in jobs:
            keys = {**common, **RECIPES[recipe], "seed": str(seed)}
            record(recipe, seed, keys, run_one(config, keys, target, args.timeout, env, tmp, f"{recipe}-{seed}"))


def _describe(row: dict) -> str:
    steps, secs = row["steps_to_target"], row["seconds_to_target"]
    to = f"val {row['target']} at iter {steps:,} after {secs:.1f} s" if steps is not None else \
        f"never reached {row['target']}"
    best = f"{row['best_val']:.4f}" if row["best_val"] is not None else "n/a"
    ms = f"{row['ms_per_step']:.2f}" if row["ms_per_step"] is not None else "n/a"
    return f"{to}; best val {best}; {ms} ms/step; whole run {row['total_seconds']:.0f} s"


def reached(row: dict, target: float) -> tuple[int | None, float | None]:
    """(iteration, seconds) of a run's first eval at or under ``target``."""
    return next(((i, t) for i, v, t in row["evals"] if v <= target), (None, None))


def table(paths: list[str], baseline: str, target: float | None = None, target_from: str | None = None) -> None:
    """The ablation's table per shape. The target is the runs' own unless ``target`` gives one or ``target_from``
    names a recipe whose median best val becomes the target."""
    rows = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]
    for shape in dict.fromkeys(r["shape"] for r in rows):
        mine = [r for r in rows if r["shape"] == shape]
        goal = target if target is not None else mine[0]["target"]
        if target_from is not None:
            goal = statistics.median(r["best_val"] for r in mine if r["recipe"] == target_from)
        base = [reached(r, goal)[1] for r in mine if r["recipe"] == baseline and not r.get("concurrent")]
        base_s = statistics.median([b for b in base if b] or [0]) or None
        print(f"\n{shape} ({mine[0]['config']}), target val {goal:.4f}; {mine[0]['machine']}")
        print(f"| recipe | seeds | steps to {goal:.3f} | time to {goal:.3f} (s) | vs {baseline} | best val | ms/step |")
        print("|---|---|---|---|---|---|---|")
        for recipe in dict.fromkeys(r["recipe"] for r in mine):
            runs = sorted((r for r in mine if r["recipe"] == recipe), key=lambda r: r["seed"])
            alone = [r for r in runs if not r.get("concurrent")]
            steps = [reached(r, goal)[0] for r in runs]
            secs = [reached(r, goal)[1] for r in alone]
            vs = [t / base_s for t in secs if t and base_s]
            print(f"| {recipe} | {len(runs)} | {_spread(steps, 0)} | {_spread(secs, 1)} | "
                  f"{_spread(vs, 2) if vs else 'n/a'} | {_spread([r['best_val'] for r in runs], 4)} | "
                  f"{_spread([r['ms_per_step'] for r in alone], 2)} |")
        if any(r.get("concurrent") for r in mine):
            print("(seeds run concurrently on one device count in steps and best val only: their clocks are left "
                  "out)")


def _spread(values: list, digits: int) -> str:
    """Median (every seed's value): 'never' for a seed that did not reach the target, '—' for nothing timed."""
    if not values:
        return "—"
    known = [v for v in values if v is not None]
    each = " / ".join("never" if v is None else f"{v:,.{digits}f}" for v in values)
    if not known:
        return "never"
    return f"{statistics.median(known):,.{digits}f} ({each})" if len(values) > 1 else each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=list(SHAPES))
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--seeds", default="1337,1338")
    parser.add_argument("--target", type=float, default=None)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--jsonl", default=None)
    parser.add_argument("--table", nargs="*", default=None, help="print the table of these JSONL files")
    parser.add_argument("--baseline", default="today")
    parser.add_argument("--target-from", default=None, help="--table: the target is this recipe's median best val")
    parser.add_argument("--concurrent", type=int, default=0, metavar="N",
                        help="run N at a time (a GPU's extra seeds, a shared CPU's loss-only runs): their losses count, "
                             "their clocks do not")
    parser.add_argument("--nanogpt", default=None, help="nanoGPT's folder: time its train.py first")
    parser.add_argument("--nanogpt-args", default="config/train_shakespeare_char.py",
                        help="train.py's arguments (its config file first)")
    parser.add_argument("--calibrate", action="store_true",
                        help="run each recipe's dtype/compile trials before its first run (not counted)")
    args, rest = parser.parse_known_args()
    if args.table is not None:
        table(args.table, args.baseline, args.target, args.target_from)
    else:
        if args.shape is None:
            parser.error("--shape is needed to run")
        ablate(args, rest)


if __name__ == "__main__":
    main()
