"""``its.workers``: each worker's own report of itself, every few seconds and once as it stops.

Consumer-group membership is the broker's business and not every broker describes
groups reliably (the embedded one does not); a worker that says what it holds and
does is something any reader can judge: the API's ``/workers`` and ``/ready``, the
dashboard, operators with ``its-faust tail workers``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Record
from schemas.detections import ModelInfo


class WorkerStatus(Record):
    schema_: Literal["its.worker-status"] = Field("its.worker-status", alias="schema")
    v: Literal[1] = 1
    worker: str = Field(min_length=1, description="host:pid, as in TrackRecord.worker; the record's key")
    state: Literal["recovering", "running", "stopped"] = Field(
        description="recovering: in a rebalance, or restoring its tables after one (it takes no frames meanwhile); running; "
        "stopped: its last report, sent as it stops cleanly (one that crashed sends none: silent, it reads as gone)")
    at: float = Field(description="When the report was made, Unix seconds on the worker's clock")
    started_at: float = Field(description="When the worker process started")
    interval_s: float = Field(gt=0, description="How often it reports: one silent for 3 intervals is gone")
    partitions: list[int] = Field(
        [], description="Partitions of the camera topics it holds (every camera topic is partitioned alike)")
    model: ModelInfo | None = Field(None, description="The detector it runs (None until loaded)")
    frames_in: int = Field(0, ge=0, description="Frames its detect stage has read since it started")
    frames_tracked: int = Field(0, ge=0, description=(
        "Track records its track stage has sent since it started. Each stage counts its own partitions' "
        "messages: a frame detected by one worker may be tracked by another (after a restart or a rebalance), "
        "so a worker's frames_tracked can exceed its frames_in; summed over workers they agree"))
    fps: float = Field(0.0, ge=0, description="Frames tracked per second over its last interval")
    frames_waiting: int = Field(0, ge=0, description="Frames on its partitions not yet committed")
