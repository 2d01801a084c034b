"""What a 10-minute budget buys: the shipped default config (`--time 10m`) against nanoGPT's "I only have a
macbook" recipe given the same 10 minutes, and against tuigpt's own cosine run whose max_iters a user guessed from
its first minute.

Each arm is one process on this machine, started by this script: one run a call (`--arm`, wrapped in
`flock -x /tmp/tuigpt-cpu.lock` on a machine others share, so their work interleaves between the long runs), or two
side by side (`--pair SPEC SPEC --threads 1`: both start together, one thread each, so a machine others load
slows both alike; the figures then say so). A SPEC is ARM[@SEED][:LABEL][+key=value...]:

    default   tuigpt configs/train_cpu_optimized.yaml --headless --time 10m --seed S
    nanogpt   nanoGPT's own train.py (a snapshot of github:karpathy/nanoGPT, run from a scratch folder, never
              committed): the README's macbook command with max_iters = lr_decay_iters set so that the run ends
              at 10 minutes on this box (`--arm nanogpt-calibrate` measures its speed first; the iterations are
              then rounded down to its eval_interval, 250, so that its last eval is its last iteration). Its seed
              is fixed in train.py (1337); the second seed shifts torch.manual_seed through a config file
              (configurator.py executes config files in train.py's globals)
    cosine    the default config's model and learning rate with schedule cosine and no time: the user runs it for
              a minute, reads the iterations done (`--arm cosine-calibrate`), multiplies by ten for max_iters =
              lr_decay_iters, and stops it at 10 minutes if it is still going (its last eval counts)

Every run's final model is then evaluated the same way here: its loss on the whole validation split (the last 10%
of tiny Shakespeare, as both tools split it), in non-overlapping windows of the model's own context, so no arm's
figure rests on its own 20-batch estimate. Results go to --out (one JSON file a run); `--report` prints the table
with each arm's mean and spread over seeds, and the differences the issue asks for (default at least 0.10 below
nanoGPT, 0.05 below the guessed cosine run).

    flock -x /tmp/tuigpt-cpu.lock python benchmarks/deadline_quality.py --arm nanogpt-calibrate --nanogpt DIR
    flock -x /tmp/tuigpt-cpu.lock python benchmarks/deadline_quality.py --arm default@1337
    python benchmarks/deadline_quality.py --pair default@1338 nanogpt@1338 --threads 1 --nanogpt DIR
    python benchmarks/deadline_quality.py --report

Three machines a user may have: a steady one (the above); one that slows to half speed halfway (`--slow-at 300`:
a cgroup CPU quota from the 300th second of each run, as a laptop that throttles); one busy with something else
while the user times the first minute (`--slow-until 90`: the quota from each run's start to its 90th second,
calibration included, whose set-up and minute of training end by then, so the guess is too small). Each
scenario's runs go to their own --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from deadline_timing import Quota  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
CONFIG = "configs/train_cpu_optimized.yaml"
MACBOOK = ["--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1", "--block_size=64",
           "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--dropout=0.0"]
NANO_EVAL_INTERVAL = 250  # config/train_shakespeare_char.py


SLOW_AT: float | None = None  # --slow-at: seconds into each run when a CPU quota halves it (a laptop throttling)
SLOW_UNTIL: float | None = None  # --slow-until: a CPU quota halves each run from its start to then (a busy start)


def run(command: list[str], cwd: Path, limit: float | None = None, env: dict | None = None,
        stop_when: Any = None) -> tuple[list[tuple[float, str]], float, int]:
    """Run a command; (its lines with the seconds since start each arrived, total seconds, exit code). With
    ``limit``, SIGINT at that many seconds (a user stopping a run at the deadline), SIGKILL 60 s later; with
    ``stop_when(lines)``, SIGINT once it says so. With --slow-at, a cgroup CPU quota holds the process to half the
    CPUs its threads use from then on; with --slow-until, from its start until then."""
    t0 = time.time()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env=dict(env or os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.time() - t0, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stopped = False
    quota: Quota | None = None
    cpus = (THREADS or os.cpu_count() or 1) / 2
    if SLOW_UNTIL is not None:
        quota = Quota(proc.pid, cpus)
        lines.append((time.time() - t0, f"[benchmark] a CPU quota halves the run until {SLOW_UNTIL:g} s"))
    try:
        while proc.poll() is None:
            if SLOW_UNTIL is not None and quota is not None and time.time() - t0 >= SLOW_UNTIL:
                quota.close()
                quota = None
                lines.append((time.time() - t0, f"[benchmark] the quota ends at {SLOW_UNTIL:g} s"))
            if SLOW_AT is not None and quota is None and time.time() - t0 >= SLOW_AT:
                quota = Quota(proc.pid, cpus)
                lines.append((time.time() - t0, f"[benchmark] a CPU quota halves the run from {SLOW_AT:g} s on"))
            if stop_when is not None and not stopped and stop_when(list(lines)):
                os.killpg(proc.pid, signal.SIGINT)
                stopped, limit = True, time.time() - t0
            if limit is not None and not stopped and time.time() - t0 >= limit:
                os.killpg(proc.pid, signal.SIGINT)
                stopped = True
            if stopped and time.time() - t0 >= limit + 60:  # type: ignore[operator]
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.05)
    finally:
        if quota is not None:
            quota.close()
    reader.join(30)
    return lines, time.time() - t0, proc.returncode


# ---------------------------------------------------------------- the common evaluator


def full_val_loss(checkpoint: Path) -> tuple[float, int, int]:
    """(mean loss over the whole val split, the model's context, its parameters) of a tuigpt or nanoGPT checkpoint."""
    import numpy as np
    import torch

    from tuigpt.engine.data import load_dataset
    from tuigpt.engine.model import GPT
    from tuigpt.engine.sources import load_source, open_source, source_args
    from tuigpt.run.config import TrainConfig

    source = open_source(str(checkpoint))
    # at the model's own context (a TrainConfig's default block_size, 64, cut the 128 of the default config's model
    # to 64 until the eighth session: both arms alike, each loss above what its model reaches at full context)
    args = source_args(source, TrainConfig(init_from=str(checkpoint), block_size=source.args.block_size))
    model = GPT(args)
    load_source(model, source)
    model.eval()
    data = load_dataset("shakespeare_char", str(DATA), "auto")
    val = np.asarray(data.val, dtype=np.int64)
    t = args.block_size
    n = (len(val) - 1) // t
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, n, 64):
            idx = [torch.from_numpy(val[i * t:(i + 1) * t + 1]) for i in range(start, min(n, start + 64))]
            batch = torch.stack(idx)
            _, loss = model(batch[:, :-1].contiguous(), batch[:, 1:].contiguous())
            total += float(loss) * len(idx)
            count += len(idx)
    return total / count, t, model.num_params(non_embedding=False)


