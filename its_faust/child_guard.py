"""A process of its own that stops a command's children when the command dies without stopping them.

``run``, ``replay --source``, ``bench`` and ``demo`` start an embedded broker and workers, each in a session
of its own (a Ctrl-C at the terminal reaches the command, which stops them in order). A command killed outright
(``kill -9``, the kernel's OOM killer) stopped nothing: its broker kept its port, each worker (some 760 MB) ran on
under init, and its work folder stayed in /tmp, for good (a trial of jobs side by side). A guard started with the
command's children watches the command; once it is gone, the guard stops them as the command would have
(workers first, then the broker; SIGTERM, SIGKILL after ``STOP_WAIT_S``) and removes the work folder it was
given. A command that stops normally stops its guard first.

The children's pids are in a file the command appends to as it starts them (one per line), read when the
command is gone: workers are added while a command runs. Run as ``python -m its_faust.child_guard PID PIDS_FILE
[FOLDER]``; it imports nothing of the project beyond this module, so it costs a bare interpreter.
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


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended and not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: taken as running
    return stat[stat.rfind(")") + 2:][:1] != "Z"  # the state follows the command name, which may hold ") "


def read_pids(pids_file: Path) -> list[int]:
    """The children, in the order they were started (a line half-written as the command died is left out)."""
    try:
        lines = pids_file.read_text().splitlines()
    except OSError:
        return []
    return [int(line) for line in lines if line.strip().isdigit()]


def stop_all(pids: list[int], wait_s: float = STOP_WAIT_S) -> list[int]:
    """SIGTERM to each, the last started first (workers before the broker they need to stop cleanly); SIGKILL
    to those still there after ``wait_s``; returns those that needed it."""
    for pid in reversed(pids):
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    killed = [pid for pid in pids if alive(pid)]
    for pid in killed:
        _signal(pid, signal.SIGKILL)
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
    pids = read_pids(pids_file)
    print(f"its-faust: the command (pid {parent}) is gone: stopping what it started (pids {pids})", file=sys.stderr)
    stop_all(pids)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class ChildGuard:
    """The command's side: a guard process, and the file its children's pids go in."""

    def __init__(self, pids_file: Path, folder: Path | None = None):
        self.pids_file = pids_file
        self.pids_file.touch()
        args = [sys.executable, "-m", "its_faust.child_guard", str(os.getpid()), str(pids_file)]
        self.proc = subprocess.Popen(args + ([str(folder)] if folder else []), start_new_session=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def watch(self, pid: int | None) -> None:
        if pid is not None:
            with open(self.pids_file, "a") as out:
                out.write(f"{pid}\n")

    def stop(self) -> None:
        """The command stops its children itself: the guard goes first."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    guard(int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
