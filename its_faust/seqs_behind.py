"""Frames whose seq is not above their camera's last tracked one: redeliveries, or a producer gone back.

The tracker is idempotent by seq (a frame at or below the camera's ``last_seq`` was applied
already), so it skips such frames. Redeliveries after a worker restart or a rebalance are
that: the frames since the camera's last checkpoint and commit, a few seconds' worth at
most, so within ``redelivery_seqs`` of ``last_seq`` (ingest numbers one seq a frame read).
A producer that started its seqs again from a lower number (0, say, after a restart) sends
frames far below it, and none of them would be tracked, without a word. So a camera whose
frames keep coming that far below for longer than ``after_s`` (and more than ``min_frames``
of them, with no pause of over ``after_s`` between) is reported: a ``seqs_behind`` camera
event and a warning, then at most one per ``report_every_s`` while it goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from schemas import CameraEvent, CameraEventKind

log = logging.getLogger(__name__)


@dataclass
class _Behind:
    since: float  # when the camera's current run of skipped frames began
    last: float  # when the last of them came
    count: int = 0
    reported_at: float | None = None


class SeqsBehind:
    """Counts each camera's uninterrupted run of skipped frames; reports the ones that last."""

    def __init__(self, after_s: float = 5.0, min_frames: int = 50, report_every_s: float = 30.0,
                 redelivery_seqs: int = 1000):
        self.after_s, self.min_frames, self.report_every_s = after_s, min_frames, report_every_s
        self.redelivery_seqs = redelivery_seqs
        self._cameras: dict[str, _Behind] = {}

    def skipped(self, camera_id: str, seq: int, last_seq: int, now: float) -> CameraEvent | None:
        """A frame of the camera skipped; returns the camera's report when one is due."""
        if last_seq - seq <= self.redelivery_seqs:
            return None  # a redelivery, as far as anyone can tell
        camera = self._cameras.get(camera_id)
        if camera is None or now - camera.last > self.after_s:  # a new run of them, not the one before a pause
            camera = self._cameras[camera_id] = _Behind(since=now, last=now)
        camera.last = now
        camera.count += 1
        lasted = now - camera.since
        due = camera.reported_at is None or now - camera.reported_at >= self.report_every_s
        if lasted < self.after_s or camera.count < self.min_frames or not due:
            return None
        camera.reported_at = now
        reason = (f"{camera.count} frames in {lasted:.0f} s had seqs at or below the last tracked one ({last_seq}; "
                  f"this one: {seq}) and were not tracked: the camera's producer started its seqs again lower? "
                  "Each camera's seqs must keep increasing, across the producer's restarts too")
        log.warning("track: camera %s: %s", camera_id, reason)
        return CameraEvent(camera_id=camera_id, kind=CameraEventKind.seqs_behind, at=now, seq=seq, reason=reason)

    def applied(self, camera_id: str) -> None:
        """A frame of the camera was tracked: its run of skipped frames, if any, is over."""
        self._cameras.pop(camera_id, None)


__all__ = ["SeqsBehind"]