# ---------------------------------------------------------------- the arms


def tuigpt_default(seed: int, budget: float, tmp: Path, extra: list[str], config: str = CONFIG) -> dict:
    command = [sys.executable, "-m", "tuigpt", config, "--headless", "--time", f"{budget:g}s", f"--seed={seed}",
               f"--data_path={DATA}", f"--out_dir={tmp}", "--run_name=default", *extra]
    lines, total, code = run(command, REPO)
    run_dir = tmp / "default"
    return _tuigpt_result(lines, total, code, run_dir, budget, " ".join(command[2:]))


def cosine_calibrate(budget: float, tmp: Path, extra: list[str]) -> dict:
    """The user's first minute: the default config as a cosine run with max_iters far away, watched for a minute
    of training (from its first iteration line; its set-up and first eval can take a minute of their own on a
    loaded machine), and the iterations of that minute times the budget's minutes taken as max_iters, as a user
    reading the log would."""
    command = [sys.executable, "-m", "tuigpt", CONFIG, "--headless", "--time_budget=", "--max_iters=1000000",
               "--schedule=cosine", "--log_interval=1", f"--data_path={DATA}", f"--out_dir={tmp}", "--run_name=minute",
               *extra]
    lines, _, _ = run(command, REPO, limit=None, stop_when=lambda ls: _minute_of_training(ls) is not None)
    first, t0, done = _minute_of_training(lines) or (0, 0.0, 0)
    return {"arm": "cosine-calibrate", "first_iter_at": t0, "iters_in_first_minute": done,
            "guess": int(done * budget / 60.0), "command": " ".join(command[2:])}


