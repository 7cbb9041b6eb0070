"""A break between two of a camera's frames, and what it says about the camera: stopped, or its clock moved.

The tracker restarts a camera's tracks after one, and the analytics actor closes the camera after a long one
(:mod:`tables.camera_tracker`, :mod:`tables.camera_analytics`); both say why in words. A break on the camera's
clock is a silence, unless its live frames reached the worker about as close together as ever: then it was the
clock that moved. A live frame older than ``tracker.live_max_age_s`` (6 s) on reaching tracking is shed, so a
frame captured S s after one that arrived within that limit arrives at least S - 6 s after it, unless the camera's
clock says otherwise (:func:`arrival_gap`; with no limit, or a camera clock ahead, never shed, it cannot tell).
A clock set right by an hour read as "3600 s since its last frame (the camera stopped and started again ...)" on
a camera that never stopped (from a time trial).
"""

from __future__ import annotations

from dataclasses import dataclass

# How much more the camera's clock must have moved than the frames' arrival to be called a clock that moved: far
# over what a live backlog can hold (frames over 6 s old are shed before tracking).
CLOCK_MOVED_OVER_S = 60.0


def arrival_gap(last_at: float | None, last_arrived: float | None, arrived: float | None, max_lag_s: float) -> float | None:
    """Between two live frames' arrivals (``last_at``: the first's capture time), where that tells anything: the
    first arrived within ``max_lag_s`` of its capture (the stage's shedding limit; 0: none), so a later frame
    captured S s after it arrived at least S - ``max_lag_s`` s after it. Else None: with no limit, or a camera clock
    ahead (never shed), a backlog of any length could bring two frames a silence apart back to back."""
    if None in (last_at, last_arrived, arrived) or max_lag_s <= 0 or not 0 <= last_arrived - last_at <= max_lag_s:
        return None
    return arrived - last_arrived


@dataclass(frozen=True)
class Gap:
    scene_s: float  # between the two frames on the camera's clock; below 0: it went back
    arrived_s: float | None = None  # between their arrivals at the worker (None: not known; see arrival_gap)
    live: bool = True  # a live camera's frames; else a file's (scene times), which come as fast as they are read
    in_a_row: bool = False  # the two frames' seqs follow one another: nothing between them was lost

    @property
    def clock_moved(self) -> bool:
        if not self.live:
            return False
        return self.scene_s < 0 or (self.arrived_s is not None and self.scene_s - self.arrived_s > CLOCK_MOVED_OVER_S)

    def said(self) -> str:
        if self.scene_s < 0:
            back = f"{-self.scene_s:.1f} s"
            return f"its clock went back {back}" if self.live else f"its scene time went back {back}"
        if self.clock_moved:
            return f"its clock went forward {self.scene_s:.1f} s (its frames came {self.arrived_s:.1f} s apart)"
        # (2.004 s said as "2.0 s", or "2.00 s", read as no gap at all beside a 2 s limit)
        return f"{self.scene_s:.3f} s since its last frame" if self.scene_s < 10 else f"{self.scene_s:.1f} s since its last frame"

    def causes(self) -> str:
        if self.clock_moved:
            return "the camera's or its host's clock was set " + ("back" if self.scene_s < 0 else "forward")
        if self.scene_s < 0:
            return "a new run of a file, or a recording, that starts before the last one's scene time"
        if self.in_a_row:  # no frame lost between them: a camera this slow, or one that paused
            return ("a camera whose frames come this far apart (judged by its own pace once it has sent four in a row "
                    "steadily), or one that stopped and started again")
        # Frames between them lost: most often shed, tracking being behind (a trial: every restart of 163).
        return "frames shed, the camera stopped and started again, the stream lost, or a worker lost or joining"
