import os
import subprocess
import sys
import time

import pytest

from its_faust.bench import cpu_budget
from its_faust.cpu_use import CpuMeter


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_per_frame_is_counted_by_process_and_a_vanished_process_is_left_out():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        meter = CpuMeter({"me": os.getpid(), "child": child.pid})
        _spin(0.2)
        child.kill()
        child.wait()
        meter.stop()
    finally:
        child.kill()
    figures = meter.per_frame(10)
    assert set(figures) == {"me", "total"}  # the child is gone: no figure rather than a guess
    assert 15 <= figures["me"] <= 40  # 0.2 s of CPU over 10 frames is 20 ms each
    assert figures["total"] == figures["me"]
    assert 0 < meter.cores_busy <= os.cpu_count()  # the spin over the wall time (low when other processes took the cores)
    assert meter.per_frame(0) == {}


def test_a_process_gone_before_the_start_is_left_out():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    meter = CpuMeter({"gone": child.pid, "me": os.getpid()}).stop()
    assert set(meter.per_frame(1)) == {"me", "total"}


def test_cpu_budget_splits_inference_from_the_rest():
    budget = cpu_budget({"total": 70.0}, ceiling_fps=40.0, cores=2)
    assert budget == {"pipeline": 70.0, "inference_at_ceiling": 50.0, "not_inference": 20.0,
                      "ratio_bound_when_cores_are_full": pytest.approx(0.71)}
    assert cpu_budget({}, 40.0) == {}


def test_what_other_processes_took_meanwhile_is_counted_apart():
    other = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"])
    try:
        meter = CpuMeter({"me": os.getpid()})
        other.wait(timeout=30)
        meter.stop()
    finally:
        other.kill()
    # The other process spun for 0.5 s of CPU inside the measured time; none of it is ours.
    assert meter.cores_busy_elsewhere * meter.wall_s >= 0.3
    assert meter.cores_busy * meter.wall_s < 0.3
    assert meter.cores_stolen >= 0.0


def test_when_a_measured_process_dies_nothing_is_claimed_for_the_rest_of_the_machine():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        meter = CpuMeter({"me": os.getpid(), "child": child.pid})
        child.kill()
        child.wait()
        meter.stop()
    finally:
        child.kill()
    assert meter.cores_busy_elsewhere is None  # the dead child's CPU would have counted as elsewhere
