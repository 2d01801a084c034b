"""Command line: `tuigpt CONFIG.yaml [--key=value ...]` trains; subcommands sample, info, calibrate.

Exit codes (also in the README):
  0   the run finished, or was stopped from the monitor
  1   unexpected error (traceback in the run's train.log, a short message on screen)
  2   bad usage, config, data or checkpoint (one line naming the problem and the fix)
  3   the loss became NaN/Inf (the checkpoints keep the last finite weights)
  4   a checkpoint could not be written (disk full, permissions); the previous one is untouched
  128+N  stopped by signal N after writing last.pt (130 ctrl+c, 143 SIGTERM, 129 SIGHUP)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Callable, Sequence

from tuigpt.errors import UserError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NAN, EXIT_DISK = 0, 1, 2, 3, 4
EXIT_PEER_LOST = -1  # internal: a rank lost the process group; the process exits with EXIT_ERROR
SIGNAL_GRACE = 5.0  # several ranks: a repeat of a signal this soon is torchrun forwarding it, not a second ask

TRAIN_HELP = """\
usage: tuigpt CONFIG.yaml [--key=value ...] [--headless] [--resume] [--nproc N] [--compare RUN_DIR]
       tuigpt sample CHECKPOINT [--prompt TEXT] [--max_new_tokens N] [--temperature T] [--top_k K] [--seed S]
       tuigpt bench CONFIG.yaml [--steps N] [--warmup W] [--compare KEY=V1,V2] [--key=value ...]
       tuigpt watch [RUN_DIR] [--compare RUN_DIR] | tuigpt runs [--out_dir DIR]
       tuigpt info | tuigpt calibrate

Train a GPT described by CONFIG.yaml and watch it live. In a terminal this opens
the monitor; with --headless, or when output is not a terminal, it prints log lines.

  --key=value     override any config key (e.g. --max_iters=300 --device=cpu);
                  typed and validated like the file. `--key value` works too.
  --headless      plain log lines (nohup, CI, pipes)
  --resume        continue checkpoints/<run_name>/last.pt with its history
  --nproc N       train on N processes of this machine (data parallel): runs
                  python -m torch.distributed.run --standalone --nproc_per_node=N
                  -m tuigpt CONFIG.yaml <the other arguments>; several machines:
                  torchrun --nnodes ... -m tuigpt CONFIG.yaml (docs/DISTRIBUTED.md)
  --compare DIR   overlay another run's loss curves on the chart (x cycles the x axis)
  -h, --help      this help

subcommands:
  sample          generate text from a checkpoint (tuigpt sample --help)
  bench           time N training steps, project run times, compare variants (tuigpt bench --help)
  info            this machine's CPU, GPU, sensors and peak FLOP/s
  calibrate       re-measure the peak FLOP/s MFU is reported against
  watch [RUN_DIR] the monitor on a run in another process (or ended); its keys steer it
  runs            the runs under checkpoints/: state, iteration, best val loss, tokens/s

exit codes: 0 done · 1 unexpected error (see train.log) · 2 bad input · 3 NaN/Inf loss ·
            4 checkpoint could not be written ·
            128+N stopped by signal N after saving (130 ctrl+c, 143 SIGTERM, 129 SIGHUP)
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see `{self.prog} --help`)")


