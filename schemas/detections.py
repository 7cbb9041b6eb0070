"""``its.detections``: what the detector found in one frame."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.base import CameraRecord, Record
from schemas.geometry import Pixel


class Box(Record):
    """An axis-aligned box in original-image pixels, (x1, y1) its top-left corner."""

    x1: Pixel
    y1: Pixel
    x2: Pixel
    y2: Pixel
    conf: float = Field(ge=0.0, le=1.0)
    cls: int = Field(ge=0, description="COCO class id")
    label: str

    @model_validator(mode="after")
    def _corners_in_order(self) -> "Box":
        # Turned round, a box tracks as nothing, without a word (a trial's hand-made detections).
        if self.x2 < self.x1 or self.y2 < self.y1:
            raise ValueError(f"box ({self.x1:g}, {self.y1:g}, {self.x2:g}, {self.y2:g}): x2, y2 is its bottom-right "
                             "corner, not below x1, y1")
        return self


class ModelInfo(Record):
    name: str = Field(description="Weights name, e.g. yolo11n")
    version: str = Field(description="Model version; the weights' sha256 prefix until the registry assigns one")
    backend: str = Field(description="onnxruntime | torch")
    device: str = "cpu"


class DetectionRecord(CameraRecord):
    schema_: Literal["its.detections"] = Field("its.detections", alias="schema")
    v: Literal[1] = 1
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    detected_at: float
    model: ModelInfo
    inference_ms: float = Field(ge=0.0, description="Share of the batch's inference time for this frame")
    batch_size: int = Field(ge=1, description="Frames in the inference call this frame was part of")
    boxes: list[Box]
