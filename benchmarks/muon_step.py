"""Muon's training step against AdamW's, on tuigpt's own stepper, variants alternating in one process.

Each variant is a real tuigpt step (forward, backward, clipping, health norms, the optimizer) of a config's model
on its data, built as a run builds it; the variants share the config and differ only in the optimizer (and how
Muon orthogonalises). Every round times ``--steps`` steps of each variant in turn (the order reversed every other
round, after one untimed warm-up step each), so a busy spell hits all alike; printed: each variant's median ms a
step and the per-round ratio to the first variant (median and range).

    python benchmarks/muon_step.py --config configs/train_cpu_optimized.yaml [--rounds 5] [--steps 20]
        [--variants adamw,muon,muon:newton-schulz,muon:gram,muon:compiled] [--key=value ...  (config overrides)]

A variant is ``adamw``, ``muon`` (the stacks and orthogonalisation a run picks here), ``muon:newton-schulz`` or
``muon:gram`` (the form forced on the picked stacks), ``muon:by-shape`` or ``muon:padded`` (the stacking forced,
Newton–Schulz), ``muon:compiled`` (the picked plan under torch.compile), ``muon:float32`` (Newton–Schulz in
float32 where bf16 would be picked). ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tuigpt.engine.build import assemble  # noqa: E402
from tuigpt.engine.step import Stepper  # noqa: E402
from tuigpt.run.configfile import load_config  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


def _stepper(config, variant: str) -> Stepper:
    kind, _, how = variant.partition(":")
    built = assemble(dataclasses.replace(config, optimizer=kind))
    optimizer = built.optimizer
    if how in ("newton-schulz", "gram"):
        optimizer.use_plan([(ks, how) for ks, _ in optimizer.plan])
    elif how in ("by-shape", "padded"):
        from tuigpt.engine.orthogonalize import layouts

        stacks = layouts([tuple(p.shape) for p in optimizer.matrices]).get(how.replace("-", " "))
        optimizer.use_plan([(ks, "newton-schulz") for ks in stacks])
    elif how == "compiled":
        from tuigpt.engine.orthogonalize import compute

        optimizer._orthogonalize = torch.compile(compute, dynamic=False)
    elif how == "float32":
        optimizer.dtype = torch.float32
    model = torch.compile(built.model) if built.setup.compiled else built.model
    return Stepper(model, built.model, optimizer, built.scaler, built.sampler, built.setup.precision,
                   built.setup.device, built.split.micro_steps, config.grad_clip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/train_cpu_optimized.yaml")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--variants", default="adamw,muon")
    parser.add_argument("--json", default=None)
    args, rest = parser.parse_known_args()
    overrides = dict(a.removeprefix("--").split("=", 1) for a in rest)
    if "data_path" not in overrides and "dataset" not in overrides and DATA.exists():
        overrides.update(data_path=str(DATA))  # offline: the text the shipped datasets download
    config = load_config(args.config, overrides)
    variants = args.variants.split(",")
    steppers = {v: _stepper(config, v) for v in variants}
    device = next(iter(steppers.values())).device
    from tuigpt.engine.auto import device_label

    print(f"{time.strftime('%Y-%m-%d %H:%M')} | {device_label(device)} | torch {torch.__version__} | Python "
          f"{platform.python_version()} | threads {torch.get_num_threads()} | load average {os.getloadavg()[0]:.1f}")
    print(f"{args.config} {' '.join(rest)}: {config.n_layer}x{config.n_embd}, batch {config.batch_size} x "
          f"{config.block_size}, dtype {next(iter(steppers.values())).precision.name}")
    for v, s in steppers.items():
        opt = s.optimizer
        how = (f" stacks {[(len(ks), m) for ks, m in opt.plan]}, NS dtype {opt.dtype}" if hasattr(opt, "plan")
               else "")
        print(f"  {v}:{how}")
    ms: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            stepper = steppers[v]
            stepper.step(1e-4)  # warm: the other variant's caches and clocks are not this one's
            stepper.sync()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                result = stepper.step(1e-4)
            stepper.sync()
            ms[v].append((time.perf_counter() - t0) * 1000.0 / args.steps)
            assert result.applied
        print(f"round {r + 1}: " + " · ".join(f"{v} {ms[v][-1]:.2f} ms" for v in variants), flush=True)
    base = variants[0]
    out = {"config": args.config, "overrides": rest, "device": device_label(device), "rounds": args.rounds,
           "steps": args.steps, "ms": ms, "median_ms": {v: statistics.median(ms[v]) for v in variants}, "ratios": {}}
    print(f"\nms a step, median of {args.rounds} rounds of {args.steps} steps; ratio to {base} per round")
    for v in variants:
        ratios = [a / b for a, b in zip(ms[v], ms[base])]
        out["ratios"][v] = ratios
        print(f"  {v:22s} {statistics.median(ms[v]):8.2f} ms   x{statistics.median(ratios):.3f} "
              f"(rounds {min(ratios):.3f}-{max(ratios):.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
