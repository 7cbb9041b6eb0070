"""``its.camera-events``: what happened to a camera's stream (quality, connection, lifecycle)."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import Field

from schemas.base import CAMERA_ID_PATTERN, Record, Seq


class CameraEventKind(str, Enum):
    started = "started"
    frame_rejected = "frame_rejected"  # unreadable, blank or frozen frames: the first of a kind, then with counts
    stream_lost = "stream_lost"
    reconnected = "reconnected"
    gave_up = "gave_up"
    frames_shed = "frames_shed"  # live frames too old when detection reached them (its_faust.stale_frames)
    seqs_behind = "seqs_behind"  # frames not tracked, their seqs at or below the last tracked (its_faust.seqs_behind)
    finished = "finished"  # the source ended or ingest stopped; ``seq`` is the last seq sent
    # Its tracks were dropped after a gap over tracker.max_gap_s (shed frames, a stream loss, a rebalance):
    # the vehicles in view get new ids (tables/camera_tracker.py); at most one per camera a minute.
    tracks_restarted = "tracks_restarted"
    # Records of the camera a stage dead-lettered (its_faust.dead_letters): the first at once, then with counts.
    records_rejected = "records_rejected"
    # Its live frames are dated ahead of the worker's clock (its_faust.clock_ahead): at most one per camera in 10 minutes.
    clock_ahead = "clock_ahead"


class CameraEvent(Record):
    schema_: Literal["its.camera-event"] = Field("its.camera-event", alias="schema")
    v: Literal[1] = 1
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    kind: CameraEventKind
    at: float
    seq: Seq | None = None
    reason: str = ""
    frames_sent: int = Field(0, description="Frames the camera had sent (ingest's events)")
    frames_shed: int = Field(0, ge=0, description="frames_shed: how many since the camera's previous such report")
