"""One worker per data folder: a second one stops with one line instead of crashing on RocksDB's lock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from its_faust.data_dir import DataDirInUse, claim

HOLD = textwrap.dedent(
    """
    import sys, time
    from its_faust.data_dir import claim
    claim(sys.argv[1])
    print("claimed", flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def held_by_another_process(tmp_path):
    folder = tmp_path / "data"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        yield folder, holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_folder_held_by_another_worker_is_refused_with_its_pid(held_by_another_process):
    folder, pid = held_by_another_process
    with pytest.raises(DataDirInUse, match=rf"in use by another worker \(pid {pid}\).*ITS_FAUST_DATA_DIR"):
        claim(folder)


def test_a_folder_is_free_again_once_its_worker_is_gone(tmp_path):
    folder = tmp_path / "data"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "claimed"
    holder.kill()  # as a crash would: the system drops the lock
    holder.wait()
    claim(folder)
    claim(folder)  # the same process again: a no-op
    assert (folder / "worker.lock").read_text().strip() == str(os.getpid())


def test_a_second_worker_on_the_same_folder_stops_with_one_line(held_by_another_process):
    folder, pid = held_by_another_process
    env = {**os.environ, "ITS_FAUST_DATA_DIR": str(folder)}
    done = subprocess.run(
        [sys.executable, "-m", "its_faust.cli", "worker", "--broker", "kafka://127.0.0.1:9"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2  # as every other usage error
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("its-faust: error: data folder") and f"pid {pid}" in lines[0], done.stderr


def test_a_file_system_without_locks_is_warned_about_not_refused(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    def no_locks(handle, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level("WARNING"):
        claim(tmp_path / "nfs")
        claim(tmp_path / "nfs")  # and claimed once: the second call is the no-op it always was
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot lock data folder {(tmp_path / 'nfs').resolve()} (No locks available): a second worker on it is not refused"
    ]


def test_a_data_folder_that_cannot_be_one_is_a_clear_error_not_a_traceback(tmp_path):
    """A path that is a file, or a folder this user cannot write, ended in a Python traceback."""
    a_file = tmp_path / "notadir"
    a_file.write_text("")
    with pytest.raises(DataDirInUse, match=r"data folder .*notadir cannot hold this worker's tables \(.*\); ITS_FAUST_DATA_DIR"):
        claim(a_file)
    env = {**os.environ, "ITS_FAUST_DATA_DIR": str(a_file)}
    done = subprocess.run([sys.executable, "-m", "its_faust.cli", "worker", "--broker", "kafka://127.0.0.1:9"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().startswith("its-faust: error: data folder"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_data_folder_deleted_or_replaced_under_the_worker_is_noticed(tmp_path, monkeypatch):
    """Deleted under a running worker, the folder's lock went with it: a second worker claimed the path, the two
    wrote the same tables' files, and RocksDB refused them as corrupt at every start after (a trial)."""
    import shutil

    from its_faust import data_dir

    monkeypatch.setattr(data_dir, "_claimed", {})
    folder = tmp_path / "data"
    claim(folder)
    assert data_dir.lost() is None
    shutil.rmtree(folder)
    assert data_dir.lost() == f"data folder {folder.resolve()} was deleted under this worker (its worker.lock is gone)"
    folder.mkdir()
    (folder / "worker.lock").write_text("4242\n")  # another worker's claim on the path
    assert data_dir.lost() == f"data folder {folder.resolve()} was replaced under this worker (its worker.lock is another file)"
