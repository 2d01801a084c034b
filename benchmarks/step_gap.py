"""tuigpt's CPU step against nanoGPT's own train.py, on the shipped CPU configs (issue 22: "the 20% step gap").

nanoGPT: its real train.py, model.py and configurator.py from a checkout you give (--nanogpt DIR; nothing is
downloaded and none of its code is kept here), copied into a scratch folder with tiny Shakespeare prepared as its
data/shakespeare_char/prepare.py would (train.bin, val.bin, meta.pkl), run as its README's CPU recipe runs it
(--device=cpu --compile=False) with the config's shape, batch and optimizer keys; its per-iteration "time"
lines are the wall time between consecutive iterations. tuigpt: the config as a user runs it (dtype and compile
auto, resolved and cached here) through its Trainer with everything a headless run attaches (the log printer,
metrics.jsonl, telemetry at 1 s); the wall time between consecutive iteration events. Both skip evaluation
inside the timed window; tuigpt trains nanoGPT's recipe (GPT-2's block, AdamW) on every config, so both do the same
arithmetic and the gap is the loop's. Rounds alternate the two so machine noise hits both alike; each round's figure is the
median iteration after the first fifth (warm-up), and the ratio is nanoGPT's ms / tuigpt's ms (above 1: tuigpt
steps faster). Target: >= 0.97 on every shipped CPU config, median of the rounds.

--headless runs tuigpt as a user does, ``python -m tuigpt CONFIG --headless --log_interval=1`` in its own process
(training on the trainer thread beside the host's threads), and takes the ms/it its lines print (the step's
own wall time, as nanoGPT's lines do).

--cpu-time runs both on one thread (torch's and OpenMP's) and times each iteration by the CPU time of the thread
that trains (nanoGPT's ``time.time`` is read as ``time.thread_time`` for the run): what the step costs a quiet
core, which stays meaningful on a machine busy with other work, where wall times are not.

    python benchmarks/step_gap.py --nanogpt ../nanoGPT [--models default,tiny] [--rounds 4] [--iters 200]
        [--headless | --cpu-time] [--data ../shared/data/tinyshakespeare.txt] [--key=value ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from engine_overhead import iteration_gaps  # noqa: E402

from tuigpt.cli.args import split_overrides  # noqa: E402
from tuigpt.engine.data.nanogpt import write_meta  # noqa: E402
from tuigpt.engine.data.tokenizer import CharTokenizer  # noqa: E402
from tuigpt.engine.trainer import Trainer  # noqa: E402
from tuigpt.run.configfile import load_config  # noqa: E402
from tuigpt.telemetry.cpuinfo import read_cpu_info  # noqa: E402

CONFIGS = REPO / "configs"
MODELS = {  # the shipped configs a CPU trains (the baby GPT and GPT-2 are for GPUs)
    "default": CONFIGS / "train_cpu_optimized.yaml",
    "tiny": CONFIGS / "train_shakespeare_char_tiny.yaml",
    "baby": CONFIGS / "train_shakespeare_char.yaml",
}
NANOGPT_FILES = ("train.py", "model.py", "configurator.py")
# the config keys nanoGPT's train.py takes as --key=value, besides the ones set below
# tuigpt trains nanoGPT's recipe here, whatever the config's (the tiny config ships nanochat's block and Muon): the
# gap measured is what tuigpt's loop adds to the same computation; the recipe's own step cost is muon_step.py's
SAME_COMPUTATION = {"arch": "gpt2", "optimizer": "adamw", "schedule": "cosine"}
SHARED_KEYS = ("batch_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "learning_rate",
               "weight_decay", "beta1", "beta2", "grad_clip", "gradient_accumulation_steps")


def prepare(nanogpt: Path, text: Path, scratch: Path) -> None:
    """nanoGPT's files and its shakespeare_char data in ``scratch`` (train.py reads both relative to its cwd)."""
    for name in NANOGPT_FILES:
        shutil.copy(nanogpt / name, scratch / name)
    data = text.read_text(encoding="utf-8")
    tokenizer = CharTokenizer("".join(sorted(set(data))))
    folder = scratch / "data" / "shakespeare_char"
    folder.mkdir(parents=True)
    n = len(data)
    for split, part in (("train", data[: int(n * 0.9)]), ("val", data[int(n * 0.9):])):
        np.array(tokenizer.encode(part), dtype=np.uint16).tofile(folder / f"{split}.bin")
    (folder / "meta.pkl").write_bytes(write_meta(tokenizer))


CLOCK = time.perf_counter  # time.thread_time with --cpu-time
# nanoGPT's train.py run with its clock read as this thread's CPU time (--cpu-time); its code is not changed
CPU_TIME_RUNNER = ("import runpy, sys, time; time.time = time.thread_time; sys.argv = ['train.py', *sys.argv[1:]]; "
                   "runpy.run_path('train.py', run_name='__main__')")


