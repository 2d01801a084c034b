"""Weights & Biases: a W&B run per run folder, online when the user is logged in, else offline in the run folder's
``wandb/`` (``wandb sync`` uploads it later). ``WANDB_MODE`` set by the user decides instead (online, offline,
disabled).

W&B's step is the iteration, so every series shares the x-axis and a resumed session's steps follow the earlier
ones. ``--resume`` continues the same run id (kept in dashboards.json); offline, each session is its own
``offline-run-*`` folder with that id, and ``wandb sync`` uploads them in order into one run. Logged in but W&B
unreachable (``WANDB_INIT_TIMEOUT``, 90 s by default), the run goes offline instead and says why. W&B steps only go
forward: after an ``on_nan: rewind`` (or a crash) the iterations trained a second time keep their first values
there. Samples and events go to two tables that grow a row at a time.
"""

from __future__ import annotations

import gc
import os
import secrets
import string
import tempfile
from pathlib import Path
from typing import Any

from tuigpt.host.dashboards import continuity
from tuigpt.host.dashboards.sink import Opened
from tuigpt.run.dashboard_rows import EVENTS, SAMPLES, Row
from tuigpt.run.events import RunStarted
from tuigpt.run.fmt import clip


class WandbRun:
    """A run's W&B run (see the module docstring)."""

    def __init__(self, file_mode: int) -> None:
        import wandb

        self._wandb = wandb
        self._file_mode = file_mode
        self._run: Any = None
        self._tables: dict[str, Any] = {}

    def open(self, start: RunStarted) -> Opened:
        wandb = self._wandb
        config, run_dir = start.config, Path(start.run_dir)
        earlier = continuity.remembered(run_dir, "wandb") if start.resumed else None
        run_id = earlier["id"] if earlier and isinstance(earlier.get("id"), str) else _new_id()
        chosen = os.environ.get("WANDB_MODE")
        if chosen:
            mode, why = chosen, f"WANDB_MODE={chosen}"
        elif wandb.login(prompt=False, verify=False):  # credentials are configured (never prompts, never goes online)
            mode, why = "online", "logged in"
        else:
            mode, why = "offline", "not logged in"
        try:
            self._run = self._init(config, run_dir, run_id, mode)
        except Exception as exc:
            if mode != "online" or chosen:
                raise
            wandb.teardown()  # the service still holds the id of the run that did not start
            self._run = self._init(config, run_dir, run_id, "offline")
            why = f"W&B could not be reached: {clip(f'{type(exc).__name__}: {exc}', 120)}"
        continuity.remember(run_dir, "wandb", {"id": run_id, "project": config["log_project"]}, self._file_mode)
        if self._run.disabled:
            line = f"log_to wandb: disabled ({why}): nothing goes to W&B"
        elif self._run.offline:
            line = (f"log_to wandb: offline ({why}) in {run_dir / 'wandb'}; upload it with: wandb sync "
                    f"{run_dir / 'wandb'}/offline-run-*")
        else:
            line = f"log_to wandb: online ({why}) at {self._run.url}"
        return Opened(line, continued=earlier is not None)

    def _init(self, config: dict[str, Any], run_dir: Path, run_id: str, mode: str) -> Any:
        wandb = self._wandb
        # console off: W&B would otherwise wrap sys.stdout and sys.stderr, the monitor's terminal among them;
        # system stats off: tuigpt's own telemetry readings are logged under cpu/ and gpu<N>/
        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, disable_git=True, save_code=False)
        return wandb.init(project=config["log_project"], name=config["log_run_name"] or config["run_name"], id=run_id,
                          dir=str(run_dir), config=config, resume="allow", mode=mode, settings=settings,
                          reinit="create_new")

    def write(self, row: Row) -> None:
        values: dict[str, Any] = dict(row.scalars)
        for name, text in row.texts.items():
            table = self._tables.get(name)
            if table is None:
                columns = ["iter", {SAMPLES: "sample", EVENTS: "event"}.get(name, name)]
                table = self._tables[name] = self._wandb.Table(columns=columns, log_mode="INCREMENTAL")
            table.add_data(row.step, text)
            values[name] = table
        self._run.log(values, step=row.step)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._tables.clear()
            remove_wandb_temp_dirs()


def remove_wandb_temp_dirs() -> None:
    """W&B keeps its media, and each incremental table's rows as an artifact, in temporary directories that it
    removes at the interpreter's exit; a training run ends without that exit (host.console.finish skips the
    teardown), so they piled up in /tmp, five a run. Removed here once the run is finished: W&B's own (named
    ``*wandb-media``, ``*wandb-artifacts``) and those holding nothing but a table's JSON, never another's."""
    for held in [obj for obj in gc.get_objects() if isinstance(obj, tempfile.TemporaryDirectory)]:
        path = Path(held.name)
        try:
            files = [f.name for f in path.iterdir()]
        except OSError:
            continue  # removed already
        if path.name.endswith(("wandb-media", "wandb-artifacts")) or files and all(
                f.endswith(".table.json") for f in files):
            held.cleanup()


def _new_id() -> str:
    """A run id as W&B makes them: 8 lowercase letters and digits."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
