"""The ``camera-tracker`` table: each camera's tracker state, keyed by camera id.

RocksDB-backed with a changelog topic, so a camera's tracker follows its
partition to whichever worker owns it. Faust writes a key to the partition of
the event being processed, so it must be written while processing that
camera's own detection event (the track agent takes events one at a time).
"""

from __future__ import annotations

from its_faust.app import app, settings
from its_faust.codecs import decode, encode
from tables.camera_tracker import CameraTracker, TrackerState

# bytes keys and values: Faust stores them as they are ("raw"); values are JSON records (its_faust.codecs).
tracker_states = app.Table("camera-tracker", key_type=bytes, value_type=bytes, partitions=settings.partitions)


class TrackerCache:
    """Live trackers for the cameras this worker owns, checked against the table.

    Decoding a snapshot per frame would waste time; a cached tracker is used only
    while the table still holds exactly the bytes this worker wrote, so a camera
    that moved away and came back is rebuilt from the table.
    """

    def __init__(self, table=tracker_states):
        self.table = table
        self._live: dict[bytes, tuple[CameraTracker, bytes]] = {}

    def get(self, key: bytes, camera_id: str) -> CameraTracker:
        stored = self.table.get(key)
        cached = self._live.get(key)
        if cached is not None and cached[1] == stored:
            return cached[0]
        state = decode(TrackerState, stored) if stored else None
        tracker = CameraTracker(camera_id, settings.tracker, state)
        self._live[key] = (tracker, stored)
        return tracker

    def forget(self, key: bytes) -> None:
        """Drop the live tracker so the next frame starts again from the table."""
        self._live.pop(key, None)

    def save(self, key: bytes, tracker: CameraTracker) -> None:
        value = encode(tracker.state())
        self.table[key] = value
        self._live[key] = (tracker, value)
