"""A camera's pace: how far apart in scene time its frames come, when they come steadily.

A camera sending a frame every few seconds (time-lapse, a snapshot camera) is not a camera
whose frames were lost: its tracks must not restart at every frame against a gap limit
made for 30 fps, nor its tracks leave their zones between two of its frames. Both camera
actors (the tracker, the analytics) learn the pace alike, from the steps between frames
with consecutive seqs only: a step over frames shed because the worker was behind, or
dropped or rejected at the camera, is a loss, not the camera's pace (learned, an 8 fps
camera tracked at 0.2 fps would come to keep tracks across 15 s of traffic). And only a
steady pace counts: a camera sending bursts has none.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable

KEPT = 9  # the last steps learned
FROM = 3  # a pace from this many steps on
STEADY_SHARE = 2 / 3  # of the steps within half to one and a half of their median


class Pace:
    def __init__(self, steps: Iterable[float] = ()):
        self.steps: deque[float] = deque(steps, maxlen=KEPT)
        self._interval: tuple[float | None] | None = None  # interval() until the steps change: asked per track

    def learn(self, step: float, consecutive: bool) -> None:
        """The scene time from the last frame to this one; ``consecutive``: their seqs follow one another.

        A step well under the pace, frames lost or not, says the camera is no longer that slow: the pace is
        forgotten (kept, a camera that went from a frame every 40 s to 8 fps with frames shed would have kept
        its 40 s for ever, no step in a row coming to replace it)."""
        interval = self.interval()
        if interval is not None and 0 < step < 0.5 * interval:
            self.steps.clear()
            self._interval = None
        if consecutive and step > 0:
            self.steps.append(step)
            self._interval = None

    def interval(self) -> float | None:
        """The camera's usual step between frames, if it has learned a steady one; else None."""
        if self._interval is None:
            self._interval = (self._steady_median(),)
        return self._interval[0]

    def _steady_median(self) -> float | None:
        if len(self.steps) < FROM:
            return None
        median = statistics.median(self.steps)
        near = sum(1 for step in self.steps if 0.5 * median <= step <= 1.5 * median)
        return median if near >= STEADY_SHARE * len(self.steps) else None

    def at_least(self, seconds: float, intervals: float) -> float:
        """``seconds``, or ``intervals`` of the camera's pace if that is longer."""
        interval = self.interval()
        return max(seconds, intervals * interval) if interval else seconds
