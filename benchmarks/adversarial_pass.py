"""The adversarial pass: about 880 generated cases, and the counts the hardening issues (#19, #26) ask for.

Config files (wrong types, out-of-range and overflowing values, aliases, deep nesting, huge integers, binary junk),
``--key=value`` overrides, data files (FIFOs, devices, binary, empty, too short, symlink loops), damaged checkpoints
(every field of the wrong type or shape, NaN/Inf weights and AdamW moments, bit flips, truncation; resumed and
sampled), control-socket messages (malformed JSON, deep nesting, oversized lines, floods, every command with
junk arguments), and the newer paths: crafted nanoGPT ckpt.pt / meta.pkl and Hugging Face folders through
`sample`, `init_from`, `--resume` and `export`; .py config bombs; write targets of `export` and `tune --write`
(a file in the way, a dangling link, a full or read-only disk); and real processes: stop signals with an output
nobody reads and at random moments of the start, second signals while checkpoints are written, run.lock deleted
under a run, --nproc over a run, a full disk before SIGTERM, flooding alert commands, slow socket clients.
Every case runs next to a finished run it must not change; see tests/support/adversarial.py for the invariants.

    python benchmarks/adversarial_pass.py [--seed 1] [--scale 1.0] [--show 20] [--no-processes]

Prints: cases per category, exit codes, and the counts of exit 1, tracebacks, hangs, lost records, changed run
directories and what was left behind (processes, temporary files, control sockets). Not a timing benchmark: run it
under the shared CPU lock.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0: about 880 cases")
    parser.add_argument("--show", type=int, default=20, help="broken cases to print in full")
    parser.add_argument("--no-processes", action="store_true", help="leave out the cases that start processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tuigpt-adversarial-") as tmp:
        os.environ["TUIGPT_CACHE_DIR"] = str(Path(tmp) / "cache")
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(REPO.parent / "shared" / "data" / "tiktoken-cache"))
        os.environ["TUIGPT_SHAKESPEARE_URL"] = "http://127.0.0.1:9/unreachable"  # a case never downloads
        from support.adversarial import SocketHarness, run_all
        from support.adversarial_cases import all_cases

        harness = SocketHarness(Path(tmp) / "sock")
        done = [0]

        def progress(result: object) -> None:
            done[0] += 1
            if done[0] % 50 == 0:
                print(f"  {done[0]} cases", file=sys.stderr, flush=True)

        try:
            report = run_all(all_cases(args.seed, args.scale, harness, processes=not args.no_processes),
                             Path(tmp) / "pass", progress)
        finally:
            harness.close()
    print(f"adversarial pass (seed {args.seed}): {report.summary()}")
    for r in report.failures[:args.show]:
        print(f"  BROKEN {r.case.category} {r.case.name[:100]}: {r.problem}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
