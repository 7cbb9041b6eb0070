"""Run one Faust worker in this process, and start worker processes for others.

A worker loads the detector before it joins the consumer group, so the first
frames it takes are not held up by a model load; ``ready_file`` (if given) is
created once the worker has joined and restored its tables, and is its liveness
as well: touched every ``LIVENESS_TOUCH_S`` while the event loop runs and no partition
is stuck (:mod:`its_faust.watchdog`), removed while one is and when the worker
stops. A probe checks that it was touched within the last minute.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)
# A worker whose broker lost its tables' changelogs starts again (see run_worker), at most this many times in a row.
RESTARTS_FOR_LOST_LOGS = 3
RESTARTS_VARIABLE = "ITS_FAUST_RESTARTS_FOR_LOST_LOGS"
# How often a live worker touches its ready file (probes allow a minute: a loop blocked that long is wedged).
LIVENESS_TOUCH_S = 10.0


def run_worker(ready_file: Path | None = None) -> None:
    """Blocks until the worker is stopped (SIGINT/SIGTERM). Settings must name the broker."""
    import importlib
    import pkgutil

    import faust

    import agents
    from agents.detect import get_detector

    # Every stage's module imported here, so that a broken one stops the worker with its error: Faust's
    # autodiscovery would only warn of it, and the worker would run without that stage.
    for stage in pkgutil.iter_modules(agents.__path__):
        importlib.import_module(f"agents.{stage.name}")
    from its_faust.app import app, settings, stall_watchdog
    from its_faust.broker import wait_for_broker
    from its_faust.data_dir import claim
    from its_faust.open_files import hint, raise_limit, worker_needs

    claim(settings.data_dir)  # before anything slow: a second worker on the same folder stops with one line
    raise_limit(worker_needs(settings.partitions), "a worker holding all its partitions")
    if ready_file:
        # A container restarted in place keeps its /tmp: not ready again until it is (first: the wait below
        # may be long, and a probe must not take the old file for this start's).
        Path(ready_file).unlink(missing_ok=True)
    # One clear line if it never answers, not a traceback from inside Faust.
    wait_for_broker(settings.broker, settings.broker_wait_s)
    if ready_file:
        install_liveness(app, Path(ready_file), stall_watchdog)
    started = time.monotonic()
    get_detector()
    log.info("detector ready in %.1fs", time.monotonic() - started)

    class Worker(faust.Worker):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if not self.stdout.isatty():
                self.spinner = None  # its backspaces and cursor codes would land in log files

        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            loop_kind = type(asyncio.get_running_loop()).__module__.split(".")[0]  # uvloop or asyncio
            log.info("worker ready: %s partitions per topic, %s event loop", settings.partitions, loop_kind)
            os.environ[RESTARTS_VARIABLE] = "0"  # it started: a later loss of logs is a new one
            if ready_file:
                Path(ready_file).touch()

    # override_logging=False keeps the handlers set up by its_faust.logs (JSON lines when configured).
    try:
        Worker(app, loglevel=settings.log_level, quiet=True, override_logging=False).execute_from_commandline()
    finally:
        if ready_file:
            Path(ready_file).unlink(missing_ok=True)
        _start_again_if_the_broker_lost_the_changelogs(app.crash_reason, settings)
        if app.crash_reason:
            log.error("worker stopped: it crashed (%s)%s", app.crash_reason, hint(app.crash_reason))
        else:
            log.info("worker stopped")


def install_liveness(app, ready_file: Path, watchdog) -> None:
    """Keep ``ready_file`` fresh while this worker is well, once it is ready (the file is created then); while
    a partition is stuck, the file is gone: Kubernetes' liveness probe restarts the worker (compose marks it
    unhealthy). A rebalance that starts the partition again brings the file back."""
    ready = False

    @app.timer(interval=LIVENESS_TOUCH_S, name="liveness")
    async def _touch() -> None:
        nonlocal ready
        ready = ready or ready_file.exists()
        if not ready:
            return
        if watchdog.stuck:
            if ready_file.exists():
                log.error("worker stuck: %s did not move after a re-seek; removed %s (its liveness: an orchestrator "
                          "watching it restarts this worker)",
                          ", ".join(f"{tp.topic}[{tp.partition}]" for tp in watchdog.stuck), ready_file)
            ready_file.unlink(missing_ok=True)
        else:
            ready_file.touch()


def starts_again(crash_reason: BaseException | None, settings) -> bool:
    """Whether a worker stopping on ``crash_reason`` starts again in this process
    (:func:`_start_again_if_the_broker_lost_the_changelogs`): its stop is then no stop to report."""
    from faust.exceptions import ConsistencyError

    return (isinstance(crash_reason, ConsistencyError) and bool(settings.broker_url)
            and int(os.environ.get(RESTARTS_VARIABLE, "0")) < RESTARTS_FOR_LOST_LOGS)


def _start_again_if_the_broker_lost_the_changelogs(crash_reason: BaseException | None, settings) -> None:
    """A running worker whose broker lost its logs (an in-memory broker restarted under it) crashes in
    Faust's recovery with a ConsistencyError: its table copies applied offsets the new logs do not have.
    Such copies are dropped only before Faust starts (:mod:`tables.local_copies`), so the worker starts
    again, as the same command in this same process; a worker that keeps crashing so stops after a few.
    (The embedded broker's way of giving a log's end, its last batch's first offset + 1, made a rebalance's
    recovery fail the same way on a log that lost nothing; Faust's recovery now reads changelog ends from
    the log, its_faust.kafka_transport, and the start checks the copies in either case.)"""
    from faust.exceptions import ConsistencyError

    if not isinstance(crash_reason, ConsistencyError) or not settings.broker_url:  # an embedded broker is ours
        return
    restarts = int(os.environ.get(RESTARTS_VARIABLE, "0"))
    if not starts_again(crash_reason, settings):  # (tried RESTARTS_FOR_LOST_LOGS times)
        log.error("worker: the broker's changelogs still do not match this worker's tables after %d restarts; "
                  "stopping (delete %s to rebuild them from the broker)", restarts, settings.data_dir)
        return
    log.warning("worker: this worker's tables have applied changelog records beyond the end the broker gives (%s): "
                "the broker lost its logs (an in-memory broker restarted?); starting again, to check "
                "the tables against the logs (rebuilt if lost, kept if not)", crash_reason)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.environ[RESTARTS_VARIABLE] = str(restarts + 1)
    os.execv(sys.executable, sys.orig_argv)


def last_lines(path: Path | None, n: int) -> str:
    """A log's last ``n`` lines ("" when there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path else ""
    except OSError:
        return ""


