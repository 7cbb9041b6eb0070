"""Alert snapshots: the frame each alert points at, drawn as the alert arrives and kept.

The API holds only the last ``frames_keep_s`` seconds of frames (6 s), so an alert's frame
would be gone within seconds of the alert, and
its ``snapshot`` link dead. When a raised alert arrives its frame is still held (the
frame was produced before the detections, tracks and analytics that led to the alert):
it is drawn then, with its tracks, lines and zones, and kept for the last ``keep`` alerts.
The alert's vehicles and zone are marked in red with what it is, and its message is written
at the top; the alerts raised on the same frame share its snapshot, each marked.

An alert that comes after its frame left the rings (the pipeline behind its camera by more than
``frames_keep_s``) has its snapshot read from the topics when it is asked for (:meth:`AlertSnapshots.fetch`).

The API reads each topic on its own, so an alert can arrive before the track record of its
frame (the record was written first, but fetched later): it is drawn at once, untracked, and
again with its boxes when that record arrives (within ``WAIT_FOR_TRACKS_S``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from aiokafka.errors import KafkaError

from api.topic_ring import Message, TopicRing
from api.live import AlertMarks, latest_pair, render_jpeg, seq_of
from its_faust.codecs import SchemaError
from its_faust.topic_reader import find_near
from schemas.analytics import Alert
from schemas.base import scene_clock

log = logging.getLogger(__name__)

# An alert older than this when it is read (an API process filling its rings at start) is not drawn:
# its frame is long gone from the rings, and looking for it costs time for nothing.
FRESH_S = 60.0
# How long an alert drawn before its frame's track record arrived waits for it.
WAIT_FOR_TRACKS_S = 30.0
# How long a snapshot that the topics did not hold either is not looked for again.
MISSING_S = 60.0
READ_WITHIN_S = 30.0  # a snapshot's reading from the topics, at most


class AlertSnapshots:
    def __init__(self, frames: TopicRing, tracks: TopicRing, cameras, keep: int = 500):
        self.frames, self.tracks, self.cameras, self.keep = frames, tracks, cameras, keep
        self._jpegs: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._marks: dict[tuple[str, int], AlertMarks] = {}
        self._untracked: OrderedDict[tuple[str, int], float] = OrderedDict()  # drawn without boxes: since when
        self._fetching: dict[tuple[str, int], asyncio.Future] = {}  # snapshots being read from the topics
        self._missing: OrderedDict[tuple[str, int], float] = OrderedDict()  # not in the topics either: since when
        self._reading = asyncio.Semaphore(1)

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
        if track_msg is None:
            self._untracked.setdefault(ref, time.monotonic())
        else:
            self._untracked.pop(ref, None)
        self._keep(ref, jpeg, marks)

    def _keep(self, ref: tuple[str, int], jpeg: bytes, marks: AlertMarks | None) -> None:
        """A snapshot drawn, kept among the last ``keep``."""
        self._jpegs[ref] = jpeg
        if marks is not None:
            self._marks[ref] = marks
        while len(self._jpegs) > self.keep:
            gone = self._jpegs.popitem(last=False)[0]
            self._untracked.pop(gone, None)
            self._marks.pop(gone, None)

    def get(self, camera_id: str, seq: int) -> bytes | None:
        return self._jpegs.get((camera_id, seq))

    async def fetch(self, alerts: list[Alert]) -> bytes | None:
        """The snapshot of ``alerts`` (those raised on one frame), read from the topics: its frame had left this
        process's rings when they came (the pipeline behind its camera by more than ``frames_keep_s``: half the
        snapshots of a file sent at its own pace were 404). Drawn, and kept as if drawn on arrival; None when
        the topics no longer hold the frame either (not asked again for ``MISSING_S``). One read at a time,
        and one per snapshot however many ask: each reads a partition of large records."""
        ref = (alerts[0].snapshot.camera_id, alerts[0].snapshot.seq)
        if ref in self._jpegs:
            return self._jpegs[ref]
        missing_since = self._missing.get(ref)
        if missing_since is not None and time.monotonic() - missing_since < MISSING_S:
            return None
        if ref not in self._fetching:
            self._fetching[ref] = asyncio.ensure_future(self._read_and_draw(ref, alerts))
            self._fetching[ref].add_done_callback(lambda _: self._fetching.pop(ref, None))
        return await asyncio.shield(self._fetching[ref])

    async def _read_and_draw(self, ref: tuple[str, int], alerts: list[Alert]) -> bytes | None:
        first, (key, seq) = alerts[0], (ref[0].encode(), ref[1])

        def of_seq(record) -> bool:
            return seq_of(Message(record.partition, record.offset, record.key or b"", record.value or b"", 0.0)) == seq

        async with self._reading:
            try:  # the frames' Kafka time is when the camera sent them; the tracks', the frame's scene time
                frame, track = await asyncio.wait_for(asyncio.gather(
                    find_near(self.frames.bootstrap, self.frames.topic, len(self.frames.partitions), key,
                              first.captured_at, of_seq),
                    find_near(self.tracks.bootstrap, self.tracks.topic, len(self.tracks.partitions), key,
                              scene_clock(first.captured_at, first.scene_time), of_seq)), READ_WITHIN_S)
            except (KafkaError, OSError, asyncio.TimeoutError) as exc:  # asked again, read again
                log.warning("api: the snapshot of %s seq %d could not be read from the topics (%r)", *ref, exc)
                return None
        if frame is None:
            self._missing[ref] = time.monotonic()
            while len(self._missing) > self.keep:
                self._missing.pop(next(iter(self._missing)))
            return None
        marks = AlertMarks()
        for alert in alerts:
            marks = marks.with_alert(alert)
        as_message = [None if r is None else Message(r.partition, r.offset, r.key or b"", r.value or b"", r.timestamp / 1000)
                      for r in (frame, track)]
        jpeg = await asyncio.to_thread(render_jpeg, *as_message, self.cameras.get(ref[0]), marks=marks)
        if jpeg is not None and track is not None:  # (without its boxes it is not kept: asked again, read again)
            self._keep(ref, jpeg, marks)
        return jpeg
