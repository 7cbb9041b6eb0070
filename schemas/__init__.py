"""Versioned records shared by every stage and by integrators.

Every record carries ``schema`` (its name) and ``v`` (its version). A consumer
accepts the versions it knows and sends anything else to the dead-letter topic
with the reason. Records are JSON on the wire (bytes as base64), so any Kafka
client in any language can produce and consume them.
"""

from schemas.camera_events import CameraEvent, CameraEventKind
from schemas.dead_letters import DeadLetter
from schemas.detections import Box, DetectionRecord, ModelInfo
from schemas.frames import FrameRecord
from schemas.tracks import TrackedObject, TrackRecord

__all__ = [
    "Box",
    "CameraEvent",
    "CameraEventKind",
    "DeadLetter",
    "DetectionRecord",
    "FrameRecord",
    "ModelInfo",
    "TrackRecord",
    "TrackedObject",
]
