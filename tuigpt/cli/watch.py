"""`tuigpt watch [RUN_DIR|NAME] [--out_dir DIR] [--compare RUN_DIR]`: the monitor on a run in another process,
found from any directory (the per-user run index)."""

from __future__ import annotations

import sys

from tuigpt.cli.args import Parser
from tuigpt.run.rundir import resolve_run_dir


def main(args: list[str]) -> int:
    parser = Parser(prog="tuigpt watch", description="Open the monitor on a run in another process (or ended): "
                    "follow its metrics.jsonl and steer it through its control socket.")
    parser.add_argument("run_dir", nargs="?", default=None, help="the run's directory or name (default: the most "
                        "recently updated of your runs, see `tuigpt runs`)")
    parser.add_argument("--out_dir", default=None, help="look only under this directory")
    parser.add_argument("--compare", default=None, metavar="RUN_DIR", help="overlay another run's loss curves")
    ns = parser.parse_args(args)
    path = resolve_run_dir(ns.run_dir, ns.out_dir)
    compare = resolve_run_dir(ns.compare, ns.out_dir) if ns.compare else None
    from tuigpt.control.follower import WatchController
    from tuigpt.ui.app import TuiGptApp

    controller = WatchController(path)
    app = TuiGptApp(controller, config_path=str(path), watching=True, compare=compare)
    try:
        app.run()
    finally:
        controller.close()
    if app.crashed is not None:  # the run lives in its own process and goes on; only this view ended
        print(f"tuigpt watch: the monitor failed ({type(app.crashed).__name__}: {app.crashed}); the run is not "
              f"affected: `tuigpt watch {path}` opens it again", file=sys.stderr)
        return 1
    return 0
