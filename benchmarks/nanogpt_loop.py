"""nanoGPT's train.py loop, reduced to its essentials: the baseline tuigpt's speed is compared against.

What a nanoGPT user runs, without the checkout (nothing is downloaded): its shakespeare_char preparation (a
character vocabulary, a 90/10 split, uint16 .bin files read through np.memmap on every batch), its model (the
same GPT as tuigpt's, returning the logits with the loss as nanoGPT's does), its optimizer set-up (AdamW, fused
only on CUDA: the for-loop implementation on a CPU), its autocast rule (float32 on a CPU, bf16 or fp16 with a
GradScaler on CUDA), its cosine schedule, and its loop: evaluate every eval_interval iterations (eval_iters
batches a split) and save a checkpoint when val improves, prefetch the next batch during the step, clip, step,
log. Defaults are nanoGPT's README recipe "I only have a macbook":

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
        --lr_decay_iters=2000 --dropout=0.0

    python benchmarks/nanogpt_loop.py [--data ../shared/data/tinyshakespeare.txt] [--key=value ...]

Prints nanoGPT's log lines, and per evaluation "eval <iter> val <loss> at <seconds> s" (seconds since the
script started), which benchmarks/time_to_loss.py reads.
"""

from __future__ import annotations

import time

STARTED = time.time()  # before the imports: a user's wall-clock includes them

import argparse  # noqa: E402
import contextlib  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tuigpt.engine.model import GPT, ModelArgs  # noqa: E402

# config/train_shakespeare_char.py with the macbook overrides, over train.py's defaults
MACBOOK = dict(eval_interval=250, eval_iters=20, log_interval=1, always_save_checkpoint=False,
               gradient_accumulation_steps=1, batch_size=12, block_size=64, n_layer=4, n_head=4, n_embd=128,
               dropout=0.0, bias=False, learning_rate=1e-3, max_iters=2000, lr_decay_iters=2000, min_lr=1e-4,
               beta1=0.9, beta2=0.99, weight_decay=1e-1, grad_clip=1.0, decay_lr=True, warmup_iters=100,
               device="cpu", dtype="auto", seed=1337, compile=False)


class NanoGPT(GPT):
    """tuigpt's GPT (nanoGPT's architecture) with nanoGPT's training forward: the (B, T, V) logits come back
    with the loss and stay alive until the next step, as in `logits, loss = model(X, Y)`."""

    def forward(self, idx, targets=None):  # noqa: ANN001, ANN201
        if targets is None:
            return super().forward(idx)
        _, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss


def prepare_char(text_path: str, out_dir: str) -> int:
    """data/shakespeare_char/prepare.py: sorted characters as the vocabulary, first 90% train; the vocab size."""
    data = Path(text_path).read_text(encoding="utf-8")
    chars = sorted(set(data))
    stoi = {ch: i for i, ch in enumerate(chars)}
    n = len(data)
    for name, part in (("train", data[: int(n * 0.9)]), ("val", data[int(n * 0.9):])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(os.path.join(out_dir, f"{name}.bin"))
    return len(chars)


def prepare_gpt2(text_path: str, out_dir: str) -> int:
    """data/shakespeare/prepare.py: the gpt2 BPE (tiktoken, offline cache), first 90% train; nanoGPT's 50304."""
    import tiktoken

    data = Path(text_path).read_text(encoding="utf-8")
    n = len(data)
    enc = tiktoken.get_encoding("gpt2")
    for name, part in (("train", data[: int(n * 0.9)]), ("val", data[int(n * 0.9):])):
        np.array(enc.encode_ordinary(part), dtype=np.uint16).tofile(os.path.join(out_dir, f"{name}.bin"))
    return 50304


def run(cfg: dict, data_dir: str, vocab_size: int, out_dir: str, log=print, clock=time.time) -> dict:  # noqa: ANN001
    """nanoGPT's train.py loop (one process, or one rank under torchrun); returns {"evals": [(iter, val,
    seconds)], "ms": [...]}. ``clock`` times the iterations (time.thread_time: this thread's CPU time)."""
    device = cfg["device"]
    ddp = int(os.environ.get("RANK", -1)) != -1
    master = True
    accum = cfg["gradient_accumulation_steps"]
    if ddp:  # train.py: one process per GPU, the accumulation split among them
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if "cuda" in device else "gloo")
        rank, local_rank, world = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
        if "cuda" in device:
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(device)
        master = rank == 0
        assert accum % world == 0
        accum //= world
        cfg = dict(cfg, seed=cfg["seed"] + rank)
    device_type = "cuda" if "cuda" in device else "cpu"
    torch.manual_seed(cfg["seed"])
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = cfg["dtype"]
    if dtype == "auto":
        dtype = ("bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float16")
    ptdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    ctx = (contextlib.nullcontext() if device_type == "cpu"
           else torch.amp.autocast(device_type=device_type, dtype=ptdtype))
    block_size, batch_size = cfg["block_size"], cfg["batch_size"]

    def get_batch(split: str):  # noqa: ANN202
        data = np.memmap(os.path.join(data_dir, f"{split}.bin"), dtype=np.uint16, mode="r")
        ix = torch.randint(len(data) - block_size, (batch_size,))
        x = torch.stack([torch.from_numpy((data[i:i + block_size]).astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy((data[i + 1:i + 1 + block_size]).astype(np.int64)) for i in ix])
        if device_type == "cuda":
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x.to(device), y.to(device)

    args = ModelArgs(vocab_size=vocab_size, block_size=block_size, n_layer=cfg["n_layer"], n_head=cfg["n_head"],
                     n_embd=cfg["n_embd"], dropout=cfg["dropout"], bias=cfg["bias"])
    model = NanoGPT(args).to(device)
    # torch.cuda.amp.GradScaler(enabled=dtype == "float16") disables itself without CUDA
    scaler = torch.amp.GradScaler(device_type, enabled=(dtype == "float16" and device_type == "cuda"))
    extra = dict(fused=True) if device_type == "cuda" else dict()  # model.configure_optimizers
    optimizer = torch.optim.AdamW(model.param_groups(cfg["weight_decay"]), lr=cfg["learning_rate"],
                                  betas=(cfg["beta1"], cfg["beta2"]), **extra)
    if cfg.get("compile"):
        model = torch.compile(model)
    if ddp:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[int(device.split(":")[1])] if device_type == "cuda"
                                        else None)
    raw_model = model.module if ddp else model
    @torch.no_grad()
    def estimate_loss() -> dict:
        out = {}
        model.eval()
        for split in ("train", "val"):
            losses = torch.zeros(cfg["eval_iters"])
            for k in range(cfg["eval_iters"]):
                X, Y = get_batch(split)
                with ctx:
                    _, loss = model(X, Y)
                losses[k] = loss.item()
            out[split] = losses.mean()
        model.train()
        return out

    def get_lr(it: int) -> float:
        lr, warmup, decay, min_lr = cfg["learning_rate"], cfg["warmup_iters"], cfg["lr_decay_iters"], cfg["min_lr"]
        if it < warmup:
            return lr * (it + 1) / (warmup + 1)
        if it > decay:
            return min_lr
        ratio = (it - warmup) / (decay - warmup)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)

    result: dict = {"evals": [], "ms": []}
    X, Y = get_batch("train")
    t0 = clock()
    iter_num, best_val_loss = 0, 1e9
    while True:
        lr = get_lr(iter_num) if cfg["decay_lr"] else cfg["learning_rate"]
        for group in optimizer.param_groups:
            group["lr"] = lr
        if iter_num % cfg["eval_interval"] == 0 and master:
            losses = estimate_loss()
            log(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            log(f"eval {iter_num} val {losses['val']:.4f} at {time.time() - STARTED:.2f} s")
            result["evals"].append((iter_num, float(losses["val"]), time.time() - STARTED))
            if losses["val"] < best_val_loss or cfg["always_save_checkpoint"]:
                best_val_loss = losses["val"]
                if iter_num > 0 and master:
                    torch.save({"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                                "model_args": args.to_dict(), "iter_num": iter_num, "best_val_loss": best_val_loss,
                                "config": cfg}, os.path.join(out_dir, "ckpt.pt"))
        for micro_step in range(accum):
            if ddp:  # all-reduce on the last micro-step only
                model.require_backward_grad_sync = micro_step == accum - 1
            with ctx:
                logits, loss = model(X, Y)
                loss = loss / accum
            X, Y = get_batch("train")  # nanoGPT's "async prefetch" of the next batch
            scaler.scale(loss).backward()
        if cfg["grad_clip"] != 0.0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        t1 = clock()
        dt, t0 = t1 - t0, t1
        result["ms"].append(dt * 1000)
        if iter_num % cfg["log_interval"] == 0 and master:
            lossf = loss.item() * accum
            log(f"iter {iter_num}: loss {lossf:.4f}, time {dt * 1000:.2f}ms")
        iter_num += 1
        if iter_num > cfg["max_iters"]:
            break
    if ddp:
        import torch.distributed as dist

        dist.destroy_process_group()
    result["master"] = master
    return result


def parse_overrides(tokens: list[str]) -> dict:
    """nanoGPT's configurator: --key=value, typed like the default."""
    cfg = dict(MACBOOK)
    for token in tokens:
        key, _, value = token.removeprefix("--").partition("=")
        if key not in cfg:
            raise SystemExit(f"unknown key {key!r}")
        default = cfg[key]
        cfg[key] = (value.lower() == "true" if isinstance(default, bool) else type(default)(value)
                    if default is not None else value)
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "tinyshakespeare.txt"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--tokenizer", choices=("char", "gpt2"), default="char",
                        help="shakespeare_char (char) or shakespeare (gpt2 BPE, tiktoken's offline cache)")
    args, rest = parser.parse_known_args()
    cfg = parse_overrides(rest)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="nanogpt-") as tmp:
        vocab = (prepare_gpt2 if args.tokenizer == "gpt2" else prepare_char)(args.data, tmp)
        result = run(cfg, tmp, vocab, tmp, log=lambda line: print(line, flush=True))
    if not result["master"]:
        return
    steady = sorted(result["ms"][len(result["ms"]) // 5:])
    tokens = cfg["batch_size"] * cfg["block_size"] * cfg["gradient_accumulation_steps"]
    median = steady[len(steady) // 2]
    print(f"done: {len(result['ms'])} iterations, {median:.2f} ms/iter (median after warm-up), "
          f"{tokens / (median / 1000):,.0f} tokens/s, final val {result['evals'][-1][1]:.4f}, "
          f"{time.time() - STARTED:.1f} s in all", flush=True)


if __name__ == "__main__":
    main()