def split_overrides(tokens: Sequence[str]) -> dict[str, str]:
    """``--key=value`` and ``--key value`` pairs into a dict (keys keep their config spelling)."""
    overrides: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or token == "--":
            raise UserError(f"unexpected argument {token!r}: overrides look like --key=value (see tuigpt --help)")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                raise UserError(f"--{key} needs a value: write --{key}=VALUE")
            value = tokens[i + 1]
            i += 1
        overrides[key.replace("-", "_")] = value
        i += 1
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    commands: dict[str, Callable[[list[str]], int]] = {
        "sample": cmd_sample, "info": cmd_info, "calibrate": cmd_calibrate, "bench": cmd_bench,
        "watch": cmd_watch, "runs": cmd_runs,
    }
    try:
        if not args or args[0] in ("-h", "--help"):
            print(TRAIN_HELP, end="")
            return EXIT_OK if args else EXIT_USAGE
        if args[0] in commands:
            return commands[args[0]](args[1:])
        return cmd_train(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


# ---------------------------------------------------------------- train


def cmd_train(args: list[str]) -> int:
    from tuigpt.config import load_config

    config_path, rest = args[0], args[1:]
    if config_path.startswith("--"):
        raise UserError(f"the first argument must be a config file, not {config_path!r} (e.g. tuigpt "
                        f"configs/train_cpu_optimized.yaml {config_path})")
    flags = {"--headless": False, "--resume": False}
    remaining = []
    passed_on = []  # what a --nproc launch hands to every rank
    nproc: str | None = None
    compare: str | None = None  # --compare RUN_DIR: another run's loss curves on the chart
    tokens = iter(rest)
    for token in tokens:
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
            print(TRAIN_HELP, end="")
            return EXIT_OK
        else:
            remaining.append(token)
    config = load_config(config_path, split_overrides(remaining))
    if nproc is not None:
        return launch_local(nproc, config_path, passed_on, config.gradient_accumulation_steps)
    headless = flags["--headless"] or not (sys.stdout.isatty() and sys.stdin.isatty())
    from tuigpt.distributed import launch_env

    env = launch_env()
    if env is not None:
        return train_rank(config, env, config_path=config_path, resume=flags["--resume"], headless=headless)
    if compare is not None:
        from tuigpt.watch import resolve_run_dir

        compare = str(resolve_run_dir(compare, config.out_dir))
    return train(config, config_path=config_path, resume=flags["--resume"], headless=headless, compare=compare)


def launch_local(nproc: str, config_path: str, args: list[str], accumulation: int) -> int:
    """`--nproc N`: replace this process with torchrun on this machine, N ranks (signals then reach torchrun)."""
    from tuigpt.distributed import launch_env

    if not nproc.isdigit() or int(nproc) < 1:
        raise UserError(f"--nproc needs a positive number of processes, not {nproc!r} (e.g. --nproc 2)")
    if accumulation % int(nproc):
        raise UserError(f"gradient_accumulation_steps={accumulation} is not divisible by the {nproc} ranks: each "
                        f"rank runs gradient_accumulation_steps / ranks micro-steps; use a multiple of {nproc}")
    if launch_env() is not None:
        raise UserError("--nproc inside torchrun: this process is already one rank; drop --nproc")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "tuigpt", config_path, *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
    return EXIT_ERROR  # not reached


def train_rank(config, env, *, config_path: str | None, resume: bool, headless: bool) -> int:  # noqa: ANN001
    """One rank of a torchrun launch: join the group, train, leave. A lost group ends the process at once
    (the collectives' state is unknown, so nothing waits on it at exit)."""
    from tuigpt.distributed import PeerLost, rank_device, start_cluster

    try:
        cluster = start_cluster(env, config.ddp_backend, rank_device(config.device, env), config.ddp_timeout)
    except PeerLost as exc:
        print(f"tuigpt: {exc}", file=sys.stderr)
        return EXIT_ERROR
    lost = False
    try:
        code = train(config, config_path=config_path, resume=resume, headless=headless, cluster=cluster)
        lost = code == EXIT_PEER_LOST
    finally:
        if lost:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_ERROR)
    cluster.close()
    return code


