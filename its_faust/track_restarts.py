"""A camera whose tracks a gap in its frames restarted is told: its vehicles got new ids.

After a gap in scene time over ``tracker.max_gap_s`` the camera's tracker drops its tracks
(:mod:`tables.camera_tracker`): a live camera's frames shed while a worker was lost or joined,
a stream that was down, or a camera clock set back or forward. The ids counting on from there would
otherwise look like a fault in the tracking; the ``tracks_restarted`` camera event says why, at most one per camera every
``every_s``, since a camera sampled slower than the gap limit restarts at every frame; the restarts held back
meanwhile are counted in the next one told, or, when none comes (the restarts stopped, or the worker is
stopping), told by themselves (``overdue``, ``held_back``).
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
        gap, dropped = tracker.afresh
        restart = (tracker.last_seq, gap, dropped, tracker.afresh_limit_s)
        times = self._throttle.hit(tracker.camera_id, now, restart)
        if times is None:
            return None
        # Those held back are said by number: one event a minute read as one restart a minute, whether the
        # camera's tracks restarted once or at every frame (an overloaded worker shedding most of them).
        more = f"; {times - 1} restart{'s' if times > 2 else ''} before this one not told since the last report" if times > 1 else ""
        return self._event(tracker.camera_id, restart, more)

    def overdue(self, now: float) -> list[CameraEvent]:
        """The restarts held back for a whole period with none told since (they stopped): told now, the last
        one's gap named."""
        return [self._held_back(camera_id, times, restart) for camera_id, times, restart in self._throttle.overdue(now)]

    def held_back(self, now: float) -> list[CameraEvent]:
        """Every restart held back, whatever its period: a stopping worker's last word on its cameras."""
        return [self._held_back(camera_id, times, restart)
                for camera_id, times, restart in self._throttle.overdue(now, whole_period=False)]

    def _held_back(self, camera_id: str, times: int, restart: tuple) -> CameraEvent:
        return self._event(camera_id, restart,
                           f"; the last of {times} restart{'s' if times > 1 else ''} not told since the last report")

    @staticmethod
    def _event(camera_id: str, restart: tuple, more: str) -> CameraEvent:
        seq, gap, dropped, limit_s = restart
        return CameraEvent(
            camera_id=camera_id, kind=CameraEventKind.tracks_restarted, at=time.time(), seq=seq,
            reason=f"{gap.said()} ({gap.causes()}), over the {limit_s:g} s limit: {dropped} tracks dropped, "
                   f"the vehicles in view get new ids{more}",
        )
