"""`tuigpt CONFIG.yaml|CONFIG.py [--time 8h | --until 07:00] [--key=value ...] [--headless] [--resume] [--nproc N]
[--netcheck] [--compare RUN_DIR]`."""

from __future__ import annotations

import os
import sys
import time

from tuigpt.cli.args import HELP, split_overrides
from tuigpt.run.config import RESUME
from tuigpt.run.configfile import load_config_with_notices
from tuigpt.run.deadline import parse_duration, run_end
from tuigpt.run.errors import UserError
from tuigpt.run.exits import EXIT_ERROR, EXIT_OK
from tuigpt.run.fmt import shown
from tuigpt.run.numbers import split_batch, unsplittable_fix

OPTIONS = ("--headless", "--resume", "--netcheck", "--nproc", "--compare", "--help", "--time", "--until")  # besides --key=value


def main(args: list[str]) -> int:
    config_path, rest = args[0], args[1:]
    if config_path.startswith("--"):
        raise UserError(f"the first argument must be a config file, not {shown(config_path)} (e.g. tuigpt "
                        f"configs/train_cpu_optimized.yaml {config_path})")
    flags = {"--headless": False, "--resume": False, "--netcheck": False}
    remaining = []
    passed_on = []  # what a --nproc launch hands to every rank
    nproc: str | None = None
    compare: str | None = None  # --compare RUN_DIR: another run's loss curves on the chart
    ends: dict[str, str] = {}  # --time / --until: the command line's end replaces the config's
    tokens = iter(rest)
    for token in tokens:
        if token.split("=", 1)[0] in END_FLAGS:
            flag, eq, value = token.partition("=")
            value = value if eq else next(tokens, "")
            if not value or value.startswith("--"):
                raise UserError(f"{flag} needs a value, e.g. {flag} {END_FLAGS[flag][1]}")
            if flag == "--time":
                parse_duration(value, "--time")  # "--time 8x is not a duration" rather than the config key's name
            ends[flag] = value
            passed_on += [flag, value]
            continue
        if token == "--compare" or token.startswith("--compare="):
            compare = token.partition("=")[2] if "=" in token else next(tokens, "")
            if not compare:
                raise UserError("--compare needs a run directory, e.g. --compare checkpoints/other-run")
            continue
        if token == "--nproc" or token.startswith("--nproc="):
            nproc = token.partition("=")[2] if "=" in token else next(tokens, "")
            continue
        passed_on.append(token)
        if token in flags:
            flags[token] = True
        elif token in ("-h", "--help"):
            print(HELP, end="")
            return EXIT_OK
        else:
            remaining.append(token)
    if len(ends) > 1:
        raise UserError("--time and --until both given: keep one (--time counts run time, --until the wall clock)")
    overrides = split_overrides(remaining, OPTIONS)
    for flag, value in ends.items():
        key = END_FLAGS[flag][0]
        other = "deadline" if key == "time_budget" else "time_budget"
        if other in overrides:
            raise UserError(f"{flag} and --{other} both given: keep one")
        overrides[key], overrides[other] = value, ""  # the config file's other end no longer applies
    config, notices = load_config_with_notices(config_path, overrides)
    if config.planned:  # an end in the past (or unreadable) is refused before minutes of set-up
        run_end(config.time_budget, config.deadline, time.time(), time.time())
    if config.init_from == RESUME:  # nanoGPT's way of saying --resume
        flags["--resume"] = True
    if nproc is not None:
        _check_run_dir(config, flags["--resume"])  # what every rank would refuse, refused once, before torchrun
        return launch_local(nproc, config_path, passed_on, config.batch_size, config.gradient_accumulation_steps)
    headless = flags["--headless"] or not (sys.stdout.isatty() and sys.stdin.isatty())
    from tuigpt.engine.distributed import launch_env
    from tuigpt.host.wiring import train, train_rank

    env = launch_env()
    if env is not None:
        return train_rank(config, env, config_path=config_path, resume=flags["--resume"], headless=headless,
                          notices=notices, netcheck=flags["--netcheck"])
    if flags["--netcheck"]:
        raise UserError("--netcheck measures what several ranks gain over one, and this is a single process: add "
                        "--nproc N, or launch with torchrun (docs/DISTRIBUTED.md)")
    if compare is not None:
        from tuigpt.run.rundir import resolve_run_dir

        compare = str(resolve_run_dir(compare, config.out_dir))
    return train(config, config_path=config_path, resume=flags["--resume"], headless=headless, compare=compare,
                 notices=notices)


def _check_run_dir(config, resume: bool) -> None:  # noqa: ANN001
    """A run folder the ranks cannot start in is one line and exit 2 here, not N failed ranks and torchrun's
    traceback: another process holds it, a fresh start would overwrite it, or its checkpoint cannot be resumed."""
    from tuigpt.engine.checkpointing import CheckpointManager
    from tuigpt.run.lock import refuse_if_held
    from tuigpt.run.rundir import RunDir

    run_dir = RunDir.of(config.out_dir, config.run_name)
    refuse_if_held(run_dir.path)
    checkpoints = CheckpointManager(run_dir)
    if resume:
        checkpoints.open_resume(config)  # every field checked, as the ranks would
    else:
        checkpoints.refuse_overwrite()


# the flags that end a run at a time, the config key each sets, and an example value
END_FLAGS = {"--time": ("time_budget", "8h"), "--until": ("deadline", "07:00")}


def launch_local(nproc: str, config_path: str, args: list[str], batch_size: int, accumulation: int) -> int:
    """`--nproc N`: replace this process with torchrun on this machine, N ranks (signals then reach torchrun).

    The ranks share each iteration's batch_size × gradient_accumulation_steps sequences (run.numbers.split_batch):
    the tokens per iteration stay those of one process."""
    from tuigpt.engine.distributed import launch_env

    if not nproc.isdigit() or int(nproc) < 1:
        raise UserError(f"--nproc needs a positive number of processes, not {shown(nproc)} (e.g. --nproc 2)")
    if split_batch(batch_size, accumulation, int(nproc)) is None:  # checked here, before torchrun starts N ranks
        raise UserError(unsplittable_fix(batch_size, accumulation, int(nproc)))
    if launch_env() is not None:
        raise UserError("--nproc inside torchrun: this process is already one rank; drop --nproc")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "tuigpt", config_path, *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
    return EXIT_ERROR  # not reached
