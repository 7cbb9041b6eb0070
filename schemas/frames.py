"""``its.frames``: one JPEG frame of one camera."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import CameraRecord


class FrameRecord(CameraRecord):
    schema_: Literal["its.frame"] = Field("its.frame", alias="schema")
    v: Literal[1] = 1
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    source_fps: float | None = Field(None, description="Nominal fps of the source, when known")
    jpeg: bytes = Field(description="The frame, JPEG-encoded, base64 in JSON")
