"""tuigpt against nanoGPT's loop on GPUs, at the same global batch: the GPU figures of docs/PERFORMANCE.md.

One GPU (--gpus 1, about 7 minutes on an H100/H200):
  1. `tuigpt calibrate CONFIG`: the dtype and compile trials a first run makes (cached for what follows);
  2. `tuigpt bench CONFIG`: the config as shipped (untuned);
  3. `tuigpt tune CONFIG --only-splits --batch-sizes ...`: the micro-batch / accumulation splits, same global batch;
  4. `tuigpt bench CONFIG` with the fastest split (tuned);
  5. benchmarks/nanogpt_loop.py (nanoGPT's train.py loop: bf16, torch.compile, fused AdamW, TF32) at the config's
     split and at the tuned split.
Two GPUs (--gpus 2, about 6 minutes): the tuned split on 1 GPU and on 2 (torchrun, NCCL), tuigpt with torch's DDP
bucket size (100 MB on CUDA) and with torch's 25 MB, and nanoGPT's loop on 1 and 2 GPUs.

ms/iter is the median of the timed iterations (warm-up and compile left out); tokens/s = tokens per iteration /
that; MFU = tuigpt's FLOPs per token x tokens/s / GPUs / the GPU's dense bf16 datasheet peak (run/numbers.mfu).

    python benchmarks/gpu_speed.py [--gpus 1|2] [--config configs/train_gpt2_shakespeare.yaml] [--data FILE]
        [--batch-sizes 32,16,8] [--iters 60] [--split BxA]

Environment: TIKTOKEN_CACHE_DIR (the gpt2 BPE files, offline), TUIGPT_CACHE_DIR. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ROWS: list[tuple[str, float | None, int, int]] = []  # (what, ms/iter, tokens/iter, gpus)


def sh(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a step, echo its output, return it ("" with a note on failure or timeout: later steps still run)."""
    print(f"\n$ {' '.join(cmd)}", flush=True)
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env or os.environ.copy(), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        print(out[-3000:] + f"\n[timed out after {timeout:.0f} s]", flush=True)
        return ""
    out = proc.stdout + proc.stderr
    print("\n".join(out.splitlines()[-45:]), flush=True)
    print(f"[{time.time() - t0:.0f} s, exit {proc.returncode}]", flush=True)
    return proc.stdout if proc.returncode == 0 else ""


def bench_ms(out: str) -> float | None:
    m = re.search(r"ms/step\s+mean [\d.]+ · p50 ([\d.]+)", out)
    return float(m.group(1)) if m else None


def nano_ms(out: str) -> float | None:
    m = re.search(r"done: \d+ iterations, ([\d.]+) ms/iter", out)
    return float(m.group(1)) if m else None


def headless_ms(out: str, skip: int) -> float | None:
    """Median ms/it of a headless run's iteration lines after the first ``skip`` iterations."""
    values = [float(m.group(2)) for m in re.finditer(r"^iter (\d+)/\d+ \| .*? \| ([\d.]+) ms/it", out, re.M)
              if int(m.group(1)) > skip]
    return statistics.median(values) if values else None


def nano_cmd(cfg, data: str, batch: int, accum: int, iters: int, gpus: int) -> list[str]:  # noqa: ANN001
    keys = dict(device="cuda", compile="True", dtype="bfloat16", batch_size=batch, gradient_accumulation_steps=accum,
                block_size=cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                dropout=cfg.dropout, bias=cfg.bias, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
                beta1=cfg.beta1, beta2=cfg.beta2, grad_clip=cfg.grad_clip, warmup_iters=10, max_iters=iters,
                lr_decay_iters=iters, min_lr=cfg.learning_rate / 10, eval_interval=10**6, eval_iters=1,
                log_interval=10)
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
              if gpus > 1 else [sys.executable])
    return [*launch, "benchmarks/nanogpt_loop.py", f"--data={data}", "--tokenizer=gpt2",
            *[f"--{k}={v}" for k, v in keys.items()]]


def record(what: str, ms: float | None, tokens: int, gpus: int) -> None:
    ROWS.append((what, ms, tokens, gpus))
    print(f">>> {what}: {f'{ms:.2f} ms/iter' if ms else 'no figure'}", flush=True)


