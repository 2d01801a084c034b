"""One run in this process: set it up, attach its sinks and a front end, and turn how it ended into an exit code.

With torchrun, rank 0 runs as a single process would (front end, metrics.jsonl, checkpoints, control socket)
and the other ranks train without output.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Callable, Sequence

from tuigpt.engine.distributed import Cluster, LaunchEnv, PeerLost, rank_device, start_cluster
from tuigpt.engine.netcheck import MIN_SECONDS, ROUNDS, NetcheckResult, measure
from tuigpt.engine.trainer import Trainer
from tuigpt.host.dashboards import open_dashboards
from tuigpt.host.local import LocalRun
from tuigpt.host.signals import SignalStop
from tuigpt.run.commands import Stop
from tuigpt.run.config import TrainConfig
from tuigpt.run.console import say
from tuigpt.run.errors import UserError
from tuigpt.run.events import Notice
from tuigpt.run.exits import EXIT_DISK, EXIT_ERROR, EXIT_OK, exit_code
from tuigpt.run.files import append_text
from tuigpt.run.lock import RunLock
from tuigpt.run.metrics_log import MetricsWriter, history_events, load_history, session_starts
from tuigpt.run.rundir import RunDir, modes
from tuigpt.run.runindex import remember_run

SIGNAL_GRACE = 5.0  # several ranks: a repeat of a signal this soon is torchrun forwarding it, not a second ask


class _PeerLostExit(Exception):
    """Rank 0 or a worker lost the process group: the process must end at once (see train_rank)."""


def train(config: TrainConfig, *, config_path: str | None, resume: bool, headless: bool,
          cluster: Cluster | None = None, compare: str | None = None, notices: Sequence[str] = ()) -> int:
    """Set the trainer up (bad input → UserError before anything starts), run it under a front end, and return
    the exit code. ``notices``: how the config file was read, shown with the run's own notices at its start."""
    if cluster is not None and cluster.rank != 0:
        trainer = Trainer(config, config_path=config_path, resume=resume, pause_on_trouble=not headless,
                          cluster=cluster)
        return _run_worker(LocalRun(trainer), cluster.rank)
    # rank 0 (or the only process) writes the run directory: its lock first, before anything there is touched,
    # held until every sink is closed
    dir_mode, file_mode = modes(config.share_with_group)
    lock: RunLock | None = None
    try:
        lock = RunLock.acquire(RunDir.of(config.out_dir, config.run_name).path, dir_mode)
        trainer = Trainer(config, config_path=config_path, resume=resume, pause_on_trouble=not headless,
                          cluster=cluster, lock=lock)
        trainer.pending_notices[:0] = notices  # published after RunStarted, so every front end and the log see them
        code = _train_locked(trainer, resume, headless, cluster, config_path, compare, file_mode)
    except BaseException:
        if lock is not None:  # a directory made by this start, still empty: a failed start leaves no trace
            lock.release(remove_dir=True)
        raise
    lock.release()
    return code


def _train_locked(trainer: Trainer, resume: bool, headless: bool, cluster: Cluster | None, config_path: str | None,
                  compare: str | None, file_mode: int) -> int:
    alert_command = _alert_command(trainer)  # a program that cannot run is a config error: before anything starts
    _attach_peak(trainer)
    try:
        writer = MetricsWriter(trainer.run_dir.metrics, trainer.config.log_interval,
                               resume_at=trainer.iter_num if resume else None, mode=file_mode,
                               on_failure=trainer.report_write_failure)
    except OSError as exc:
        raise UserError(f"cannot write {trainer.run_dir.metrics} ({exc.strerror or exc}): free disk space or fix "
                        f"the folder's permissions") from None
    run: LocalRun | None = None
    try:
        remember_run(trainer.run_dir.path)  # `tuigpt runs` and `tuigpt watch` find it from any directory
        records = load_history(trainer.run_dir.metrics) if resume else []
        run = LocalRun(trainer, history_events(records), session_starts(records))
        trainer.bus.subscribe(writer)
        # after the writer: a dashboard added on a resume copies the earlier sessions from metrics.jsonl
        dashboards, missing = open_dashboards(trainer.config, trainer.run_dir, trainer.bus, file_mode)
        trainer.pending_notices.extend(missing)
        telemetry = _start_telemetry(trainer)
        from tuigpt.control.server import ControlServer

        control = ControlServer(trainer.run_dir.path, trainer.send, trainer.bus.publish, trainer.bus.subscribe)
        control.start()  # `tuigpt watch` connects here; removed in close_sinks (and atexit)

        def close_sinks() -> None:
            control.stop()
            if telemetry is not None:
                telemetry.stop()
            if alert_command is not None:
                alert_command.close()  # the last alerts (the run's end) go out before the process does
            # once nothing publishes any more (a reading taken while they finished would be in metrics.jsonl alone),
            # and before metrics.jsonl closes, so a dashboard's last line is recorded too
            dashboards.close()
            writer.close()

        try:
            if headless:
                signalled = _run_headless(run, SIGNAL_GRACE if cluster is not None else 0.0, close_sinks)
            else:
                signalled = _run_tui(run, config_path, compare, close_sinks)
        finally:
            close_sinks()
    except BaseException:
        if run is None or not run.started:  # stopped before its run began: no half-made run folder is left
            writer.discard()
        raise
    if isinstance(run.error, PeerLost):
        saved = (f"last.pt at iteration {trainer.iter_num} saved in {trainer.run_dir}: continue with --resume"
                 if trainer.last_checkpoint else "no checkpoint written")
        say(f"tuigpt: rank 0 stopped: {run.error}; {saved}")
        raise _PeerLostExit
    if run.error is not None:
        say(f"tuigpt: unexpected error: {type(run.error).__name__}: {run.error} (full traceback in "
            f"{trainer.run_dir.train_log})")
        return EXIT_ERROR
    code = exit_code(run.ending, signalled)
    if writer.error is not None and code == EXIT_OK:  # the last records could not be made durable
        say(f"tuigpt: could not finish writing {writer.path} ({writer.error.strerror or writer.error}); the "
            f"checkpoint is intact")
        return EXIT_DISK
    return code


