"""Does `tuigpt netcheck` predict what a second machine really gains? Two network namespaces on one box.

Needs root and iproute2. Builds two "machines" (tests/support/netns.py: two network namespaces joined by a
veth pair shaped like gigabit Ethernet or Wi-Fi, host names tg-node0 and tg-node1), then per repeat, in
this order:
  1. netcheck: `torchrun --nnodes=2 --node_rank=R ... -m tuigpt netcheck CONFIG` in each namespace
     → its predicted speed-up;
  2. two nodes: the same launch of `tuigpt CONFIG --headless` for --iters iterations → wall ms/iter;
  3. one process: `tuigpt CONFIG --headless` alone → wall ms/iter;
and prints predicted vs measured (ms/iter of 3 over ms/iter of 2).

Fair on a small box: every rank and the single process run ONE thread pinned to its own core (rank r on
core r, the single process on core 0), each node in a cgroup of the largest CPU weight (so the box's other
work waits while it is timed: each "machine" has its core), and all three train the same global batch:
gradient_accumulation_steps stays the config's (2 when the config says 1, so it divides over 2 ranks), i.e. the
same tokens per iteration.
What this measures is the parallel speed-up of 2 cores that talk through a shaped link, not of 2 laptops:
both "machines" share the memory bus and the host's other load.

Usage: sudo python benchmarks/twonode_speedup.py CONFIG [--profile gigabit|wifi] [--iters N] [--repeats K]
                                                [--rounds R] [--key=value ...]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.netns import PROFILES, CpuGroup, NetnsPair, pinned, unavailable, wall_ms_per_iter  # noqa: E402

from tuigpt.run.numbers import measured_speedup  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
PREDICTED = re.compile(r"^verdict: .*?(\d+\.\d+)×", re.M)


def overrides(config: str, iters: int, out_dir: str) -> list[str]:
    import yaml

    values = yaml.safe_load(Path(config).read_text()) or {}
    gas = int(values.get("gradient_accumulation_steps", 1))
    gas = gas if gas % 2 == 0 else gas * 2
    return [f"--gradient_accumulation_steps={gas}", "--num_threads=1", f"--max_iters={iters}",
            f"--eval_interval={iters * 10}", "--eval_iters=1", f"--log_interval={max(1, iters // 20)}",
            "--telemetry_interval=0",
            f"--out_dir={out_dir}", f"--data_path={SHARED / 'tinyshakespeare.txt'}", "--ddp_timeout=120",
            "--always_save_checkpoint=false"]


def pair_run(pair: NetnsPair, args: list[str], env: dict[str, str], groups: list[CpuGroup]) -> str:
    procs = [subprocess.Popen(pair.command(n, pair.torchrun(n, sys.executable, args), cpu=n, group=groups[n]), env=env,
                              cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (0, 1)]
    outs = [p.communicate(timeout=1800) for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("a node failed:\n" + "\n".join(f"node {n} exited {p.returncode}:\n{out[-2000:]}\n{err[-3000:]}"
                                                        for n, (p, (out, err)) in enumerate(zip(procs, outs))))
    return outs[0][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="gigabit")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    ns, extra = parser.parse_known_args()
    why = unavailable()
    if why:
        raise SystemExit(f"cannot run: {why}")
    env = dict(os.environ, PYTHONUNBUFFERED="1", TIKTOKEN_CACHE_DIR=str(SHARED / "tiktoken-cache"))
    skip = max(3, ns.iters // 5)
    rows = []
    groups = [CpuGroup(owned=True), CpuGroup(owned=True)]
    with tempfile.TemporaryDirectory(prefix="tuigpt-twonode-") as tmp, NetnsPair(PROFILES[ns.profile]) as pair:
        print(f"link: {ns.profile}, {pair.shaping}; config {ns.config} {' '.join(extra)}", flush=True)
        for k in range(ns.repeats):
            common = overrides(ns.config, ns.iters, tmp) + extra
            report = pair_run(pair, ["netcheck", ns.config, f"--rounds={ns.rounds}", *common], env, groups)
            predicted = float(PREDICTED.search(report).group(1))
            if k == 0:
                print(report.rstrip(), flush=True)
            pair_run(pair, [ns.config, "--headless", f"--run_name=two{k}", *common], env, groups)
            two = wall_ms_per_iter(Path(tmp) / f"two{k}" / "metrics.jsonl", skip)
            one_cmd = [*groups[0].prefix, *pinned(0), sys.executable, "-m", "tuigpt", ns.config, "--headless",
                       f"--run_name=one{k}", *common]
            done = subprocess.run(one_cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                raise SystemExit(f"the single process failed:\n{done.stderr[-2000:]}")
            one = wall_ms_per_iter(Path(tmp) / f"one{k}" / "metrics.jsonl", skip)
            measured = measured_speedup(one, two)
            rows.append((predicted, measured))
            print(f"repeat {k + 1}: predicted {predicted:.2f}x | measured {measured:.2f}x (one process "
                  f"{one:.1f} ms/iter, two nodes {two:.1f} ms/iter) | predicted/measured {predicted / measured:.2f}",
                  flush=True)
    for group in groups:
        group.remove()
    pred = statistics.median(r[0] for r in rows)
    meas = statistics.median(r[1] for r in rows)
    print(f"median of {len(rows)}: predicted {pred:.2f}x, measured {meas:.2f}x, predicted/measured {pred / meas:.2f}")


if __name__ == "__main__":
    main()