def summary(config) -> None:  # noqa: ANN001
    import torch

    from tuigpt.engine.model import GPT, ModelArgs
    from tuigpt.run.numbers import mfu
    from tuigpt.telemetry.peak import gpu_table_peak

    name = torch.cuda.get_device_name(0)
    peak = gpu_table_peak(name, "bf16")
    with torch.device("meta"):
        model = GPT(ModelArgs(vocab_size=50304, block_size=config.block_size, n_layer=config.n_layer,
                              n_head=config.n_head, n_embd=config.n_embd, bias=config.bias))
    fpt = model.flops_per_token()
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')} · {name} · torch {torch.__version__} · peak {peak or 0:.4g} FLOP/s "
          f"(bf16 dense datasheet) · {fpt / 1e6:.1f} MFLOP/token")
    print("| run | GPUs | ms/iter | tokens/s | MFU per GPU |")
    print("|---|---|---|---|---|")
    for what, ms, tokens, gpus in ROWS:
        if ms is None:
            print(f"| {what} | {gpus} | n/a | n/a | n/a |")
            continue
        tok_s = tokens / (ms / 1000.0)
        value = mfu(fpt, tok_s, peak * gpus if peak else None)
        print(f"| {what} | {gpus} | {ms:.2f} | {tok_s:,.0f} | {f'{value * 100:.1f}%' if value else 'n/a'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, choices=(1, 2), default=1)
    parser.add_argument("--config", default="configs/train_gpt2_shakespeare.yaml")
    parser.add_argument("--data", default=os.environ.get("DATA", ".devdata/tinyshakespeare.txt"))
    parser.add_argument("--batch-sizes", default="32,16,8")
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--split", default=None, help="BxA for --gpus 2 (default: the config's)")
    args = parser.parse_args()
    from tuigpt.run.configfile import load_config

    cfg = load_config(args.config, {"data_path": args.data})
    tokens = cfg.batch_size * cfg.gradient_accumulation_steps * cfg.block_size
    py, d = sys.executable, f"--data_path={args.data}"
    if args.gpus == 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "0")
        sh([py, "-m", "tuigpt", "info", "--no-measure"], 60)
        sh([py, "-m", "tuigpt", "calibrate", args.config, d], 240)
        untuned = sh([py, "-m", "tuigpt", "bench", args.config, d, "--steps", "30", "--warmup", "8"], 240)
        record(f"tuigpt as shipped ({cfg.batch_size} x {cfg.gradient_accumulation_steps})", bench_ms(untuned),
               tokens, 1)
        tuned_out = sh([py, "-m", "tuigpt", "tune", args.config, d, "--only-splits", "--batch-sizes",
                        args.batch_sizes, "--steps", "15", "--warmup", "6"], 420)
        m = re.search(r"^fastest: (.*?)(?: \(|$)", tuned_out, re.M)
        winner = m.group(1).split() if m and m.group(1).startswith("--") else []
        b = int(next((w.split("=")[1] for w in winner if w.startswith("--batch_size=")), cfg.batch_size))
        a = int(next((w.split("=")[1] for w in winner if w.startswith("--gradient_accumulation_steps=")),
                     cfg.gradient_accumulation_steps))
        tuned = sh([py, "-m", "tuigpt", "bench", args.config, d, "--steps", "30", "--warmup", "8", *winner], 240)
        record(f"tuigpt tuned ({b} x {a})", bench_ms(tuned), tokens, 1)
        nano = sh(nano_cmd(cfg, args.data, cfg.batch_size, cfg.gradient_accumulation_steps, args.iters, 1), 300)
        record(f"nanoGPT loop ({cfg.batch_size} x {cfg.gradient_accumulation_steps})", nano_ms(nano), tokens, 1)
        if (b, a) != (cfg.batch_size, cfg.gradient_accumulation_steps):
            record(f"nanoGPT loop ({b} x {a})", nano_ms(sh(nano_cmd(cfg, args.data, b, a, args.iters, 1), 300)),
                   tokens, 1)
    else:
        b, a = (map(int, args.split.split("x")) if args.split
                else (cfg.batch_size, cfg.gradient_accumulation_steps))
        # compile and dtype as a 2,000-iteration run of the config gets them: a 60-iteration run would not compile
        run = [py, "-m", "tuigpt", args.config, "--headless", d, "--compile=true", "--dtype=bfloat16", f"--batch_size={b}",
               f"--gradient_accumulation_steps={a}", f"--max_iters={args.iters}", "--eval_interval=1000000",
               "--eval_iters=1", "--log_interval=10", "--out_dir=/tmp/gpu-speed", "--always_save_checkpoint=false"]  # log_interval as shipped: health detail on logged steps only
        ddp = [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "tuigpt", *run[3:]]
        skip = args.iters // 3
        one = dict(os.environ, CUDA_VISIBLE_DEVICES="0")
        record(f"tuigpt 1 GPU ({b} x {a})", headless_ms(sh([*run, "--run_name=g1"], 300, one), skip), tokens, 1)
        record(f"tuigpt 2 GPUs ({b} x {a // 2} each, 100 MB buckets)", headless_ms(sh([*ddp, "--run_name=g2"], 300),
                                                                              skip), tokens, 2)
        small = dict(os.environ, TUIGPT_DDP_BUCKET_MB="25")
        record("tuigpt 2 GPUs, torch's 25 MB buckets", headless_ms(sh([*ddp, "--run_name=g2b"], 300, small), skip),
               tokens, 2)
        record(f"nanoGPT loop 1 GPU ({b} x {a})", nano_ms(sh(nano_cmd(cfg, args.data, b, a, args.iters, 1), 300,
                                                               one)), tokens, 1)
        record("nanoGPT loop 2 GPUs", nano_ms(sh(nano_cmd(cfg, args.data, b, a, args.iters, 2), 300)), tokens, 2)
    summary(cfg)


if __name__ == "__main__":
    main()