def _minute_of_training(lines: list[tuple[float, str]]) -> tuple[int, float, int] | None:
    """(first iteration, when it was printed, iterations in the minute after it) once that minute is over."""
    iters = [(t, int(m.group(1))) for t, line in lines if (m := re.match(r"iter (\d+)/", line))]
    if not iters or iters[-1][0] - iters[0][0] < 60.0:
        return None
    t0, first = iters[0]
    last = max(i for t, i in iters if t - t0 <= 60.0)
    return first, t0, last - first


def tuigpt_cosine(seed: int, budget: float, tmp: Path, guess: int, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "tuigpt", CONFIG, "--headless", "--time_budget=", f"--max_iters={guess}",
               f"--lr_decay_iters={guess}", "--schedule=cosine", f"--seed={seed}", f"--data_path={DATA}",
               f"--out_dir={tmp}", "--run_name=cosine", *extra]
    lines, total, code = run(command, REPO, limit=budget)  # still going at the deadline: stopped (ctrl+c)
    return _tuigpt_result(lines, total, code, tmp / "cosine", budget, " ".join(command[2:]), guess=guess)


def _tuigpt_result(lines: list[tuple[float, str]], total: float, code: int, run_dir: Path, budget: float,
                   command: str, **more: object) -> dict:
    evals = [(float(m.group(2)), int(m.group(1)), t) for t, line in lines
             if (m := re.match(r"eval iter (\d+) \| train loss [\d.]+(?: · [\d.]+ bpb)? \| val loss ([\d.]+)", line))]
    finished = [(t, line) for t, line in lines if re.match(r"(done|stopped) at iter", line)]
    return {"command": command, "exit": code, "seconds": total, "finished_line_at": finished[-1][0] if finished else None,
            "budget": budget, "iters": evals[-1][1] if evals else None, "own_val": evals[-1][0] if evals else None,
            "checkpoint": str(run_dir / "last.pt"), "tail": [line for _, line in lines[-3:]],
            "first_line": next((line for _, line in lines if line.startswith("tuigpt ")), ""), **more}


THREADS = 0  # --threads: torch threads of every arm (0: each one's default, the physical cores)


def nanogpt_configs(work: Path) -> list[str]:
    """nanoGPT's config files: its shakespeare one, and with --threads one that sets torch's threads (configurator.py
    executes config files in train.py's globals; train.py sets no thread count of its own)."""
    configs = ["config/train_shakespeare_char.py"]
    if THREADS:
        (work / "threads.py").write_text(f"import torch as _torch\n_torch.set_num_threads({THREADS})\n")
        configs.append("threads.py")
    return configs