def train(config, *, config_path: str | None, resume: bool, headless: bool, cluster=None,  # noqa: ANN001
          compare: str | None = None) -> int:
    """Set up the trainer (bad input → UserError before anything starts), then run it under a front end.

    With a cluster, rank 0 runs as a single process would (front end, metrics.jsonl, checkpoints) and
    the other ranks run without output (_run_worker)."""
    from tuigpt.metrics_log import METRICS_FILE, MetricsWriter
    from tuigpt.runner import BackgroundRun
    from tuigpt.trainer import Trainer

    trainer = Trainer(config, config_path=config_path, resume=resume, pause_on_trouble=not headless,
                      cluster=cluster)
    if cluster is not None and cluster.rank != 0:
        return _run_worker(BackgroundRun(trainer), cluster.rank)
    _attach_peak(trainer)
    writer = MetricsWriter(trainer.run_dir / METRICS_FILE, config.log_interval)
    trainer.bus.subscribe(writer)
    run = BackgroundRun(trainer)
    telemetry = _start_telemetry(trainer)
    from tuigpt.control_server import start_control_server

    control = start_control_server(trainer)  # `tuigpt watch` connects here; removed in finally (and atexit)

    def close_sinks() -> None:
        control.stop()
        if telemetry is not None:
            telemetry.stop()
        writer.close()

    try:
        if headless:
            code = _run_headless(run, grace=SIGNAL_GRACE if cluster is not None else 0.0)
        else:
            code = _run_tui(run, config_path, compare, close_sinks)
    finally:
        close_sinks()
    if run.error is not None:
        from tuigpt.distributed import PeerLost

        if isinstance(run.error, PeerLost):
            saved = f"last.pt at iteration {trainer.iter_num} saved in {trainer.run_dir}: continue with --resume" \
                if trainer.last_checkpoint else "no checkpoint written"
            print(f"tuigpt: rank 0 stopped: {run.error}; {saved}", file=sys.stderr)
            return EXIT_PEER_LOST
        _report_unexpected(run.error, trainer.run_dir)
        return EXIT_ERROR
    if run.outcome is not None and run.outcome.reason in ("nan", "disk"):
        return EXIT_NAN if run.outcome.reason == "nan" else EXIT_DISK
    return code


def _attach_peak(trainer) -> None:  # noqa: ANN001
    from tuigpt.telemetry.peak import resolve_peak

    try:
        peak = resolve_peak(str(trainer.device), trainer.precision.name, trainer.threads)
    except Exception as exc:  # a failed calibration must not stop training; MFU then says n/a
        trainer.use_peak(None, f"no peak ({type(exc).__name__}: {exc})")
        return
    trainer.use_peak(peak.flops, peak.label)


def _start_telemetry(trainer):  # noqa: ANN001, ANN202
    if trainer.config.telemetry_interval <= 0:
        return None
    from tuigpt.telemetry.sampler import TelemetrySampler, default_samplers
    from tuigpt.telemetry.throttle import ThrottleDetector

    trainer.bus.subscribe(ThrottleDetector(trainer.bus.publish))
    sampler = TelemetrySampler(trainer.bus.publish, default_samplers(str(trainer.device)),
                               interval=trainer.config.telemetry_interval)
    sampler.start()
    return sampler


def _run_headless(run, grace: float = 0.0) -> int:  # noqa: ANN001
    import time

    from tuigpt.ui.headless import HeadlessPrinter

    run.subscribe(HeadlessPrinter())
    received: list[int] = []
    first_at: list[float] = []

    def on_signal(signum: int, _frame: object) -> None:
        if received and time.monotonic() - first_at[0] < grace:
            return  # under torchrun the same ctrl+c arrives from the terminal and from the launcher
        if received:  # a second signal while saving: leave now; checkpoints are atomic, nothing tears
            os._exit(128 + signum)
        received.append(signum)
        first_at.append(time.monotonic())
        print(f"\n{signal.Signals(signum).name}: stopping at the next iteration and writing last.pt "
              f"(send it again to exit at once)", file=sys.stderr, flush=True)
        from tuigpt.events import Stop

        run.send(Stop(save=True))

    _run_until_done(run, on_signal)
    return 128 + received[0] if received else EXIT_OK


