"""Alert snapshots: the frame each alert points at, drawn as the alert arrives and kept.

The API holds only the last ``frames_keep_s`` seconds of frames (6 s), so an alert's frame
would be gone within seconds of the alert, and
its ``snapshot`` link dead. When a raised alert arrives its frame is still held (the
frame was produced before the detections, tracks and analytics that led to the alert):
it is drawn then, with its tracks, lines and zones, and kept for the last ``keep`` alerts.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from api.hub import Message, TopicRing
from api.live import annotated_jpeg
from its_faust.codecs import SchemaError, decode
from schemas.analytics import Alert

# An alert older than this when it is read (an API process filling its rings at start) is not drawn:
# its frame is long gone from the rings, and looking for it costs time for nothing.
FRESH_S = 60.0


class AlertSnapshots:
    def __init__(self, frames: TopicRing, tracks: TopicRing, cameras, keep: int = 500):
        self.frames, self.tracks, self.cameras, self.keep = frames, tracks, cameras, keep
        self._jpegs: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def apply(self, m: Message) -> None:
        try:
            alert = decode(Alert, m.value)
        except SchemaError:
            return
        ref = (alert.snapshot.camera_id, alert.snapshot.seq)
        if alert.state != "raised" or ref in self._jpegs or time.time() - alert.captured_at > FRESH_S:
            return
        jpeg = annotated_jpeg(self.frames, self.tracks, ref[0], self.cameras.get(ref[0]), ref[1])
        if jpeg is None:
            return  # the frame is not held (a camera far ahead of this process's rings): no snapshot
        self._jpegs[ref] = jpeg
        while len(self._jpegs) > self.keep:
            self._jpegs.popitem(last=False)

    def get(self, camera_id: str, seq: int) -> bytes | None:
        return self._jpegs.get((camera_id, seq))