def nanogpt_ms(config, iters: int, scratch: Path) -> list[float]:  # noqa: ANN001
    """nanoGPT's train.py on ``config``'s shape: its logged per-iteration times (ms)."""
    keys = {k: getattr(config, k) for k in SHARED_KEYS}
    keys.update(dataset="shakespeare_char", device="cpu", compile=False, dtype="float32", max_iters=iters,
                lr_decay_iters=iters, warmup_iters=min(config.warmup_iters, iters // 2), min_lr=config.effective_min_lr,
                eval_interval=iters * 10, eval_iters=1, log_interval=1, always_save_checkpoint=False,
                out_dir=str(scratch / "out"), wandb_log=False)
    entry = ["-c", CPU_TIME_RUNNER] if CLOCK is time.thread_time else ["train.py"]
    cmd = [sys.executable, *entry, *[f"--{k}={v}" for k, v in keys.items()]]
    done = subprocess.run(cmd, cwd=scratch, capture_output=True, text=True, env=os.environ)
    if done.returncode:
        raise SystemExit(f"nanoGPT's train.py failed:\n{done.stderr[-2000:]}")
    ms = [float(x) for x in re.findall(r"^iter \d+: loss [\d.]+, time ([\d.]+)ms", done.stdout, re.M)]
    return ms[1:]  # its first line times the iteration after the untrained eval


def tuigpt_ms(config, iters: int) -> tuple[list[float], Trainer]:  # noqa: ANN001
    """tuigpt's Trainer with a headless run's sinks: the time between consecutive iteration events (ms)."""
    gaps, trainer = iteration_gaps(config, iters, lambda: CLOCK())  # CLOCK as --cpu-time sets it
    return [g * 1000 for g in gaps], trainer


def headless_ms(config_path: Path, overrides: dict[str, str], iters: int, out: str) -> list[float]:
    """``tuigpt CONFIG --headless`` in a process of its own: the ms/it of its iteration lines."""
    keys = {**overrides, "max_iters": iters, "log_interval": 1, "eval_interval": iters * 10, "eval_iters": 1,
            "out_dir": out, "telemetry_interval": 1.0}
    cmd = [sys.executable, "-m", "tuigpt", str(config_path), "--headless", *[f"--{k}={v}" for k, v in keys.items()]]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"tuigpt failed:\n{done.stdout[-1000:]}{done.stderr[-1000:]}")
    return [float(x) for x in re.findall(r"^iter \d+/\d+ \|.*\| ([\d.]+) ms/it", done.stdout, re.M)]


def steady(ms: list[float]) -> float:
    return statistics.median(ms[len(ms) // 5:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", required=True, type=Path, help="a nanoGPT checkout (train.py, model.py, ...)")
    parser.add_argument("--models", default="default,tiny", help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--iters", type=int, default=200, help="timed iterations a round, each side")
    parser.add_argument("--cpu-time", action="store_true", help="one thread each, timed by its CPU time")
    parser.add_argument("--headless", action="store_true", help="tuigpt as a headless process, its printed ms/it")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "tinyshakespeare.txt")
    args, rest = parser.parse_known_args()
    overrides = split_overrides(rest)
    if args.cpu_time:
        global CLOCK
        CLOCK = time.thread_time
        os.environ["OMP_NUM_THREADS"] = "1"  # nanoGPT's torch takes its thread count from here
        overrides["num_threads"] = "1"
    info = read_cpu_info()
    import torch

    print(f"{time.strftime('%Y-%m-%d %H:%M')} | {info.model_name} | {info.physical_cores} cores | torch "
          f"{torch.__version__} | Python {platform.python_version()} | {args.iters} iterations a round"
          f"{' | one thread each, timed in its CPU seconds' if args.cpu_time else ''}"
          f"{' | ' + ' '.join(rest) if rest else ''}", flush=True)
    summary = []
    with tempfile.TemporaryDirectory(prefix="step-gap-") as tmp:
        scratch = Path(tmp) / "nanogpt"
        scratch.mkdir()
        prepare(args.nanogpt, args.data, scratch)
        for name in args.models.split(","):
            ours, theirs, ratios, setup = [], [], [], ""
            for r in range(args.rounds):
                for who in ("tuigpt", "nanoGPT") if r % 2 == 0 else ("nanoGPT", "tuigpt"):
                    config = load_config(MODELS[name], {**SAME_COMPUTATION, **overrides, "data_path": str(args.data),
                                                        "out_dir": tmp, "run_name": f"{name}{r}"})
                    if who == "tuigpt" and args.headless:
                        run = {**SAME_COMPUTATION, **overrides, "data_path": str(args.data), "run_name": f"{name}{r}h"}
                        ours.append(steady(headless_ms(MODELS[name], run, args.iters, tmp)))
                        setup = "a headless process"
                    elif who == "tuigpt":
                        ms, trainer = tuigpt_ms(config, args.iters)
                        ours.append(steady(ms))
                        setup = (f"{trainer.precision.name} ({trainer.precision.reason}); compile "
                                 f"{'on' if trainer.compiled else 'off'} ({trainer.compile_reason}); "
                                 f"{trainer.threads} threads")
                    else:
                        theirs.append(steady(nanogpt_ms(config, args.iters, scratch)))
                ratios.append(theirs[-1] / ours[-1])
                print(f"{name} round {r + 1}: tuigpt {ours[-1]:.2f} ms | nanoGPT train.py {theirs[-1]:.2f} ms | "
                      f"{ratios[-1]:.3f}x", flush=True)
            print(f"  tuigpt: {setup}", flush=True)
            summary.append((name, statistics.median(ours), statistics.median(theirs), statistics.median(ratios), ratios))
    print("\n| config | tuigpt ms/iter | nanoGPT train.py ms/iter | nanoGPT ms / tuigpt ms (median) | rounds |")
    print("|---|---|---|---|---|")
    for name, t, o, ratio, rounds in summary:
        print(f"| {name} | {t:.2f} | {o:.2f} | **{ratio:.3f}x** | {', '.join(f'{x:.3f}' for x in rounds)} |")


if __name__ == "__main__":
    main()
