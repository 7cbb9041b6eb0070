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


class Removals:
    """When each camera was last removed, to tell a record of before it (read after it: the rings fill side by
    side at start) from one of after it was added again.

    By configuration version where the record has one (the version that added its line or zone, or its alert was
    raised under): the camera's clock and the commanding host's need not agree, and a camera a day behind, removed
    and added again, had its new figures taken for old ones for the day. A record without one (0: written before
    these fields) is judged by time, as before."""

    def __init__(self):
        self._removed: dict[str, tuple[int, float]] = {}  # camera -> (the removal's version, its updated_at)

    def note(self, camera_id: str, version: int, updated_at: float) -> None:
        # The latest removal: an earlier one read after it (the rings fill side by side) would let through again
        # the records of what was removed in between.
        self._removed[camera_id] = max(self._removed.get(camera_id, (version, updated_at)), (version, updated_at))

    def before(self, camera_id: str, version: int, captured_at: float) -> bool:
        """Whether a record of the camera (``version``: 0 where it has none) is of before its last removal."""
        removed = self._removed.get(camera_id)
        if removed is None:
            return False
        return version <= removed[0] if version else captured_at <= removed[1]
