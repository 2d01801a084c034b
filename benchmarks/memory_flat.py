"""Memory stays flat over a long run: process RSS while the tiny config trains with every sink attached.

Runs CONFIG in this process for --iters iterations with the headless printer (to a null stream),
the metrics.jsonl writer and the telemetry sampler, and prints RSS every tenth of the run. A leak
shows as RSS that keeps climbing after the first few readings.

    python benchmarks/memory_flat.py [CONFIG] [--iters N] [--key=value ...]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tuigpt.cli.args import split_overrides  # noqa: E402
from tuigpt.engine.trainer import Trainer  # noqa: E402
from tuigpt.run.configfile import load_config  # noqa: E402
from tuigpt.run.events import IterationStats  # noqa: E402
from tuigpt.run.metrics_log import MetricsWriter  # noqa: E402
from tuigpt.run.model import RunModel  # noqa: E402
from tuigpt.run.rundir import METRICS_FILE  # noqa: E402
from tuigpt.telemetry.poller import TelemetryPoller, default_readers  # noqa: E402
from tuigpt.ui.headless import HeadlessPrinter  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "train_shakespeare_char_tiny.yaml"))
    parser.add_argument("--iters", type=int, default=20_000)
    args, rest = parser.parse_known_args()
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"out_dir": tmp, "max_iters": str(args.iters), "eval_interval": str(args.iters // 10),
                     "log_interval": "1", **split_overrides(rest)}
        trainer = Trainer(load_config(args.config, overrides))
        trainer.bus.subscribe(HeadlessPrinter(out=io.StringIO()))
        writer = MetricsWriter(trainer.run_dir / METRICS_FILE, 1)
        trainer.bus.subscribe(writer)
        model = RunModel()  # what the monitor keeps, fed every event as the monitor feeds it
        trainer.bus.subscribe(lambda event: model.record(event, words=not isinstance(event, IterationStats)))
        sampler = TelemetryPoller(trainer.bus.publish, default_readers("cpu"), interval=1.0)
        sampler.start()
        readings: list[tuple[int, float]] = []

        def watch(event) -> None:  # noqa: ANN001
            if isinstance(event, IterationStats) and event.iter % max(1, args.iters // 10) == 0:
                readings.append((event.iter, process.memory_info().rss / 2**20))
                print(f"iter {event.iter:>7}: RSS {readings[-1][1]:.1f} MiB", flush=True)

        trainer.bus.subscribe(watch)
        trainer.run()
        sampler.stop()
        writer.close()
    first, last = readings[1][1], readings[-1][1]  # from the second reading: allocator warm-up is over
    print(f"RSS from iter {readings[1][0]} to {readings[-1][0]}: {first:.1f} -> {last:.1f} MiB ({last - first:+.1f} MiB)")


if __name__ == "__main__":
    main()
