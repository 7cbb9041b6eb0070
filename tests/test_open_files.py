"""A process's limit on open files: raised where the system allows, said where it does not."""

import resource
import subprocess
import sys


def _in_a_child(soft: int, hard: int, code: str) -> str:
    """``code`` run in a Python child under the limits (soft, hard): what it printed and logged."""
    script = (f"import logging, resource; logging.basicConfig(level=logging.INFO, format='%(message)s'); "
              f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard})); " + code)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_the_soft_limit_is_raised_to_the_hard_one_and_a_hard_one_too_low_is_said():
    """Under 64 or 128 a worker of 4 partitions stopped at start on RocksDB's 'Too many open files', under 1024 one of
    the production profile's 32 (a trial of resource limits)."""
    from its_faust.open_files import worker_needs

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = min(hard, 4096)
    raised = _in_a_child(64, hard, "from its_faust.open_files import raise_limit; print(raise_limit(300, 'a worker'))")
    assert raised.strip().splitlines()[-1] == str(hard) and "raise the limit" not in raised
    short = _in_a_child(64, 64, "from its_faust.open_files import raise_limit; print(raise_limit(768, 'a worker'))")
    assert "a worker may need about 768 open files and may have only 64: raise the limit (`ulimit -n 768`" in short
    assert worker_needs(4) >= 244 + 4 * 10 and worker_needs(32) > 32 * 54  # as measured: 244 at 4, ~54 a partition


def test_a_crash_for_want_of_open_files_says_what_to_do():
    from its_faust.open_files import hint

    problem = OSError("IO error: While open directory: .its-faust/v1/tables/camera-analytics-3.db: Too many open files")
    assert hint(problem).startswith(" (the limit on open files is ") and "ulimit -n" in hint(problem)
    assert hint(RuntimeError("a bug")) == "" and hint(None) == ""