def nanogpt_folder(snapshot: Path, tmp: Path) -> Path:
    """nanoGPT's files in a scratch folder, its shakespeare_char data prepared from the local copy."""
    work = tmp / f"nanoGPT-{time.monotonic_ns()}"
    for name in ("train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py",
                 "data/shakespeare_char/prepare.py"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(snapshot / name, work / name)
    shutil.copy(DATA, work / "data" / "shakespeare_char" / "input.txt")
    subprocess.run([sys.executable, "prepare.py"], cwd=work / "data" / "shakespeare_char", check=True,
                   stdout=subprocess.DEVNULL)
    return work


def nanogpt_calibrate(snapshot: Path, budget: float, tmp: Path) -> dict:
    """nanoGPT's speed here: 500 iterations (two evals on the way), its start-up, step and eval times."""
    work = nanogpt_folder(snapshot, tmp)
    lines, total, _ = run([sys.executable, "train.py", *nanogpt_configs(work), *MACBOOK,
                           "--max_iters=500", "--lr_decay_iters=500", "--out_dir=calib"], work)
    steps = [float(m.group(1)) for _, line in lines if (m := re.match(r"iter \d+: loss [\d.]+, time ([\d.]+)ms", line))]
    first = next(t for t, line in lines if line.startswith("iter 0:"))
    evals = [t for t, line in lines if line.startswith("step ")]
    ms = statistics.median(steps[5:])
    # the wall time of 500 iterations beyond the first, evals included, gives the per-iteration cost
    per_iter = (total - first) / 500
    eval_s = max(0.0, per_iter * 500 - ms / 1000 * 500) / max(1, len(evals) - 1)
    fit = int((budget - first) / per_iter)
    iters = fit // NANO_EVAL_INTERVAL * NANO_EVAL_INTERVAL
    return {"arm": "nanogpt-calibrate", "startup_s": first, "median_step_ms": ms, "wall_per_iter_ms": per_iter * 1000,
            "eval_s": eval_s, "fits": fit, "max_iters": iters, "total_s": total}


def nanogpt(snapshot: Path, seed_shift: int, budget: float, tmp: Path, iters: int) -> dict:
    work = nanogpt_folder(snapshot, tmp)
    configs = nanogpt_configs(work)
    if seed_shift:
        (work / "seed_shift.py").write_text(
            "# a second seed for train.py's fixed torch.manual_seed(1337 + seed_offset)\n"
            f"import torch as _torch\n_seed = _torch.manual_seed\n_torch.manual_seed = lambda s: _seed(s + {seed_shift})\n")
        configs.append("seed_shift.py")
    command = [sys.executable, "train.py", *configs, *MACBOOK, f"--max_iters={iters}", f"--lr_decay_iters={iters}",
               "--out_dir=out"]
    lines, total, code = run(command, work)
    evals = [(int(m.group(1)), float(m.group(2))) for _, line in lines
             if (m := re.match(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)", line))]
    return {"command": " ".join(command[1:]), "exit": code, "seconds": total, "budget": budget, "iters": iters,
            "own_val": evals[-1][1] if evals else None, "checkpoint": str(work / "out" / "ckpt.pt"),
            "tail": [line for _, line in lines[-3:]]}


# ---------------------------------------------------------------- report


def report(out: Path) -> None:
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    arms: dict[str, list[dict]] = {}
    for r in results:
        arms.setdefault(r["arm"], []).append(r)
    for name in ("nanogpt-calibrate", "cosine-calibrate"):
        for r in arms.pop(name, []):
            print(f"{name}: {json.dumps({k: v for k, v in r.items() if k not in ('arm', 'when', 'machine')})}")
    means = {}
    print(f"\n{'arm':<10} {'seed':>5} {'iters':>7} {'params':>7} {'ctx':>4} {'seconds':>8} {'own val':>8} {'full val':>9}")
    for arm, rows in arms.items():
        for r in [r for r in rows if "full_val" not in r]:
            print(f"{arm:<10} {r['seed']:>5} no result: {r.get('error') or r.get('tail')}")
        rows = arms[arm] = [r for r in rows if "full_val" in r]
        if not rows:
            continue
        for r in rows:
            print(f"{arm:<10} {r['seed']:>5} {r['iters'] or 0:>7,} {r['params'] / 1e6:>6.2f}M {r['context']:>4} "
                  f"{r['seconds']:>8.1f} {r['own_val'] or float('nan'):>8.4f} {r['full_val']:>9.4f}")
        vals = [r["full_val"] for r in rows]
        means[arm] = statistics.fmean(vals)
        spread = f"{min(vals):.4f}-{max(vals):.4f}" if len(vals) > 1 else "one seed"
        print(f"{arm:<10} mean full val {means[arm]:.4f} (seeds {spread})")
    if "default" in means:
        for other, bar in (("nanogpt", 0.10), ("cosine", 0.05)):
            if other in means:
                gap = means[other] - means["default"]
                worst = min(r["full_val"] for r in arms[other]) - max(r["full_val"] for r in arms["default"])
                print(f"default is {gap:.3f} below {other} (worst pair of seeds {worst:.3f}; the bar is {bar:.2f})")


def parse_spec(text: str) -> tuple[str, int, str, list[str]]:
    """``ARM[@SEED][:LABEL][+key=value...]`` (e.g. ``default@1338:s2x192+n_layer=2+n_embd=192``)."""
    head, *overrides = text.split("+")
    head, _, label = head.partition(":")
    arm, _, seed = head.partition("@")
    return arm, int(seed or 1337), label or arm, [f"--{o}" for o in overrides]


def one(spec: str, args: argparse.Namespace, tmp: Path, extra: list[str]) -> tuple[str, dict]:
    """One arm's run (not yet evaluated): its result file's name and its result."""
    arm, seed, label, overrides = parse_spec(spec)
    extra = [*extra, *overrides, *([f"--num_threads={THREADS}"] if THREADS else [])]
    load = os.getloadavg()[0]
    if arm == "default":
        result = tuigpt_default(seed, args.budget, tmp, extra, args.config)
    elif arm == "cosine-calibrate":
        result = cosine_calibrate(args.budget, tmp, extra)
    elif arm == "cosine":
        guess = json.loads((args.out / "cosine-calibrate.json").read_text())["guess"]
        result = tuigpt_cosine(seed, args.budget, tmp, guess, extra)
    elif arm == "nanogpt-calibrate":
        result = nanogpt_calibrate(args.nanogpt, args.budget, tmp)
    elif arm == "nanogpt":
        iters = json.loads((args.out / "nanogpt-calibrate.json").read_text())["max_iters"]
        result = nanogpt(args.nanogpt, seed - 1337, args.budget, tmp, iters)
    else:
        raise SystemExit(f"unknown arm {arm!r}")
    result.update(arm=label, seed=seed, when=time.strftime("%Y-%m-%d %H:%M"), load_before=load,
                  load_after=os.getloadavg()[0], threads=THREADS or "default")
    return (arm if arm.endswith("calibrate") else f"{label}-{seed}"), result


def main() -> None:
    global THREADS, SLOW_AT, SLOW_UNTIL
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", default=None, help="one run: ARM[@SEED][:LABEL][+key=value...], ARM one of "
                                                    "default, nanogpt, cosine, nanogpt-calibrate, cosine-calibrate")
    parser.add_argument("--pair", nargs=2, default=None, metavar="SPEC",
                        help="two runs at once, side by side (each sees the same machine), e.g. --pair default@1337 "
                             "nanogpt@1337 --threads 1")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--budget", type=float, default=600.0)
    parser.add_argument("--nanogpt", type=Path, default=None, help="a folder with nanoGPT's train.py, model.py, "
                                                                    "configurator.py, config/ and data/ prepare.py")
    parser.add_argument("--out", type=Path, default=REPO.parent / "deadline-quality")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--config", default=CONFIG, help="the default arm's config")
    parser.add_argument("--slow-at", type=float, default=None, help="seconds into each run when a cgroup CPU quota "
                                                                    "halves it (a machine that throttles)")
    parser.add_argument("--slow-until", type=float, default=None,
                        help="seconds from each run's start during which a cgroup CPU quota halves it (the machine "
                             "busy with something else while the user times the first minute), full speed after")
    args, extra = parser.parse_known_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report:
        report(args.out)
        return
    THREADS = args.threads
    SLOW_AT = args.slow_at
    SLOW_UNTIL = args.slow_until
    if SLOW_AT is not None and SLOW_UNTIL is not None:
        raise SystemExit("--slow-at and --slow-until are two scenarios: give one")
    import torch

    machine = f"{platform.processor() or platform.machine()} · {os.cpu_count()} CPUs · torch {torch.__version__}"
    specs = args.pair or [args.arm]
    with tempfile.TemporaryDirectory(prefix="dq-") as tmp_name:
        tmp = Path(tmp_name)
        done: list[tuple[str, dict]] = []
        workers = [threading.Thread(target=lambda s=spec, k=k: done.append(one(s, args, tmp / str(k), extra)))
                   for k, spec in enumerate(specs)]
        for k, w in enumerate(workers):
            (tmp / str(k)).mkdir()
            w.start()
        for w in workers:
            w.join()
        for name, result in done:  # evaluated once every run is over: nothing else runs meanwhile
            if "checkpoint" in result:
                try:
                    result["full_val"], result["context"], result["params"] = full_val_loss(Path(result["checkpoint"]))
                except Exception as exc:  # noqa: BLE001 - a run that wrote no checkpoint: say so, keep the rest
                    result["error"] = f"{type(exc).__name__}: {exc}"
            result.update(machine=machine, side_by_side=[s for s in specs] if args.pair else None,
                          slowed_at=SLOW_AT, slowed_until=SLOW_UNTIL)
            (args.out / f"{name}.json").write_text(json.dumps(result, indent=1))
            print(json.dumps({k: v for k, v in result.items() if k != "tail"}, indent=1))

if __name__ == "__main__":
    main()
