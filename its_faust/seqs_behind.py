"""Frames whose seq is not above their camera's last tracked one: redeliveries, or a producer gone back.

The tracker is idempotent by seq (a frame at or below the camera's ``last_seq`` was applied
already), so it skips such frames. Redeliveries after a worker restart or a rebalance are
that, and come as one short burst (the frames since the camera's last checkpoint), followed
by new frames. A producer that started its seqs again from a lower number (0, say, after a
restart) sends nothing but such frames, and none of them would be tracked, without a word.
So a camera whose frames have all been skipped for longer than ``after_s`` (and more than
``min_frames`` of them) is reported: a ``seqs_behind`` camera event and a warning, then at
most one per ``report_every_s`` while it goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from schemas import CameraEvent, CameraEventKind

log = logging.getLogger(__name__)


@dataclass
class _Behind:
    since: float  # when the camera's current run of skipped frames began
    count: int = 0
    reported_at: float | None = None


class SeqsBehind:
    """Counts each camera's uninterrupted run of skipped frames; reports the ones that last."""

    def __init__(self, after_s: float = 5.0, min_frames: int = 50, report_every_s: float = 30.0):
        self.after_s, self.min_frames, self.report_every_s = after_s, min_frames, report_every_s
        self._cameras: dict[str, _Behind] = {}

    def skipped(self, camera_id: str, seq: int, last_seq: int, now: float) -> CameraEvent | None:
        """A frame of the camera skipped; returns the camera's report when one is due."""
        camera = self._cameras.setdefault(camera_id, _Behind(since=now))
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
