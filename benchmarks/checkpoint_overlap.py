"""What writing an eval's checkpoint while training goes on saves: whole training loops with the write in the
foreground and in the background (engine/checkpoint_writer.py), alternating, the same config and seed.

Each round builds a Trainer from the config (with ``--key=value`` overrides; every eval writes last.pt) and times
its run() from the first eval to the end: steps, evals and checkpoints. Printed per variant: the median of the
rounds' wall times, the seconds the loop waited for checkpoints, the median step, and the background's wall time
as a ratio of the foreground's, each round's ratio beside it.

    python benchmarks/checkpoint_overlap.py --config configs/train_shakespeare_char.yaml --data DATA \
        [--rounds 3] [--key=value ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuigpt.engine.trainer import Trainer  # noqa: E402
from tuigpt.run.configfile import load_config  # noqa: E402
from tuigpt.run.events import IterationStats  # noqa: E402


def one_run(config: str, overrides: dict[str, str], background: bool, name: str) -> dict[str, float]:
    trainer = Trainer(load_config(config, {**overrides, "out_dir": tempfile.mkdtemp(), "run_name": name}))
    trainer.checkpoint_writer.background = background
    steps: list[float] = []
    trainer.bus.subscribe(lambda e: steps.append(e.ms_per_iter) if isinstance(e, IterationStats) else None)
    t0 = time.perf_counter()
    outcome = trainer.run()
    wall = time.perf_counter() - t0
    assert outcome.reason == "done", outcome
    return {"wall": wall, "checkpoints": trainer.checkpoint_seconds, "step_ms": statistics.median(steps),
            "device": str(trainer.device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/train_shakespeare_char.yaml")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare.txt"))
    parser.add_argument("--rounds", type=int, default=3)
    args, rest = parser.parse_known_args()
    overrides = dict(compile="false", data_path=args.data, max_iters="250", lr_decay_iters="250",
                     eval_interval="25", eval_iters="4", always_save_checkpoint="true", telemetry_interval="0")
    overrides.update(a.removeprefix("--").split("=", 1) for a in rest)
    print(f"{args.config} {' '.join(f'--{k}={v}' for k, v in overrides.items())}", flush=True)
    one_run(args.config, {**overrides, "max_iters": overrides["eval_interval"]}, False, "warm-up")
    got: dict[str, list[dict[str, float]]] = {"foreground": [], "background": []}
    names = list(got)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            got[name].append(one_run(args.config, overrides, name == "background", f"{name}-{r}"))
            row = got[name][-1]
            print(f"round {r + 1} {name}: {row['wall']:.2f} s, checkpoints waited {row['checkpoints']:.2f} s, "
                  f"step {row['step_ms']:.2f} ms ({row['device']})", flush=True)
    fore = statistics.median(r["wall"] for r in got["foreground"])
    for name in names:
        rows = got[name]
        print(f"{name}: {statistics.median(r['wall'] for r in rows):.2f} s a run, checkpoints waited "
              f"{statistics.median(r['checkpoints'] for r in rows):.2f} s, step "
              f"{statistics.median(r['step_ms'] for r in rows):.2f} ms")
    ratios = [b["wall"] / f["wall"] for f, b in zip(got["foreground"], got["background"])]
    print(f"background / foreground, whole loop: {statistics.median(r['wall'] for r in got['background']) / fore:.3f}x"
          f" (rounds {', '.join(f'{x:.3f}' for x in ratios)})")


if __name__ == "__main__":
    main()
