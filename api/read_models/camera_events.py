"""Each camera's last events (started, frames rejected, stream lost, frames shed, ...)."""

from __future__ import annotations

from collections import OrderedDict, deque

from api.read_models.figures import HISTORY_WINDOWS
from api.topic_ring import Message
from its_faust.codecs import SchemaError
from schemas.camera_events import CameraEvent


class CameraEvents:
    """The last events of each camera's stream (started, frames rejected, stream lost, ...), newest last.

    Bounded both ways: ``keep_per_camera`` events each, and the ``max_cameras`` cameras heard from
    most recently (the topic is open to any producer: a flood of made-up camera ids must not grow
    the API without end).
    """

    def __init__(self, keep_per_camera: int = 100, max_cameras: int = 10_000):
        self.keep = keep_per_camera
        self.max_cameras = max_cameras
        self.by_camera: OrderedDict[str, deque[CameraEvent]] = OrderedDict()
        # camera -> OrderedDict[minute start -> live frames shed, by the reports made in that minute]
        self.shed_minutes: dict[str, OrderedDict[float, int]] = {}
        self.shed_total: dict[str, int] = {}  # camera -> live frames shed, as reported since the API started

    def apply(self, m: Message) -> None:
        try:
            event = m.decoded(CameraEvent)
        except SchemaError:
            return
        events = self.by_camera.get(event.camera_id)
        if events is None:
            events = self.by_camera[event.camera_id] = deque(maxlen=self.keep)
            if len(self.by_camera) > self.max_cameras:
                self.by_camera.popitem(last=False)
        self.by_camera.move_to_end(event.camera_id)
        events.append(event)
        if event.frames_shed:
            minutes = self.shed_minutes.setdefault(event.camera_id, OrderedDict())
            minute = event.at // 60 * 60
            minutes[minute] = minutes.get(minute, 0) + event.frames_shed
            while len(minutes) > HISTORY_WINDOWS:
                minutes.popitem(last=False)
            self.shed_total[event.camera_id] = self.shed_total.get(event.camera_id, 0) + event.frames_shed
            for by_camera in (self.shed_minutes, self.shed_total):
                if len(by_camera) > self.max_cameras:
                    by_camera.pop(next(iter(by_camera)))

    def shed_lately(self, now: float) -> dict[str, int]:
        """Per camera that shed any: live frames shed, as reported in this minute and the one before."""
        since = now // 60 * 60 - 60
        lately = {camera: sum(n for minute, n in minutes.items() if minute >= since)
                  for camera, minutes in self.shed_minutes.items()}
        return {camera: n for camera, n in sorted(lately.items()) if n}

    def shed_by_window(self, camera_id: str, size: float) -> dict[float, int]:
        """Live frames of the camera shed (so not counted), as reported, by the start of each ``size``-second window."""
        windows: dict[float, int] = {}
        for minute, n in self.shed_minutes.get(camera_id, {}).items():
            start = minute // size * size
            windows[start] = windows.get(start, 0) + n
        return windows

    def recent(self, camera_id: str, limit: int) -> list[CameraEvent]:
        """The camera's last ``limit`` events, newest first."""
        events = self.by_camera.get(camera_id, ())
        return list(reversed(events))[:limit]
