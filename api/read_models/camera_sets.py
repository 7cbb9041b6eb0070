"""Which cameras a read model holds figures of: by the partition they came from (a log the broker lost takes
them along), and, for cameras nobody configured, only those heard from most recently."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable


class CamerasByPartition:
    """Which topic partition each camera's records came from: a partition whose log the broker lost (an
    in-memory broker restarted) takes what the read models built from it along (``TopicRing.on_reset``)."""

    def __init__(self):
        self._partition: dict[str, int] = {}

    def note(self, camera_id: str, partition: int) -> None:
        self._partition[camera_id] = partition

    def take(self, partition: int) -> list[str]:
        cameras = [c for c, p in self._partition.items() if p == partition]
        for camera_id in cameras:
            del self._partition[camera_id]
        return cameras

    def forget(self, cameras: set[str]) -> None:
        for camera_id in cameras:
            self._partition.pop(camera_id, None)


class HeardCameras:
    """Which unconfigured cameras a read model holds figures of: the ``max_cameras`` heard from most recently.
    Any producer may write a topic: a flood of made-up camera ids must not grow the API without end, nor push
    out a configured camera's figures (``configured``: whether a camera is one; those are never counted here).
    Past the limit, the least recently heard tenth goes at once (``note`` returns them), so that what a read
    model holds of them goes in one pass."""

    def __init__(self, max_cameras: int, configured: Callable[[str], bool] = lambda camera_id: False):
        self.max_cameras = max_cameras
        self.configured = configured
        self._order: OrderedDict[str, None] = OrderedDict()

    def note(self, camera_id: str) -> set[str]:
        if self.configured(camera_id):
            self._order.pop(camera_id, None)
            return set()
        self._order[camera_id] = None
        self._order.move_to_end(camera_id)
        gone: set[str] = set()
        if len(self._order) > self.max_cameras:
            while len(self._order) > self.max_cameras * 0.9:
                gone.add(self._order.popitem(last=False)[0])
        return {camera_id for camera_id in gone if not self.configured(camera_id)}  # (configured since)
