"""Alert snapshots: the frame each alert points at, drawn as the alert arrives and kept.

The API holds only the last ``frames_keep_s`` seconds of frames (6 s), so an alert's frame
would be gone within seconds of the alert, and
its ``snapshot`` link dead. When a raised alert arrives its frame is still held (the
frame was produced before the detections, tracks and analytics that led to the alert):
it is drawn then, with its tracks, lines and zones, and kept for the last ``keep`` alerts.
The alert's vehicles and zone are marked in red with what it is, and its message is written
at the top; the alerts raised on the same frame share its snapshot, each marked.

The API reads each topic on its own, so an alert can arrive before the track record of its
frame (the record was written first, but fetched later): it is drawn at once, untracked, and
again with its boxes when that record arrives (within ``WAIT_FOR_TRACKS_S``).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from api.hub import Message, TopicRing
from api.live import AlertMarks, latest_pair, render_jpeg, seq_of
from its_faust.codecs import SchemaError
from schemas.analytics import Alert

# An alert older than this when it is read (an API process filling its rings at start) is not drawn:
# its frame is long gone from the rings, and looking for it costs time for nothing.
FRESH_S = 60.0
# How long an alert drawn before its frame's track record arrived waits for it.
WAIT_FOR_TRACKS_S = 30.0


class AlertSnapshots:
    def __init__(self, frames: TopicRing, tracks: TopicRing, cameras, keep: int = 500):
        self.frames, self.tracks, self.cameras, self.keep = frames, tracks, cameras, keep
        self._jpegs: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._marks: dict[tuple[str, int], AlertMarks] = {}
        self._untracked: OrderedDict[tuple[str, int], float] = OrderedDict()  # drawn without boxes: since when

    def apply(self, m: Message) -> None:
        try:
            alert = m.decoded(Alert)
        except SchemaError:
            return
        ref = (alert.snapshot.camera_id, alert.snapshot.seq)
        if alert.state != "raised" or time.time() - alert.captured_at > FRESH_S:
            return
        marks = self._marks.get(ref, AlertMarks()).with_alert(alert)
        if ref in self._jpegs and marks == self._marks.get(ref):
            return  # this alert again (a redelivery): drawn already
        self._draw(ref, marks)

    def track_arrived(self, m: Message) -> None:
        """A track record: if an alert's frame was drawn before it came, draw that frame again, with it."""
        if not self._untracked:
            return
        now = time.monotonic()
        while self._untracked and now - next(iter(self._untracked.values())) > WAIT_FOR_TRACKS_S:
            self._untracked.popitem(last=False)
        ref = (m.key.decode(errors="replace"), seq_of(m)) if m.key else None
        if ref in self._untracked:
            self._draw(ref)

    def _draw(self, ref: tuple[str, int], marks: AlertMarks | None = None) -> None:
        """Draw the frame with ``marks`` (default: those it was drawn with); kept only if it could be drawn."""
        marks = marks or self._marks.get(ref)
        frame_msg, track_msg = latest_pair(self.frames, self.tracks, *ref)
        jpeg = render_jpeg(frame_msg, track_msg, self.cameras.get(ref[0]), marks=marks)
        if jpeg is None:
            return  # the frame is not held (a camera far ahead of this process's rings): no snapshot
        self._jpegs[ref] = jpeg
        if marks is not None:
            self._marks[ref] = marks
        if track_msg is None:
            self._untracked.setdefault(ref, time.monotonic())
        else:
            self._untracked.pop(ref, None)
        while len(self._jpegs) > self.keep:
            gone = self._jpegs.popitem(last=False)[0]
            self._untracked.pop(gone, None)
            self._marks.pop(gone, None)

    def get(self, camera_id: str, seq: int) -> bytes | None:
        return self._jpegs.get((camera_id, seq))
