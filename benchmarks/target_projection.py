"""Target-loss projection error: replay a finished run's history up to half its iterations, project when the
loss reaches targets the run really reached later, and compare with the real crossing.

For each metrics.jsonl (or run directory) given: the targets are the curve's values at 70%, 85% and 100%
of the run (the curve the projection fits at the 50% mark: the val losses when there are enough evals in
the window, else the EMA of the logged train loss), the real crossing is the first iteration at which that
curve came down to the target. The error is (projected - real) / (real - 50% iteration): the share of the
remaining distance the projection is off by; "in range" says whether the real crossing lies in the
projection's range. Both fits are tried: with a loss floor (the one shipped) and a pure power law.

    python benchmarks/target_projection.py RUN_DIR_OR_METRICS [...] [--at 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tuigpt.run.events import EvalResult, Event, IterationStats  # noqa: E402
from tuigpt.run.metrics_log import read_metrics  # noqa: E402
from tuigpt.run.projection import TargetTracker  # noqa: E402
from tuigpt.run.records import event_from_record  # noqa: E402

TARGET_AT = (0.7, 0.85, 1.0)


def history(path: Path) -> list[Event]:
    path = path / "metrics.jsonl" if path.is_dir() else path
    events = []
    for record in read_metrics(path):
        if record.get("type") in ("start", "iter", "eval") and (event := event_from_record(record)) is not None:
            events.append(event)
    return events


def until(events: list[Event], iteration: int) -> list[Event]:
    return [e for e in events if not isinstance(e, (IterationStats, EvalResult)) or e.iter <= iteration]


def replay(events: list[Event], floor: bool) -> TargetTracker:
    tracker = TargetTracker(floor=floor)
    for event in events:
        tracker.observe(event)
    return tracker


def evaluate(path: Path, at: float) -> list[dict]:
    events = history(path)
    last = max(e.iter for e in events if isinstance(e, IterationStats))
    cut = int(last * at)
    rows = []
    for floor in (True, False):
        part = replay(until(events, cut), floor)
        full = replay(events, floor)
        basis = part.project(1e-9).basis  # which curve the projection at the cut fits
        curve = full.val if basis == "val" else full.train
        now = (part.val if basis == "val" else part.train)[-1][1]
        for fraction in TARGET_AT:
            point = min(curve, key=lambda p: abs(p[2] - fraction * last))
            target = point[1]
            if target >= now:
                continue  # already reached at the cut: nothing to project
            real = next(p[2] for p in curve if p[2] > cut and p[1] <= target)
            p = part.project(target)
            row = {"run": path.name if path.is_dir() else path.parent.name, "fit": "floor" if floor else "pure",
                   "basis": basis, "cut": cut, "target": target, "real": real, "projected": p.iter,
                   "lo": p.iter_lo, "hi": p.iter_hi, "why": p.why}
            if p.iter is not None:
                row["error"] = (p.iter - real) / max(1, real - cut)
                row["in_range"] = p.iter_lo <= real <= p.iter_hi  # type: ignore[operator]
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--at", type=float, default=0.5, help="fraction of the run replayed (default 0.5)")
    args = parser.parse_args()
    rows = [row for path in args.runs for row in evaluate(path, args.at)]
    print(f"{'run':<22} {'fit':<5} {'basis':<5} {'cut':>6} {'target':>7} {'real':>6} {'projected (range)':>22} "
          f"{'error':>7} in range")
    for r in rows:
        projected = (f"{r['projected']:,} ({r['lo']:,}-{r['hi']:,})" if r["projected"] is not None
                     else r["why"][:22])
        error = f"{r['error'] * 100:+.0f}%" if "error" in r else "-"
        print(f"{r['run'][:22]:<22} {r['fit']:<5} {r['basis']:<5} {r['cut']:>6,} {r['target']:>7.4f} {r['real']:>6,} "
              f"{projected:>22} {error:>7} {'yes' if r.get('in_range') else 'no'}")
    for fit in ("floor", "pure"):
        errors = [abs(r["error"]) for r in rows if r["fit"] == fit and "error" in r]
        missed = sum(1 for r in rows if r["fit"] == fit and "error" not in r)
        covered = sum(1 for r in rows if r["fit"] == fit and r.get("in_range"))
        if errors:
            print(f"{fit}: median |error| {statistics.median(errors) * 100:.0f}% of the remaining distance, max "
                  f"{max(errors) * 100:.0f}%; real crossing in range {covered}/{len(errors)}; no projection {missed}")
        else:
            print(f"{fit}: no projections ({missed} targets)")


if __name__ == "__main__":
    main()
