"""Dashboards beside the monitor (``log_to``): TensorBoard, Weights & Biases and trackio, each a subscriber of the
run's event bus with a thread of its own (:mod:`.sink`). The trainer knows nothing of them.

The packages are optional (``pip install 'tuigpt[dashboards]'``): one that is not installed is one line at the
run's start, and the run goes on without it.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Callable

from tuigpt.host.dashboards.chatter import Chatter
from tuigpt.host.dashboards.sink import CLOSE_PATIENCE, Backend, DashboardSink
from tuigpt.run.config import TrainConfig
from tuigpt.run.events import EventBus, Notice
from tuigpt.run.rundir import RunDir

LOG_FILE = "dashboards.log"  # what the packages print (see chatter.py)
# log_to name -> (the package to import, what it is called)
PACKAGES = {"tensorboard": ("tensorboard", "TensorBoard"), "wandb": ("wandb", "Weights & Biases"),
            "trackio": ("trackio", "trackio")}


def _backend(name: str, file_mode: int) -> Callable[[], Backend]:
    def make() -> Backend:  # imported on the sink's thread: `import wandb` alone takes ~3 s here
        if name == "tensorboard":
            from tuigpt.host.dashboards.tensorboard_events import TensorBoardEvents

            return TensorBoardEvents()
        if name == "wandb":
            from tuigpt.host.dashboards.wandb_run import WandbRun

            return WandbRun(file_mode)
        from tuigpt.host.dashboards.trackio_run import TrackioRun

        return TrackioRun(file_mode)

    return make


class Dashboards:
    """The run's open dashboards; :meth:`close` writes what they hold and finishes their runs."""

    def __init__(self, sinks: list[DashboardSink], chatter: Chatter | None) -> None:
        self.sinks = sinks
        self._chatter = chatter

    def close(self) -> None:
        """All of them finish at once: the run's end waits CLOSE_PATIENCE at most, not that for each."""
        for sink in self.sinks:
            sink.close_soon()
        deadline = time.monotonic() + CLOSE_PATIENCE
        for sink in self.sinks:
            sink.close(max(0.0, deadline - time.monotonic()))
        if self._chatter is not None:
            self._chatter.restore()


def open_dashboards(config: TrainConfig, run_dir: RunDir, bus: EventBus,
                    file_mode: int) -> tuple[Dashboards, list[Notice]]:
    """Subscribe a sink for each ``log_to`` whose package is installed; the notices name those that are not."""
    notices: list[Notice] = []
    wanted: list[str] = []
    for name in config.log_to:
        package, label = PACKAGES[name]
        if importlib.util.find_spec(package) is None:
            notices.append(Notice(level="warning", topic="dashboards", message=(
                f"log_to {name}: the {package} package is not installed, so this run does not go to {label} "
                f"(pip install {package}, or 'tuigpt[dashboards]' for all three)")))
        else:
            wanted.append(name)
    if not wanted:
        return Dashboards([], None), notices
    chatter = Chatter(run_dir / LOG_FILE, file_mode)
    chatter.route()
    sinks = []
    for name in wanted:
        sink = DashboardSink(name, _backend(name, file_mode), bus.publish, config.log_interval, chatter)
        sink.attach(bus.subscribe)
        sinks.append(sink)
    return Dashboards(sinks, chatter), notices
