"""Check tuigpt's MFU against an independent figure on real hardware.

Trains CONFIG headless for --iters iterations (no eval inside the window), then computes an
independent MFU: FLOPs of one optimizer step counted by torch.utils.flop_counter.FlopCounterMode
on the same model shape (attention through the math backend so the counter sees its matmuls),
times the iterations, divided by the wall-clock time between the iteration records in
metrics.jsonl, over the same peak tuigpt used. Prints both, the peak, and the last NVML/CPU
telemetry reading.

    python benchmarks/mfu_check.py CONFIG [--iters N] [--key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def counted_flops_per_iter(config_path: str, overrides: list[str], device: str) -> float:
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from tuigpt.cli.args import split_overrides
    from tuigpt.engine.data import load_dataset
    from tuigpt.engine.model import GPT, ModelArgs
    from tuigpt.run.configfile import load_config

    cfg = load_config(config_path, split_overrides(overrides))
    data = load_dataset(cfg.dataset, cfg.data_path, cfg.tokenizer)
    vocab = data.tokenizer.vocab_size
    vocab = (vocab + 63) // 64 * 64 if vocab > 1024 else vocab
    model = GPT(ModelArgs(vocab, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.dropout, cfg.bias)).to(device)
    x = torch.randint(0, vocab, (cfg.batch_size, cfg.block_size), device=device)
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        _, loss = model(x, x)
        loss.backward()
    return counter.get_total_flops() * cfg.gradient_accumulation_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--iters", type=int, default=200)
    args, overrides = parser.parse_known_args()
    out_dir = os.environ.get("OUT") or tempfile.mkdtemp()
    cmd = [sys.executable, "-m", "tuigpt", args.config, "--headless", f"--max_iters={args.iters}",
           f"--eval_interval={args.iters * 10}", "--log_interval=1", f"--out_dir={out_dir}", "--run_name=mfu_check",
           *overrides]
    print("$", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, cwd=REPO, text=True, capture_output=True)
    print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
    if result.returncode != 0:
        sys.exit(result.returncode)
    records = [json.loads(line) for line in open(Path(out_dir) / "mfu_check" / "metrics.jsonl")]
    start = next(r for r in records if r["type"] == "start")
    iters = [r for r in records if r["type"] == "iter"]
    window = iters[len(iters) // 2:]  # second half: compile and warm-up are over
    seconds = window[-1]["time"] - window[0]["time"]
    n = window[-1]["iter"] - window[0]["iter"]
    tuigpt_mfu = sum(r["mfu"] for r in window[1:]) / (len(window) - 1)
    device = start["device"]
    flops_per_iter = counted_flops_per_iter(args.config, overrides, device)
    peak = start["peak_flops"]
    independent = flops_per_iter * n / seconds / peak
    formula = start["flops_per_token"] * start["tokens_per_iter"]
    print(f"device {device} dtype {start['dtype']} | peak used: {start['peak_label']}")
    print(f"FLOPs per iteration: FlopCounterMode {flops_per_iter:.4e} | tuigpt formula {formula:.4e} "
          f"({formula / flops_per_iter:.3f}x)")
    print(f"iterations {window[0]['iter']}..{window[-1]['iter']} in {seconds:.2f} s wall "
          f"({seconds / n * 1000:.1f} ms/iter, {start['tokens_per_iter'] * n / seconds:,.0f} tok/s)")
    print(f"MFU: tuigpt {tuigpt_mfu * 100:.1f}% | independent {independent * 100:.1f}%")
    telemetry = [r for r in records if r["type"] == "telemetry"]
    for kind in ("gpu", "cpu"):
        last = [r for r in telemetry if r["kind"] == kind]
        if last:
            print(f"last {kind} telemetry: {json.dumps(last[-1]['data'])[:1500]}")


if __name__ == "__main__":
    main()
