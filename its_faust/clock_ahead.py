"""A live camera whose frames are dated ahead of the worker's clock is told: its clock (or its host's) is off.

A live frame's age is the worker's clock minus its ``captured_at`` (:mod:`its_faust.stale_frames`).
A camera clock behind the worker's makes every frame look old, and the shedding reports say so. One
ahead makes every frame look young: none is ever shed, however far the pipeline falls behind, its
latency reads 0 (the metric floors it there) and its windows, alerts and speeds' times are dated ahead,
with nothing to say why (from a time trial: a camera a day ahead counted into tomorrow's windows).
The detect stage tells it here, as a ``clock_ahead`` camera event and a warning, at most once per
``every_s`` per camera. A frame cannot arrive before it was captured, so a frame dated ahead of the
worker's clock by over ``tolerance_s`` (more than the hosts' clocks can differ under NTP) is one.
Frames of files (with a ``scene_time``) are not judged: their ``captured_at`` is read ahead on purpose
(a file processed faster than real time).
"""

from __future__ import annotations

import logging

from its_faust.throttle import Throttle
from schemas import CameraEvent, CameraEventKind
from schemas.base import CameraRecord

log = logging.getLogger(__name__)


class ClockAhead:
    def __init__(self, tolerance_s: float = 2.0, every_s: float = 600.0, keep: int = 10_000):
        self.tolerance_s = tolerance_s
        self._throttle: Throttle[str] = Throttle(every_s, keep=keep)  # keep: any producer may invent cameras

    def check(self, frame: CameraRecord, now: float) -> CameraEvent | None:
        """The camera's ``clock_ahead`` event when ``frame`` is a live one dated ahead of ``now`` (the worker's
        clock) and one is due; else None."""
        ahead_s = frame.captured_at - now
        if frame.scene_time is not None or ahead_s <= self.tolerance_s:
            return None
        # (No count of the frames held back: told only at the next report, days later for a clock set right since.)
        if self._throttle.hit(frame.camera_id, now) is None:
            return None
        reason = (f"frames dated {ahead_s:.1f} s ahead of this worker's clock: the camera's clock (or its host's) "
                  "is ahead, or the worker's behind (NTP); none of its live frames can be judged stale, so none is "
                  "shed when the pipeline falls behind, and its latencies, windows and alerts are dated as far ahead")
        log.warning("detect: camera %s: %s", frame.camera_id, reason)
        return CameraEvent(camera_id=frame.camera_id, kind=CameraEventKind.clock_ahead, at=now, seq=frame.seq,
                           reason=reason)