class WorkerGone(RuntimeError):
    """A worker ended by itself (killed, crashed) before it was ready, or every worker of a run did while frames
    were still to be tracked."""


def how_it_ended(returncode: int) -> str:
    """``exited (status 1)``, ``was killed (SIGKILL) ...``: a process's end in words."""
    if returncode >= 0:
        return f"exited (status {returncode})"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    if -returncode == signal.SIGKILL:
        # What a worker killed for memory leaves: nothing in its log, a line in the kernel's.
        return f"was killed ({name}): out of memory? (the kernel's out-of-memory killer says so in `dmesg`)"
    return f"was ended by {name}"


class WorkerProcess:
    """A worker in a child process (``its-faust worker``), with its own data dir and log file."""

    def __init__(self, broker_url: str, workdir: Path, name: str, extra_env: dict[str, str] | None = None):
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ready_file = self.workdir / f"{name}.ready"
        self.log_path = self.workdir / f"{name}.log"
        self.env = {
            **os.environ,
            "ITS_FAUST_BROKER_URL": broker_url,
            "ITS_FAUST_DATA_DIR": str(self.workdir / f"{name}-data"),
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen | None = None
        self._ended_here = False  # stopped or killed by its owner: not an end to report

    def start(self) -> "WorkerProcess":
        self.ready_file.unlink(missing_ok=True)
        self._ended_here = False
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "its_faust.cli", "worker", "--ready-file", str(self.ready_file)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the parent, which stops workers in order
            )
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc is None or self.proc.poll() is not None:
                # What it said went wrong, not only its last lines (those of its stop), nor only the log's path: a
                # run's work folder, the log in it, is removed as the run ends (a trial under a process limit).
                ended = how_it_ended(self.proc.returncode) if self.proc is not None else "was not started"
                raise WorkerGone(f"worker {self.name} {ended} before it was ready; from its log:\n{self.said_wrong()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {self.name} not ready after {timeout:.0f}s; see {self.log_path}")
            time.sleep(0.1)

    def ended_by_itself(self) -> str | None:
        """How it ended (``how_it_ended``) when nobody here stopped it: a crash, a kill from outside (the kernel's
        out-of-memory killer leaves nothing in its log); None while it runs. A run had waited out its idle timeout,
        then said its workers logged no warning."""
        if self.proc is None or self._ended_here or self.proc.poll() is None:
            return None
        return how_it_ended(self.proc.returncode)

    def said_wrong(self, errors: int = 10, last: int = 10) -> str:
        """Its log's ERROR and CRITICAL lines (the last ``errors`` of them) and its last ``last`` lines."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        wrong = [line for line in lines[:-last] if " ERROR " in line or " CRITICAL " in line][-errors:]
        return "\n".join([*wrong, *(["..."] if wrong else []), *lines[-last:]])

    def tail(self, lines: int = 20) -> str:
        return last_lines(self.log_path, lines)

    def kill(self) -> None:
        """Hard kill (SIGKILL), as a crash would."""
        self._ended_here = True
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> None:
        self._ended_here = True
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
