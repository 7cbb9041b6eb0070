"""Live frames too old to matter are shed before detection, and the camera is told.

A live camera does not wait for the pipeline. When detection falls behind (a
worker restarting, too many cameras for the hardware, a burst), frames queue in
Kafka and every result comes later than the one before. For a live source only
the present matters, so the detection stage sheds a frame that is older than
``model.live_frame_max_age_s`` when it reaches it, instead of detecting it, and
the pipeline catches up with the present. The tracker sees a gap in the camera's
frames, as it would for a dropped frame.

Live frames are the ones without a ``scene_time`` (see :class:`schemas.CameraRecord`).
Frames of a file carry one and are never shed: a file is processed whole, at
whatever speed the pipeline has.

A frame's age is the worker's clock minus the camera's ``captured_at``, so camera
hosts and workers must keep their clocks in sync (NTP). A skew larger than the
limit would shed every frame; the report says so.

Shedding is reported per camera as a ``frames_shed`` camera event and a warning:
the first shed frame of a burst at once, then at most one report per
``report_every_s`` while it goes on, and a last one with the remaining count when
the camera's frames are fresh again, so the reports add up to every frame shed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from schemas import CameraEvent, CameraEventKind, FrameRecord

log = logging.getLogger(__name__)


@dataclass
class _Burst:
    reported_at: float  # when the last report went out
    count: int = 0  # shed since then
    oldest_s: float = 0.0
    last_seq: int | None = None


class StaleFrames:
    """Decides which frames to shed and batches the reports about them, per camera."""

    def __init__(self, max_age_s: float, report_every_s: float = 10.0):
        self.max_age_s = max_age_s
        self.report_every_s = report_every_s
        self._bursts: dict[str, _Burst] = {}
        self.shed_total = 0

    def is_stale(self, frame: FrameRecord, now: float) -> bool:
        return self.max_age_s > 0 and frame.scene_time is None and now - frame.captured_at > self.max_age_s

    def shed(self, frame: FrameRecord, now: float) -> CameraEvent | None:
        """Count a frame as shed; returns the camera's report when one is due."""
        self.shed_total += 1
        burst = self._bursts.get(frame.camera_id)
        first = burst is None
        if first:
            burst = self._bursts[frame.camera_id] = _Burst(reported_at=now)
        burst.count += 1
        burst.oldest_s = max(burst.oldest_s, now - frame.captured_at)
        burst.last_seq = frame.seq
        if first or now - burst.reported_at >= self.report_every_s:
            return self._report(frame.camera_id, burst, now, still_shedding=True)
        return None

    def fresh(self, frame: FrameRecord, now: float) -> CameraEvent | None:
        """A frame of the camera is detected again: ends its burst, with a report of what is not reported yet."""
        burst = self._bursts.pop(frame.camera_id, None)
        if burst is None or burst.count == 0:
            return None
        return self._report(frame.camera_id, burst, now, still_shedding=False)

    def _report(self, camera_id: str, burst: _Burst, now: float, *, still_shedding: bool) -> CameraEvent:
        reason = (
            f"{burst.count} live frame(s) shed, up to {burst.oldest_s:.1f} s old, over the {self.max_age_s:g} s limit "
            "(detection is behind, or the camera's clock is ahead of the worker's)"
            + ("" if still_shedding else "; frames are fresh again")
        )
        log.warning("detect: camera %s: %s", camera_id, reason)
        event = CameraEvent(
            camera_id=camera_id, kind=CameraEventKind.frames_shed, at=now, seq=burst.last_seq, reason=reason,
            frames_shed=burst.count,
        )
        burst.reported_at, burst.count, burst.oldest_s = now, 0, 0.0
        return event
