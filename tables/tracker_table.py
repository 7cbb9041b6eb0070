"""The ``camera-tracker`` table: each camera's tracker state, keyed by camera id.

RocksDB-backed with a changelog topic, so a camera's tracker follows its
partition to whichever worker owns it. Faust writes a key to the partition of
the event being processed, so a camera's state is written in the partition of
its latest detection event, at each flush (:mod:`tables.checkpoints`).
"""

from __future__ import annotations

from its_faust.app import settings, table
from its_faust.codecs import decode, encode
from tables.actor_cache import ActorCache
from tables.camera_tracker import CameraTracker, TrackerState

# bytes keys and values: Faust stores them as they are ("raw"); values are JSON records (its_faust.codecs).
tracker_states = table("camera-tracker", key_type=bytes, value_type=bytes)


def _build(camera_id: str, stored: bytes | None) -> CameraTracker:
    return CameraTracker(camera_id, settings.tracker, decode(TrackerState, stored) if stored else None)


def tracker_cache() -> ActorCache[CameraTracker]:
    return ActorCache(tracker_states, _build, lambda tracker: encode(tracker.state()))
