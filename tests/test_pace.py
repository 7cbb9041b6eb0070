"""A camera's pace (tables/pace.py): a time-lapse camera is no camera losing frames (the actors: test_tracker_state,
test_speed_zones_incidents)."""

from __future__ import annotations

import pytest

from tables.pace import Pace


def test_a_pace_is_learned_from_steady_steps_between_consecutive_frames_only():
    pace = Pace()
    for _ in range(2):
        pace.learn(4.0, consecutive=True)
    assert pace.interval() is None  # three steps first
    pace.learn(4.2, consecutive=True)
    assert pace.interval() == pytest.approx(4.0) and pace.at_least(2.0, 3) == pytest.approx(12.0)
    assert pace.at_least(20.0, 3) == 20.0

    shed = Pace()  # an 8 fps camera on a worker that keeps up with one frame in forty: seqs in between lost
    for _ in range(9):
        shed.learn(5.0, consecutive=False)
    assert shed.interval() is None and shed.at_least(2.0, 3) == 2.0

    bursts = Pace()  # two frames together every 30 s: no pace of its own
    for step in (0.03, 30.0) * 5:
        bursts.learn(step, consecutive=True)
    assert bursts.interval() is None


def test_a_camera_that_is_no_longer_slow_loses_its_pace_even_while_its_frames_are_shed():
    """A camera that went from a frame every 40 s to 8 fps, frames shed, kept its 40 s: no step in a row came."""
    pace = Pace([40.0] * 9)
    assert pace.interval() == 40.0
    pace.learn(5.0, consecutive=False)  # far under it, and frames lost between: not learned, but it says enough
    assert pace.interval() is None and pace.at_least(2.0, 3) == 2.0
    assert not pace.steps
