"""A process of its own that stops a command's children when the command dies without stopping them.

``run``, ``replay --source``, ``bench`` and ``demo`` start an embedded broker and workers, each in a session
of its own (a Ctrl-C at the terminal reaches the command, which stops them in order). A command killed outright
(``kill -9``, the kernel's OOM killer) stopped nothing: its broker kept its port, each worker (some 760 MB) ran on
under init, and its work folder stayed in /tmp, for good (a trial of jobs side by side). A guard started with the
command's children watches the command; once it is gone, the guard stops them as the command would have
(workers first, then the broker; SIGTERM, SIGKILL after ``STOP_WAIT_S``) and removes the work folder it was
given. A command that stops normally stops its guard once it has stopped the children itself.

The children's pids are in a file the command appends to as it starts them (a line each, with its start time: a
pid reused by another process is let be), read when the command is gone: workers are added while a command runs.
Run as ``python -m its_faust.child_guard PID PIDS_FILE [FOLDER]``; it imports nothing of the project beyond this
module, so it costs a bare interpreter.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

CHECK_EVERY_S = 0.5
STOP_WAIT_S = 15.0


def started_at(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, from /proc); None when it is gone, or a zombie (ended, not yet
    reaped). With its pid it names a process: a pid is reused once its process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after the command name, which may hold ") "
    return None if fields[0] == "Z" else int(fields[19])


def alive(pid: int, since: int | None = None) -> bool:
    """Whether ``pid`` runs (and is the process that started at ``since``, when given)."""
    started = started_at(pid)
    return started is not None and (since is None or started == since)


def read_pids(pids_file: Path) -> list[tuple[int, int]]:
    """The children as (pid, start time), in the order they were started (a line half-written as the command died
    is left out)."""
    try:
        lines = pids_file.read_text().splitlines()
    except OSError:
        return []
    children = []
    for line in lines:
        fields = line.split()
        if len(fields) == 2 and all(f.isdigit() for f in fields):
            children.append((int(fields[0]), int(fields[1])))
    return children


def stop_all(children: list[tuple[int, int]], wait_s: float = STOP_WAIT_S) -> list[int]:
    """Each in turn, the last started first (workers before the broker they need to stop cleanly): SIGTERM, and
    SIGKILL if still there after ``wait_s``. A pid whose process is not the one started then (gone, its pid taken
    by another) is let be. Returns those that needed a SIGKILL."""
    killed = []
    for pid, since in reversed(children):
        if not alive(pid, since):
            continue
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while alive(pid, since) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid, since):
            _signal(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def guard(parent: int, pids_file: Path, folder: Path | None) -> None:
    # Reparented (to init, or a subreaper) once the parent is gone: a pid reused by then is not mistaken for it.
    while os.getppid() == parent and alive(parent):
        time.sleep(CHECK_EVERY_S)
    children = read_pids(pids_file)
    print(f"its-faust: the command (pid {parent}) is gone: stopping what it started (pids "
          f"{[pid for pid, _ in children]})", file=sys.stderr, flush=True)
    # Let go of the command's stderr: whoever read the command's output to its end (a script, a CI runner) waited
    # on it as long as the guard held it.
    sys.stderr = open(os.devnull, "w")
    os.close(2)
    stop_all(children)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class ChildGuard:
    """The command's side: a guard process, and the file its children's pids go in."""

    def __init__(self, pids_file: Path, folder: Path | None = None):
        self.pids_file = pids_file
        self.pids_file.write_text("")  # a work folder used again: its earlier run's pids are not this one's
        args = [sys.executable, "-m", "its_faust.child_guard", str(os.getpid()), str(pids_file)]
        self.proc = subprocess.Popen(args + ([str(folder)] if folder else []), start_new_session=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def watch(self, pid: int | None) -> None:
        """Stop ``pid`` (as it is now: its start time is noted) should the command die without doing so."""
        since = started_at(pid) if pid is not None else None
        if since is not None:
            with open(self.pids_file, "a") as out:
                out.write(f"{pid} {since}\n")

    def stop(self) -> None:
        """The command has stopped its children itself: the guard is not needed any more."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    guard(int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
