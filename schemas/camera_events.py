"""``its.camera-events``: what happened to a camera's stream (quality, connection, lifecycle)."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import Field

from schemas.base import CAMERA_ID_PATTERN, Record


class CameraEventKind(str, Enum):
    started = "started"
    frame_rejected = "frame_rejected"  # unreadable, blank or frozen: not sent to the model
    stream_lost = "stream_lost"
    reconnected = "reconnected"
    gave_up = "gave_up"
    finished = "finished"  # the source ended or ingest stopped; ``seq`` is the last seq sent


class CameraEvent(Record):
    schema_: Literal["its.camera-event"] = Field("its.camera-event", alias="schema")
    v: Literal[1] = 1
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    kind: CameraEventKind
    at: float
    seq: int | None = None
    reason: str = ""
    frames_sent: int = 0
