"""The live view: a camera's latest frame with its tracks, counting lines and zones drawn on it (OpenCV).

Frames and tracks come from the API's rings of ``its.frames`` and
``its.tracks``; a frame is drawn with the track record of the same seq (tracks
lag frames by the pipeline's latency, so the view is that much behind live).
Drawn with OpenCV's own Hershey font: nothing is downloaded.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import cv2
import numpy as np

from api.topic_ring import Message, TopicRing
from its_faust.codecs import SchemaError, decode
from schemas import FrameRecord, TrackRecord
from schemas.analytics import Alert
from schemas.control import CameraConfig
from schemas.geometry import MAX_PIXEL

_SEQ = re.compile(rb'"seq":\s*(\d+)')
# One colour per class (BGR).
COLOURS = {"car": (80, 200, 255), "truck": (60, 120, 255), "bus": (200, 120, 40), "motorcycle": (200, 60, 200),
           "bicycle": (60, 200, 60), "person": (230, 230, 230)}
# What an alert points at, drawn over everything else (BGR red).
ALERT_COLOUR = (40, 40, 230)


@dataclass(frozen=True)
class AlertMarks:
    """What the alerts raised on one frame point at: their vehicles and zones, and what each alert says."""

    tracks: dict[int, str] = field(default_factory=dict)  # track id -> the alert's kind, as words
    zones: dict[str, str] = field(default_factory=dict)
    messages: tuple[str, ...] = ()

    def with_alert(self, alert: Alert) -> AlertMarks:
        kind = alert.kind.replace("_", " ")
        return AlertMarks(
            tracks={**self.tracks, **{t: kind for t in alert.track_ids}},
            zones={**self.zones, **({alert.zone: kind} if alert.zone else {})},
            messages=self.messages if alert.message in self.messages else (*self.messages, alert.message),
        )


def seq_of(m: Message) -> int | None:
    found = _SEQ.search(m.value[:400])
    return int(found.group(1)) if found else None


def _find(ring: TopicRing, partition: int, key: bytes, seq: int | None, scan: int) -> Message | None:
    for m in reversed(ring.latest(partition, scan)):
        if m.key == key and (seq is None or seq_of(m) == seq):
            return m
    return None


def latest_pair(frames: TopicRing, tracks: TopicRing, camera_id: str, seq: int | None = None):
    """The newest (frame, track record) of the camera with the same seq, or (frame, None) if none is tracked yet."""
    key = camera_id.encode()
    for p in tracks.partitions:
        track_msg = _find(tracks, p, key, seq, 400)
        if track_msg is None:
            continue
        frame_msg = _find(frames, p, key, seq_of(track_msg), frames.capacity)
        if frame_msg is not None:
            return frame_msg, track_msg
    for p in frames.partitions:
        frame_msg = _find(frames, p, key, seq, frames.capacity)
        if frame_msg is not None:
            return frame_msg, None
    return None, None


def _label(image: np.ndarray, text: str, at: tuple[int, int], background, foreground=(0, 0, 0)) -> None:
    """Text on a filled box whose bottom-left corner is ``at``."""
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    cv2.rectangle(image, (at[0], at[1] - h - 6), (at[0] + w + 4, at[1]), background, -1)
    cv2.putText(image, text, (at[0] + 2, at[1] - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, foreground, 1, cv2.LINE_AA)


def _pixels(points) -> np.ndarray:
    """Points as OpenCV draws them, kept within reach of any frame: a configuration stored before shapes were bounded
    may hold a zone at 1e308 (OpenCV's int32 overflowed, and every picture of the camera was a 500)."""
    return np.clip(np.asarray(points, dtype=np.float64), -MAX_PIXEL, MAX_PIXEL).astype(np.int32)


def draw(frame: FrameRecord, tracks: TrackRecord | None, config: CameraConfig | None,
         marks: AlertMarks | None = None) -> np.ndarray | None:
    # cv2 directly: the API process does not load the detector's libraries (torch, Ultralytics).
    image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    marks = marks or AlertMarks()
    if config:
        if config.zones:
            # One tint for all zones, blended once: one blend per zone hid a frame under 15 overlapping zones (5% of
            # it left) and took 31 ms to draw with 64 of them.
            overlay = image.copy()
            for zone in config.zones:  # one by one: several in one call leave their overlaps out (even-odd)
                cv2.fillPoly(overlay, [_pixels(zone.points)], (255, 200, 0))
            image = cv2.addWeighted(overlay, 0.18, image, 0.82, 0)
        for zone in config.zones:
            pts = _pixels(zone.points)
            corner = tuple(int(v) for v in pts[0])
            if zone.name in marks.zones:  # an alert's zone: outlined and named in red, with what the alert is
                cv2.polylines(image, [pts], True, ALERT_COLOUR, 3, cv2.LINE_AA)
                _label(image, f"{zone.name}: {marks.zones[zone.name]}", corner, ALERT_COLOUR, (255, 255, 255))
            else:
                cv2.polylines(image, [pts], True, (255, 200, 0), 1, cv2.LINE_AA)
                cv2.putText(image, zone.name, corner, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 200, 0), 1, cv2.LINE_AA)
        for line in config.lines:
            a, b = (tuple(int(v) for v in p) for p in _pixels([line.a, line.b]))
            cv2.line(image, a, b, (0, 255, 255), 2, cv2.LINE_AA)
            cv2.putText(image, line.name, (a[0] + 4, a[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
    if tracks:
        # The alert's vehicles last, so that their boxes are on top.
        for o in sorted(tracks.objects, key=lambda o: o.track_id in marks.tracks):
            p1, p2 = (int(o.x1), int(o.y1)), (int(o.x2), int(o.y2))
            if o.track_id in marks.tracks:
                cv2.rectangle(image, p1, p2, ALERT_COLOUR, 3)
                _label(image, f"#{o.track_id} {o.label}: {marks.tracks[o.track_id]}", p1, ALERT_COLOUR, (255, 255, 255))
            else:
                colour = COLOURS.get(o.label, (0, 255, 0))
                cv2.rectangle(image, p1, p2, colour, 2)
                _label(image, f"#{o.track_id} {o.label}", p1, colour)
    for i, message in enumerate(marks.messages[:3]):
        _label(image, message, (6, 24 + 20 * i), ALERT_COLOUR, (255, 255, 255))
    # The frame's time on its camera's clock, as this process's local time (a seq means nothing to a person).
    when = time.strftime("%H:%M:%S", time.localtime(frame.at))
    stamp = f"{frame.camera_id}  {when}" + (f"  {len(tracks.objects)} tracks" if tracks else "  (not tracked yet)")
    cv2.putText(image, stamp, (8, image.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def annotated_jpeg(frames: TopicRing, tracks: TopicRing, camera_id: str, config: CameraConfig | None,
                   seq: int | None = None, quality: int = 80) -> bytes | None:
    return render_jpeg(*latest_pair(frames, tracks, camera_id, seq), config, quality)


@dataclass
class _Drawn:
    positions: tuple  # the rings' positions when it was looked for
    config: CameraConfig | None
    frame_msg: Message | None
    track_msg: Message | None
    jpeg: bytes | None


class LiveView:
    """Each camera's latest annotated frame, drawn once for all who ask (live.mjpg's viewers, snapshot.jpg).

    Each viewer had looked up, drawn and encoded the frame at its every tick, whether a new one had come or
    not: 60 viewers of a 4 fps camera at ``fps=30`` took 1.4 cores. Now the look-up is done again only when the
    rings have moved, and the drawing only when that finds another frame, track record or configuration; one
    camera's viewers wait on one drawing (a lock per camera), not each make their own. Called from threads.
    """

    MAX_CAMERAS = 256  # cameras whose drawing is kept (the ones looked at most recently)

    def __init__(self, frames: TopicRing, tracks: TopicRing):
        self.frames, self.tracks = frames, tracks
        self._drawn: OrderedDict[str, _Drawn] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.drawings = 0  # frames drawn: what the sharing saves shows here

    def _positions(self) -> tuple:
        rings = (self.frames, self.tracks)
        return tuple((tuple(r.next.items()), tuple(r.resets.items())) for r in rings)

    def _lock(self, camera_id: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(camera_id)
            if lock is None:
                lock = self._locks[camera_id] = threading.Lock()
            return lock

    def jpeg(self, camera_id: str, config: CameraConfig | None) -> bytes | None:
        positions = self._positions()
        with self._lock(camera_id):
            drawn = self._drawn.get(camera_id)
            if drawn is not None and drawn.config is config and drawn.positions == positions:
                return drawn.jpeg
            frame_msg, track_msg = latest_pair(self.frames, self.tracks, camera_id)
            if (drawn is not None and drawn.config is config and drawn.frame_msg is frame_msg
                    and drawn.track_msg is track_msg):
                jpeg = drawn.jpeg
            else:
                jpeg = render_jpeg(frame_msg, track_msg, config)
                self.drawings += 1
            self._keep(camera_id, _Drawn(positions, config, frame_msg, track_msg, jpeg))
            return jpeg

    def _keep(self, camera_id: str, drawn: _Drawn) -> None:
        with self._guard:
            self._drawn[camera_id] = drawn
            self._drawn.move_to_end(camera_id)
            while len(self._drawn) > self.MAX_CAMERAS:
                gone, _ = self._drawn.popitem(last=False)
                self._locks.pop(gone, None)  # a thread that holds it keeps its own reference


def render_jpeg(frame_msg: Message | None, track_msg: Message | None, config: CameraConfig | None,
                quality: int = 80, marks: AlertMarks | None = None) -> bytes | None:
    """A frame drawn with its track record (or "not tracked yet" without one) and alerts' marks, as JPEG."""
    if frame_msg is None:
        return None
    try:
        frame = decode(FrameRecord, frame_msg.value)
        record = decode(TrackRecord, track_msg.value) if track_msg else None
        image = draw(frame, record, config, marks)
    except SchemaError:
        return None
    if image is None:
        return None
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None
