"""trackio: local-first runs in trackio's own store (``TRACKIO_DIR``, else ``$HF_HOME/trackio``), one project per
``log_project``; ``trackio show`` opens the dashboard and ``trackio query`` reads it. Nothing leaves the machine
unless the user points trackio at a Space (``TRACKIO_SPACE_ID``).

``--resume`` continues the trackio run of the same project and name (kept in dashboards.json); each iteration
is logged at its own step, so the earlier sessions' points stay and the new ones follow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuigpt.host.dashboards import continuity
from tuigpt.host.dashboards.sink import Opened
from tuigpt.run.dashboard_rows import Row
from tuigpt.run.events import RunStarted


class TrackioRun:
    """A run's trackio run (see the module docstring)."""

    def __init__(self, file_mode: int) -> None:
        import trackio
        from trackio.utils import TRACKIO_DIR

        self._trackio = trackio
        self._store = TRACKIO_DIR
        self._file_mode = file_mode
        self._run: Any = None

    def open(self, start: RunStarted) -> Opened:
        config, run_dir = start.config, Path(start.run_dir)
        project, name = config["log_project"], config["log_run_name"] or config["run_name"]
        earlier = continuity.remembered(run_dir, "trackio") if start.resumed else None
        continued = earlier is not None and earlier.get("project") == project and earlier.get("name") == name
        # auto_log_*: tuigpt's own telemetry readings are logged under cpu/ and gpu<N>/
        self._run = self._trackio.init(project=project, name=name, config=config,
                                       resume="allow" if continued else "never", auto_log_cpu=False,
                                       auto_log_gpu=False, embed=False)
        continuity.remember(run_dir, "trackio", {"project": project, "name": name, "id": self._run.id}, self._file_mode)
        return Opened(f"log_to trackio: project {project}, run {name} in {self._store} (view: trackio show "
                      f"--project {project})", continued)

    def write(self, row: Row) -> None:
        self._run.log({**row.scalars, **row.texts}, step=row.step)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