def join(config: TrainConfig, env: LaunchEnv) -> Cluster | None:
    """Join torchrun's group (None, said in one line, when the other ranks never came)."""
    try:
        return start_cluster(env, config.ddp_backend, rank_device(config.device, env), config.ddp_timeout)
    except PeerLost as exc:
        print(f"tuigpt: {exc}", file=sys.stderr)
        return None


def check_link(config: TrainConfig, cluster: Cluster, rounds: int = ROUNDS,
               seconds: float = MIN_SECONDS) -> NetcheckResult | None:
    """`tuigpt netcheck` on every rank; rank 0 prints the report and gets the result. A lost peer ends the
    process at once, as in training."""
    try:
        result = measure(config, cluster, rounds, seconds)
    except PeerLost as exc:
        print(f"tuigpt netcheck rank {cluster.rank} stopped: {exc}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(EXIT_ERROR)
    if result is not None:
        print("\n".join(result.lines()), flush=True)
    return result


def train_rank(config: TrainConfig, env: LaunchEnv, *, config_path: str | None, resume: bool,
               headless: bool, netcheck: bool = False, notices: Sequence[str] = ()) -> int:
    """One rank of a torchrun launch: join the group, (check the link,) train, leave. A lost group ends the
    process at once (the collectives' state is unknown, so nothing may wait on it at exit)."""
    cluster = join(config, env)
    if cluster is None:
        return EXIT_ERROR
    result = check_link(config, cluster) if netcheck else None
    try:
        code = train(config, config_path=config_path, resume=resume, headless=headless, cluster=cluster,
                     notices=[*notices, *([result.summary()] if result is not None else [])])
    except _PeerLostExit:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_ERROR)
    cluster.close()
    return code


def _attach_peak(trainer: Trainer) -> None:
    from tuigpt.engine.calibration import resolve_peak

    try:
        peak = resolve_peak(str(trainer.device), trainer.precision.name, trainer.threads)
    except Exception as exc:  # a failed calibration must not stop training; MFU then says n/a
        trainer.use_peak(None, f"no peak ({type(exc).__name__}: {exc})")
        return
    trainer.use_peak(peak.flops if peak else None, peak.label if peak else "no peak known",
                     peak.warning if peak else None)


def _alert_command(trainer: Trainer) -> Any:
    config = trainer.config
    if not config.alerts or not (config.alert_command or "").strip():
        return None
    from tuigpt.host.alerts import AlertCommand

    hook = AlertCommand(config.alert_command or "", trainer.bus.publish, config.run_name, str(trainer.run_dir))
    trainer.bus.subscribe(hook)
    return hook


def _start_telemetry(trainer: Trainer) -> Any:
    if trainer.config.telemetry_interval <= 0:
        return None
    from tuigpt.telemetry.contention import ContentionNotices
    from tuigpt.telemetry.poller import TelemetryPoller, default_readers
    from tuigpt.telemetry.throttle import ThrottleDetector

    trainer.bus.subscribe(ThrottleDetector(trainer.bus.publish))
    trainer.bus.subscribe(ContentionNotices(trainer.bus.publish))
    poller = TelemetryPoller(trainer.bus.publish, default_readers(str(trainer.device)),
                               interval=trainer.config.telemetry_interval)
    poller.start()
    return poller


def _wait(run: LocalRun) -> None:
    """Start the run and wait for it on the main thread, where signals arrive."""
    run.start()
    while not run.wait(0.25):
        pass


def _run_headless(run: LocalRun, grace: float, close_sinks: Callable[[], None]) -> int | None:
    from tuigpt.ui.headless import HeadlessPrinter
    from tuigpt.ui.line_output import BackgroundOutput

    output = BackgroundOutput(sys.stdout)  # a stopped terminal or an unread pipe must not stop training
    errors = BackgroundOutput(sys.stderr)  # ... nor a stop: the signal's notice never waits on an output
    run.subscribe(HeadlessPrinter(output))

    def stop(signum: int) -> None:
        run.send(Stop(save=True))  # first: nothing written can hold it up
        errors.write(f"\n{signal.Signals(signum).name}: stopping at the next iteration and writing last.pt (send it "
                     f"again to exit at once)\n")

    try:
        with SignalStop(stop, grace=grace) as signals:
            _wait(run)
    finally:
        close_sinks()  # their last notices are printed too
        output.close()
        errors.close()
    return signals.received


