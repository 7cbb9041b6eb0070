"""The guard that stops a command's children when the command dies without stopping them."""

import os
import signal
import subprocess
import sys
import time

from its_faust.child_guard import ChildGuard, alive, read_pids, started_at, stop_all


def test_children_are_stopped_last_started_first_one_that_ignores_sigterm_killed_and_a_pid_reused_let_be(tmp_path):
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
    assert stubborn.stdout.readline() == b"ready\n"
    polite, unrelated = subprocess.Popen(["sleep", "60"]), subprocess.Popen(["sleep", "60"])
    pids = tmp_path / "children.pids"
    guard = ChildGuard(pids)
    try:
        for child in (stubborn, polite):
            guard.watch(child.pid)
        guard.watch(99999999)  # gone already: not written
        with open(pids, "a") as out:
            # A child that ended, its pid since taken by another process: noted with the start time it had then.
            out.write(f"{unrelated.pid} {started_at(unrelated.pid) - 1}\n12")  # and a line half-written as it died
        children = read_pids(pids)
        assert [pid for pid, _ in children] == [stubborn.pid, polite.pid, unrelated.pid]
        assert read_pids(tmp_path / "none") == []
        assert stop_all(children, wait_s=0.5) == [stubborn.pid]
        assert stubborn.wait(5) == -9 and polite.wait(5) == -15 and unrelated.poll() is None
    finally:
        guard.stop()
        unrelated.kill()
        unrelated.wait()


def test_a_guard_stops_the_children_and_removes_the_folder_once_its_command_is_gone(tmp_path):
    """The command here is a process of the test's that starts a guard and a child, then exits (as a kill -9)."""
    folder = tmp_path / "work"
    folder.mkdir()
    command = subprocess.run([sys.executable, "-c", f"""
import subprocess, sys
from pathlib import Path
from its_faust.child_guard import ChildGuard
guard = ChildGuard(Path({str(folder / 'children.pids')!r}), Path({str(folder)!r}))
child = subprocess.Popen(["sleep", "60"], start_new_session=True)
guard.watch(child.pid)
print(child.pid, guard.proc.pid)
"""], capture_output=True, text=True, check=True)
    child, guard = (int(pid) for pid in command.stdout.split())
    deadline = time.monotonic() + 10
    while (alive(child) or alive(guard) or folder.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child) and not alive(guard) and not folder.exists()
    # (The guard kept the command's stderr: run() read it to its end, the guard's line with it.)
    assert f"is gone: stopping what it started (pids [{child}])" in command.stderr


def test_a_command_that_stops_normally_stops_its_guard_first(tmp_path):
    guard = ChildGuard(tmp_path / "children.pids", tmp_path)
    guard.watch(None)  # a child that never started
    assert guard.proc.poll() is None
    guard.stop()
    assert guard.proc.poll() is not None and tmp_path.exists()


def test_a_guard_lets_go_of_its_commands_output_before_it_stops_the_children(tmp_path):
    """Whoever read a killed command's output to its end (a script, a CI runner) waited as long as the guard took to
    stop the children: up to 15 s each."""
    folder = tmp_path / "work"
    folder.mkdir()
    started = time.monotonic()
    command = subprocess.run([sys.executable, "-c", f"""
import subprocess, sys
from pathlib import Path
from its_faust.child_guard import ChildGuard
guard = ChildGuard(Path({str(folder / 'children.pids')!r}), Path({str(folder)!r}))
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                          "time.sleep(60)"], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
guard.watch(child.pid)
print(child.pid, guard.proc.pid)
"""], capture_output=True, text=True, check=True, timeout=10)
    assert time.monotonic() - started < 8  # not the 15 s the guard gives the stubborn child
    child, guard = (int(pid) for pid in command.stdout.split())
    assert "is gone: stopping what it started" in command.stderr
    os.kill(child, signal.SIGKILL)  # (the test's own end of it)
    deadline = time.monotonic() + 10
    while (alive(guard) or folder.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(guard) and not folder.exists()
