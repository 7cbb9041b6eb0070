"""``its.frames``: one JPEG frame of one camera."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import CameraRecord

MAX_SIDE_PX = 8192


class FrameRecord(CameraRecord):
    schema_: Literal["its.frame"] = Field("its.frame", alias="schema")
    v: Literal[1] = 1
    # At most 8K a side: a record claiming more, with a JPEG that says the same, would take the decoder
    # tens of seconds and gigabytes before it failed.
    width: int = Field(gt=0, le=MAX_SIDE_PX)
    height: int = Field(gt=0, le=MAX_SIDE_PX)
    source_fps: float | None = Field(None, description="Nominal fps of the source, when known")
    jpeg: bytes = Field(description="The frame, JPEG-encoded, base64 in JSON")