def _run_worker(run: LocalRun, rank: int) -> int:
    """A rank other than 0 trains silently; rank 0's broadcast commands (stop included) steer it, so a signal
    here only ends it when repeated after SIGNAL_GRACE. One line on failure."""
    run.subscribe(lambda e: print(f"tuigpt rank {rank}: {e.message}", file=sys.stderr, flush=True)
                  if isinstance(e, Notice) and e.level == "error" else None)
    with SignalStop(lambda signum: None, grace=SIGNAL_GRACE) as signals:
        _wait(run)
    if isinstance(run.error, PeerLost):
        print(f"tuigpt rank {rank} stopped: {run.error}", file=sys.stderr, flush=True)
        raise _PeerLostExit
    if run.error is not None:
        print(f"tuigpt rank {rank}: unexpected error: {type(run.error).__name__}: {run.error} (traceback in "
              f"{run.trainer.run_dir.train_log})", file=sys.stderr, flush=True)
        return EXIT_ERROR
    return exit_code(run.ending, signals.received)


def _run_tui(run: LocalRun, config_path: str | None, compare: str | None,
             close_sinks: Callable[[], None]) -> int | None:
    from tuigpt.ui.app import TuiGptApp
    from tuigpt.ui.headless import HeadlessPrinter

    app = TuiGptApp(run, config_path=config_path, compare=compare)

    def first(signum: int) -> None:
        if signum == signal.SIGHUP and not terminal_alive():
            _hang_up(run, close_sinks)
            return
        app.request_stop(signum)  # the monitor shows it, saves, and leaves when the run has stopped (restoring it)
        if signum == signal.SIGHUP:  # a hang-up the terminal survived (kill -HUP): watch it all the same
            threading.Thread(target=_hang_up_when_gone, args=(run, app, close_sinks), name="tuigpt-tty-watch",
                             daemon=True).start()

    with SignalStop(first, on_repeat=lambda signum: app.leave(128 + signum)) as signals:
        try:
            app.run()
        except Exception as exc:  # the monitor could not even run (a terminal it cannot drive, a Textual bug)
            app.crashed = exc
    if app.crashed is not None and not run.wait(0):
        return _without_monitor(run, app.crashed, signals.received, close_sinks)
    # the terminal is restored: leave the run's closing line where the user will look
    if app.outcome is not None:
        HeadlessPrinter()(app.outcome)
    elif not run.wait(0):
        print("tuigpt: left the monitor while the run was still stopping; last.pt may not be written",
              file=sys.stderr)
    return signals.received


def terminal_alive(fds: tuple[int, ...] = (0, 1)) -> bool:
    """Whether the terminal still answers: after a hang-up the kernel fails every terminal ioctl (EIO), while a
    SIGHUP sent by a person (kill -HUP) or a parent leaves it working, and it must then be restored, not dropped."""
    import termios

    for fd in fds:
        try:
            termios.tcgetattr(fd)
        except (termios.error, OSError, ValueError):
            return False
    return True


def _hang_up_when_gone(run: LocalRun, app: Any, close_sinks: Callable[[], None]) -> None:
    """After a SIGHUP with a live terminal the monitor stops as for SIGTERM; if the terminal goes meanwhile (the
    hang-up arrived just before the line dropped), fall back to the headless hang-up."""
    while app.is_running and not run.wait(0.5):
        if not terminal_alive():
            _hang_up(run, close_sinks)
            return


def _without_monitor(run: LocalRun, error: BaseException, signalled: int | None,
                     close_sinks: Callable[[], None]) -> int | None:
    """The monitor died while the run trains: say so, keep its traceback in train.log, and go on training with
    the headless lines and the same signal path (ctrl+c stops and saves) until the run ends."""
    import traceback

    log = run.trainer.run_dir.train_log
    append_text(log, "--- the monitor failed; training went on without it\n"
                + "".join(traceback.format_exception(type(error), error, error.__traceback__)), run.trainer.file_mode)
    print(f"tuigpt: the monitor failed ({type(error).__name__}: {error}); training goes on without it, one line "
          f"per log_interval (ctrl+c stops and saves last.pt; traceback in {log})", file=sys.stderr, flush=True)
    received = _run_headless(run, 0.0, close_sinks)
    return signalled if signalled is not None else received


def _hang_up(run: LocalRun, close_sinks: Callable[[], None]) -> None:
    """The terminal is gone (SSH dropped without tmux): stop with a checkpoint and exit 129 without the UI.

    Nothing can be drawn or restored any more, so the monitor is left as it is: stdio is pointed at /dev/null,
    the run is stopped, and once it has saved, the sinks are closed and the process ends.
    """
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
