"""``its.tracks``: the camera's tracked objects after one frame."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import CameraRecord, Record


class TrackedObject(Record):
    track_id: int = Field(ge=1, description="Stable per camera; survives worker moves and restarts")
    x1: float
    y1: float
    x2: float
    y2: float
    conf: float
    cls: int
    label: str


class TrackRecord(CameraRecord):
    schema_: Literal["its.tracks"] = Field("its.tracks", alias="schema")
    v: Literal[1] = 1
    width: int
    height: int
    detected_at: float
    tracked_at: float
    tracker_frame: int = Field(ge=1, description="How many frames this camera's tracker has applied, this one included")
    model: str = Field(description="name@version of the detector")
    detections: int = Field(ge=0, description="Boxes the detector gave for this frame")
    worker: str = Field(description="host:pid of the worker that tracked it (which worker owns the camera now)")
    objects: list[TrackedObject]