def _run_until_done(run, on_signal: Callable[[int, object], None]) -> None:  # noqa: ANN001
    """Start the run and wait for it on the main thread (where signals arrive), with ``on_signal`` for
    SIGINT, SIGTERM and SIGHUP; the previous handlers come back afterwards."""
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        run.start()
        while not run.wait(0.25):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run_worker(run, rank: int) -> int:  # noqa: ANN001
    """A rank other than 0: trains silently; rank 0's broadcast commands (stop included) steer it, so a
    signal here only leaves at once when repeated after SIGNAL_GRACE. Prints one line on failure."""
    import time

    from tuigpt.distributed import PeerLost
    from tuigpt.events import Notice

    run.subscribe(lambda e: print(f"tuigpt rank {rank}: {e.message}", file=sys.stderr, flush=True)
                  if isinstance(e, Notice) and e.level == "error" else None)
    received: list[tuple[int, float]] = []

    def on_signal(signum: int, _frame: object) -> None:
        if received and time.monotonic() - received[0][1] >= SIGNAL_GRACE:
            os._exit(128 + signum)
        if not received:
            received.append((signum, time.monotonic()))

    _run_until_done(run, on_signal)
    if run.error is not None:
        if isinstance(run.error, PeerLost):
            print(f"tuigpt rank {rank} stopped: {run.error}", file=sys.stderr, flush=True)
            return EXIT_PEER_LOST
        print(f"tuigpt rank {rank}: unexpected error: {type(run.error).__name__}: {run.error} (traceback in "
              f"{run.trainer.run_dir / 'train.log'})", file=sys.stderr, flush=True)
        return EXIT_ERROR
    if run.outcome is not None and run.outcome.reason in ("nan", "disk"):
        return EXIT_NAN if run.outcome.reason == "nan" else EXIT_DISK
    return 128 + received[0][0] if received else EXIT_OK


def _run_tui(run, config_path: str | None, compare: str | None = None,  # noqa: ANN001
             close_sinks: Callable[[], None] = lambda: None) -> int:
    from tuigpt.ui.app import TuiGptApp

    app = TuiGptApp(run, config_path=config_path, compare=compare)
    previous = signal.signal(signal.SIGHUP, lambda signum, _frame: _hang_up(run, close_sinks))
    try:
        code = app.run()
    finally:
        signal.signal(signal.SIGHUP, previous)
    # the terminal is restored: leave the run's closing line where the user will look
    if app.outcome is not None:
        from tuigpt.ui.headless import HeadlessPrinter

        HeadlessPrinter()(app.outcome)
    elif not run.wait(0):
        print("tuigpt: left the monitor while the run was still stopping; last.pt may not be written",
              file=sys.stderr)
    return code if isinstance(code, int) else EXIT_OK


def _hang_up(run, close_sinks: Callable[[], None]) -> None:  # noqa: ANN001
    """The terminal is gone (SSH dropped without tmux): stop with a checkpoint and exit 129 without the UI.

    Nothing can be drawn or restored any more, so the monitor is left as it is: stdio is pointed at
    /dev/null, the run is stopped, and once it has saved, the sinks are closed and the process ends.
    """
    import threading

    from tuigpt.events import Stop

    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass
    run.send(Stop(save=True))

    def finish() -> None:
        run.wait()
        close_sinks()
        os._exit(128 + signal.SIGHUP)

    threading.Thread(target=finish, name="tuigpt-hangup", daemon=True).start()


def _report_unexpected(error: BaseException, run_dir: Path) -> None:
    log = run_dir / "train.log"
    print(f"tuigpt: unexpected error: {type(error).__name__}: {error} (full traceback in {log})", file=sys.stderr)


# ---------------------------------------------------------------- sample


