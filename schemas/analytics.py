"""``its.crossings`` and ``its.counts``: what the analytics actors emit about counting lines."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import CameraRecord, Record

Direction = Literal["in", "out"]


class Crossing(CameraRecord):
    """One track crossed one counting line, on frame ``seq`` (once per track and line)."""

    schema_: Literal["its.crossing"] = Field("its.crossing", alias="schema")
    v: Literal[1] = 1
    line: str
    direction: Direction
    track_id: int = Field(ge=1)
    label: str = Field(description="The track's most frequent class so far")
    cls: int
    speed_kmh: float | None = Field(None, description="Only when the camera is calibrated")

    @property
    def order(self) -> tuple[int, int]:
        """Crossings of one camera are emitted in this order; tables use it to apply each once."""
        return (self.seq, self.track_id)


class WindowCount(Record):
    start: float = Field(description="Window start, Unix seconds of capture time")
    end: float
    count: int = Field(ge=0)


class CountUpdate(CameraRecord):
    """The counts of one (line, direction, class) right after a crossing was added to them."""

    schema_: Literal["its.count"] = Field("its.count", alias="schema")
    v: Literal[1] = 1
    line: str
    direction: Direction
    label: str
    total: int = Field(ge=0, description="Since the line was added (or the counts were first kept)")
    minute: WindowCount = Field(description="The 1-minute tumbling window the crossing fell in")
    quarter: WindowCount = Field(description="The 15-minute tumbling window the crossing fell in")
