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
limit would shed every frame; the report says so. A camera clock ahead would shed
none; :mod:`its_faust.clock_ahead` says so.

Shedding is reported per camera as a ``frames_shed`` camera event and a warning, at
most one per ``report_every_s``: the first shed frame at once, then the count since the
last report while shedding goes on (frames detected in between or not), and, once the
camera's frames have been fresh for a whole period, that they are, with what is left, so that a camera hovering
around the limit does not flood the topic or the log, nor is called fresh again between
two reports of shedding. What is left of a camera that sends no frame after its last shed one (it
stopped) is reported by the detect stage's timer (``overdue``) once a period has passed. A report
is dated by the last frame it counts, so that the minute it falls in is the minute they were shed
(the API's count history gives each minute its shed frames). The counts are this worker's: a shed frame that is redelivered
(a crash before its offset was committed) is counted again, and a count not yet reported
when the camera's partition moves to another worker is not reported.

While the detect stage is behind, each live camera gets a fair share of it (:mod:`its_faust.fair_share`):
a camera that had more detected lately than one whose frames went stale gives way, its frame shed too.

The track stage sheds too, a live frame's detections older than ``tracker.live_max_age_s``
(6 s) when it comes to them: on a machine whose cores cannot keep up with detection and
tracking both, detect took every frame fresh enough and tracking fell further behind for
ever (119 s after 18 minutes of a soak run). Shedding there costs the detections done,
but skipping a frame is far cheaper than tracking it, so tracking catches up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from its_faust.fair_share import FairShare
from schemas import CameraEvent, CameraEventKind
from schemas.base import CameraRecord

log = logging.getLogger(__name__)

STALE, GIVES_WAY = "stale", "gives way"  # why a frame is shed
PRESSURE = 0.5  # of the age limit: a frame older than this is behind enough to give way (its_faust.fair_share)


@dataclass
class _Shedding:
    reported_at: float  # when the camera's last report went out
    shed_at: float  # when its last frame was shed
    count: int = 0  # shed since the last report
    oldest_s: float = 0.0
    last_seq: int | None = None
    gave_way: int = 0  # of the count: fresh enough, shed to give way to cameras that got fewer (its_faust.fair_share)


class StaleFrames:
    """Decides which frames to shed and batches the reports about them, per camera."""

    def __init__(self, max_age_s: float, report_every_s: float = 10.0, stage: str = "detect",
                 behind: str = "detection is behind: a worker lost or joining, too few workers for the cameras",
                 fair_share: FairShare | None = None):
        self.max_age_s = max_age_s
        self.report_every_s = report_every_s
        self.stage, self.behind = stage, behind
        self.fair_share = fair_share
        self._cameras: dict[str, _Shedding] = {}

    def to_shed(self, frame: CameraRecord, now: float) -> str | None:
        """Why the frame is to be shed: STALE (over the age limit), GIVES_WAY (over PRESSURE of it, with a camera that
        got fewer frames waiting: :mod:`its_faust.fair_share`), or None: it is to be processed."""
        if self.max_age_s <= 0 or frame.scene_time is not None:
            return None
        age_s = now - frame.captured_at
        if age_s > self.max_age_s:
            return STALE
        if self.fair_share is not None and age_s > PRESSURE * self.max_age_s and self.fair_share.gives_way(frame.camera_id, now):
            return GIVES_WAY
        return None

    def shed(self, frame: CameraRecord, now: float, why: str = STALE) -> CameraEvent | None:
        """Count a frame as shed; returns the camera's report when one is due. A copy of one shed already (a
        redelivery, never applied, so not below the tracker's last seq) is not counted again."""
        camera = self._cameras.get(frame.camera_id)
        if camera is not None and camera.last_seq is not None and frame.seq <= camera.last_seq:
            return None
        first = camera is None
        if first:
            camera = self._cameras[frame.camera_id] = _Shedding(reported_at=now, shed_at=now)
        camera.shed_at = now
        camera.count += 1
        camera.gave_way += why == GIVES_WAY
        if why == STALE and self.fair_share is not None:  # (not a copy shed before: after a crash, catching up)
            self.fair_share.went_stale(frame.camera_id, now)
        camera.oldest_s = max(camera.oldest_s, now - frame.captured_at)
        camera.last_seq = frame.seq
        if first or now - camera.reported_at >= self.report_every_s:
            return self._report(frame.camera_id, camera, now, still_shedding=True)
        return None

    def fresh(self, frame: CameraRecord, now: float) -> CameraEvent | None:
        """A frame of the camera is detected. Once none has been shed for a whole period (and a period has passed
        since the last report), its frames are fresh again: the last report says so, with what is left to count.
        Before that, shedding goes on now and then, and ``shed`` reports it."""
        if self.fair_share is not None and frame.scene_time is None:
            self.fair_share.detected(frame.camera_id, now)
        camera = self._cameras.get(frame.camera_id)
        if camera is None or now - max(camera.reported_at, camera.shed_at) < self.report_every_s:
            return None
        del self._cameras[frame.camera_id]  # the next shed frame is reported at once
        return self._report(frame.camera_id, camera, now, still_shedding=False)

    def overdue(self, now: float) -> list[CameraEvent]:
        """The last reports of cameras with shed frames not reported and none shed for a whole period, whether
        or not a frame of theirs came since (one that stopped sends none to bring ``fresh``'s report)."""
        due = [c for c, camera in self._cameras.items()
               if camera.count and now - max(camera.reported_at, camera.shed_at) >= self.report_every_s]
        # One with nothing left to report and no frame for three periods (a running one's next frame would have
        # said it is fresh again) stopped after its last report: dropped unsaid, or the worker would hold every
        # camera that ever shed a frame.
        for c in [c for c, camera in self._cameras.items()
                  if not camera.count and now - max(camera.reported_at, camera.shed_at) >= 3 * self.report_every_s]:
            del self._cameras[c]
        return [self._report(c, self._cameras.pop(c), now, still_shedding=False, tail=f"none shed in the {self.report_every_s:g} s since") for c in due]

    def _report(self, camera_id: str, camera: _Shedding, now: float, *, still_shedding: bool,
                tail: str = "frames are fresh again") -> CameraEvent:
        if camera.count:
            stale = camera.count - camera.gave_way
            why = [f"over the {self.max_age_s:g} s limit ({self.behind}; or the camera's clock is behind the worker's)"]
            if camera.gave_way:  # (fresh enough: shed so that a camera that got fewer frames gets this slot)
                why = ([f"{stale} over the {self.max_age_s:g} s limit ({self.behind}; or the camera's clock is behind "
                        "the worker's)"] if stale else []) + [
                    f"{camera.gave_way} over {PRESSURE * self.max_age_s:g} s old, given way to cameras that got fewer "
                    "frames while detection was behind"]
            reason = (f"{camera.count} live frame(s) shed, up to {camera.oldest_s:.1f} s old, " + "; ".join(why)
                      + ("" if still_shedding else f"; {tail}"))
        else:  # every shed frame was in an earlier report
            reason = f"frames are fresh again: none shed for {self.report_every_s:g} s"
        log.warning("%s: camera %s: %s", self.stage, camera_id, reason)
        event = CameraEvent(
            camera_id=camera_id, kind=CameraEventKind.frames_shed, at=camera.shed_at if camera.count else now,
            seq=camera.last_seq, reason=reason, frames_shed=camera.count,
        )
        camera.reported_at, camera.count, camera.oldest_s, camera.gave_way = now, 0, 0.0, 0
        return event