def cmd_sample(args: list[str]) -> int:
    parser = _Parser(prog="tuigpt sample", description="Generate text from a tuigpt checkpoint.")
    parser.add_argument("checkpoint", help="a .pt file, e.g. checkpoints/<run_name>/best.pt")
    parser.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    parser.add_argument("--max_new_tokens", type=int, default=None, help="tokens to generate (default: the run's sample_max_new_tokens)")
    parser.add_argument("--temperature", type=float, default=None, help="softmax temperature > 0 (default: the run's)")
    parser.add_argument("--top_k", type=int, default=None, help="keep the k most likely tokens (default: the run's)")
    parser.add_argument("--seed", type=int, default=1337, help="random seed (default 1337)")
    parser.add_argument("--num_samples", type=int, default=1, help="how many samples (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps")
    ns = parser.parse_args(args)
    if ns.max_new_tokens is not None and ns.max_new_tokens < 1:
        raise UserError("--max_new_tokens must be a positive integer")
    if ns.temperature is not None and not ns.temperature > 0:
        raise UserError("--temperature must be above 0 (e.g. 0.8)")
    if ns.top_k is not None and ns.top_k < 1:
        raise UserError("--top_k must be a positive integer")
    if ns.num_samples < 1:
        raise UserError("--num_samples must be a positive integer")

    import torch

    from tuigpt.checkpoint import load_checkpoint
    from tuigpt.data import Tokenizer
    from tuigpt.device import resolve_device
    from tuigpt.model import GPT, ModelArgs

    state = load_checkpoint(ns.checkpoint)
    device = resolve_device(ns.device)
    tokenizer = Tokenizer.from_meta(state["tokenizer"])
    model = GPT(ModelArgs(**state["model_args"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint {ns.checkpoint} is damaged: its weights don't fit its model "
                        f"({str(exc).splitlines()[0][:100]})") from None
    model.to(device).eval()
    cfg = state["config"]
    ids = tokenizer.encode(ns.prompt) or [0]
    generator = torch.Generator(device=device).manual_seed(ns.seed)
    for n in range(ns.num_samples):
        out = model.generate(torch.tensor([ids], dtype=torch.long, device=device),
                             ns.max_new_tokens or cfg.get("sample_max_new_tokens", 200),
                             temperature=ns.temperature or cfg.get("sample_temperature", 0.8),
                             top_k=ns.top_k if ns.top_k is not None else cfg.get("sample_top_k"),
                             generator=generator)
        new_ids = [i for i in out[0].tolist() if i < tokenizer.vocab_size]
        if n:
            print("---------------")
        print(tokenizer.decode(new_ids))
    return EXIT_OK


# ---------------------------------------------------------------- machine info


def cmd_info(args: list[str]) -> int:
    parser = _Parser(prog="tuigpt info", description="Show this machine's CPU, GPUs, sensors and peak FLOP/s.")
    parser.add_argument("--no-measure", action="store_true", help="skip the ~2 s matmul calibration")
    ns = parser.parse_args(args)
    from tuigpt.telemetry.info import print_info

    return print_info(measure=not ns.no_measure)


def cmd_calibrate(args: list[str]) -> int:
    parser = _Parser(prog="tuigpt calibrate", description="Re-measure the matmul peak FLOP/s MFU is reported against.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    ns = parser.parse_args(args)
    from tuigpt.telemetry.info import calibrate

    return calibrate(threads=ns.threads)


def cmd_watch(args: list[str]) -> int:
    from tuigpt.watch import cmd_watch as watch_main

    return watch_main(args)


def cmd_runs(args: list[str]) -> int:
    from tuigpt.runs import cmd_runs as runs_main

    return runs_main(args)


def cmd_bench(args: list[str]) -> int:
    from tuigpt.bench import main as bench_main

    return bench_main(args)


def entry_point() -> None:
    """Console-script entry: unexpected errors get a short message, not a wall of traceback."""
    try:
        code = main()
    except Exception as exc:  # the run's own errors are logged in train.log by the trainer
        log = _crash_log(traceback.format_exc())
        print(f"tuigpt: unexpected error: {type(exc).__name__}: {exc} (traceback in {log})", file=sys.stderr)
        code = EXIT_ERROR
    sys.exit(code)


def _crash_log(tb: str) -> Path:
    from tuigpt.paths import cache_dir

    path = cache_dir() / "crash.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(tb)
    except OSError:
        pass
    return path
