"""A camera whose tracks a gap in its frames restarted is told: its vehicles got new ids.

After a gap in scene time over ``tracker.max_gap_s`` the camera's tracker drops its tracks
(:mod:`tables.camera_tracker`): a live camera's frames shed while a worker was lost or joined,
a stream that was down, or a camera clock set back or forward. The ids counting on from there would
otherwise look like a fault in the tracking; the ``tracks_restarted`` camera event says why, at most one per camera every
``every_s``, since a camera sampled slower than the gap limit restarts at every frame; the restarts held back
meanwhile are counted in the next one told.
"""

from __future__ import annotations

import time

from its_faust.throttle import Throttle
from schemas import CameraEvent, CameraEventKind
from tables.camera_tracker import CameraTracker


class TrackRestarts:
    """A ``tracks_restarted`` camera event when a camera's tracker dropped its tracks after a gap, at most one per
    camera every ``every_s`` (a camera sampled slower than the gap limit restarts at every frame)."""

    def __init__(self, every_s: float = 60.0):
        self._throttle: Throttle[str] = Throttle(every_s)

    def report(self, tracker: CameraTracker, now: float) -> CameraEvent | None:
        if not tracker.afresh or not tracker.afresh[1]:
            return None
        times = self._throttle.hit(tracker.camera_id, now)
        if times is None:
            return None
        gap, dropped = tracker.afresh
        # Those held back are said by number: one event a minute read as one restart a minute, whether the
        # camera's tracks restarted once or at every frame (an overloaded worker shedding most of them).
        more = f"; {times - 1} restart{'s' if times > 2 else ''} before this one not told since the last report" if times > 1 else ""
        return CameraEvent(
            camera_id=tracker.camera_id, kind=CameraEventKind.tracks_restarted, at=time.time(), seq=tracker.last_seq,
            reason=f"{gap.said()} ({gap.causes()}), over the {tracker.afresh_limit_s:g} s limit: {dropped} tracks dropped, "
                   f"the vehicles in view get new ids{more}",
        )
