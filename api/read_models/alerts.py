"""Recent alerts, and those raised and not yet cleared."""

from __future__ import annotations

from collections import deque
from typing import Callable

from api.read_models.camera_sets import CamerasByPartition, HeardCameras, Removals
from api.topic_ring import Message
from its_faust.codecs import SchemaError
from schemas.analytics import Alert
from schemas.control import CameraConfig


class Alerts:
    """Recent alerts, and those raised and not yet cleared (of the configured cameras, and the ``max_cameras``
    others heard from most recently: a producer's made-up cameras' alerts, never cleared, must not grow the
    API without end)."""

    def __init__(self, keep: int = 1000, max_cameras: int = 10_000,
                 configured: Callable[[str], bool] = lambda camera_id: False):
        self.recent: deque[Alert] = deque(maxlen=keep)
        self.active: dict[str, Alert] = {}
        self._partitions = CamerasByPartition()
        self._removals = Removals()
        self._heard = HeardCameras(max_cameras, configured)

    def camera_removed(self, config: CameraConfig) -> None:
        """A removed camera sends no more frames, so its actor never clears what it raised: those alerts
        are over. (The rings fill side by side at start: an alert read after the removal is judged by
        :class:`Removals`.)"""
        self._removals.note(config.camera_id, config.version, config.updated_at)
        self.active = {k: a for k, a in self.active.items() if not self._before_removal(a)}

    def _before_removal(self, alert: Alert) -> bool:
        return self._removals.before(alert.camera_id, alert.config_version, alert.captured_at)

    def apply(self, m: Message) -> None:
        try:
            alert = m.decoded(Alert)
        except SchemaError:
            return
        self._partitions.note(alert.camera_id, m.partition)
        gone = self._heard.note(alert.camera_id)
        if gone:
            self._partitions.forget(gone)
            self._end_active(gone)
        if alert.state == "raised":
            if alert.alert_id in self.active:
                return  # a re-emitted copy
            if not self._before_removal(alert):
                self.active[alert.alert_id] = alert
        elif self.active.pop(alert.alert_id, None) is None and any(a.alert_id == alert.alert_id and a.state == "cleared" for a in self.recent):
            return
        self.recent.append(alert)

    def forget_partition(self, partition: int) -> None:
        """Alerts raised in a lost log are never cleared there: they are no longer active."""
        self._end_active(set(self._partitions.take(partition)))

    def _end_active(self, cameras: set[str]) -> None:
        self.active = {k: a for k, a in self.active.items() if a.camera_id not in cameras}

    def raised_on(self, camera_id: str, seq: int) -> list[Alert]:
        """The alerts held that were raised with frame ``seq`` of the camera as their snapshot."""
        alerts = {a.alert_id: a for a in [*self.recent, *self.active.values()]
                  if a.state == "raised" and a.snapshot.camera_id == camera_id and a.snapshot.seq == seq}
        return list(alerts.values())

    def for_camera(self, camera_id: str | None) -> tuple[list[Alert], list[Alert]]:
        recent = [a for a in self.recent if camera_id is None or a.camera_id == camera_id]
        active = [a for a in self.active.values() if camera_id is None or a.camera_id == camera_id]
        return recent, active
