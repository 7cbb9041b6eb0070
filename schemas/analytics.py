"""What analytics emit: ``its.crossings``, ``its.zone-events``, ``its.alerts`` (agents/analyze.py) and
``its.counts``, ``its.zone-stats`` (agents/count.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from schemas.base import NAME_PATTERN, CameraRecord, Record, Seq

Direction = Literal["in", "out"]

# A line's or zone's name, as configured (schemas.geometry). Checked on these records too: the count tables join a
# name into their keys with '|' and '@' (tables/count_tables.py), and a record of any producer naming a line
# 'a@1|in|x' had counted into another line's key.
LineOrZoneName = Annotated[str, Field(pattern=NAME_PATTERN)]

# A speed past this is no vehicle's: the analytics actor measures none (tables/speed.py), and a record saying one
# is read as saying none (a forged crossing at 1e308 km/h took a line's mean and p85 with it; refused whole, one
# written before the bound would have lost its vehicle's count).
MAX_SPEED_KMH = 400.0


def _no_speed_past_max(value):
    return None if isinstance(value, (int, float)) and not isinstance(value, bool) and value > MAX_SPEED_KMH else value


Kmh = Annotated[Annotated[float, Field(ge=0, le=MAX_SPEED_KMH)] | None, BeforeValidator(_no_speed_past_max)]


class Crossing(CameraRecord):
    """One track crossed one counting line (once per track and line), on frame ``seq``: the crossing's, or, for a
    track too young to count when it crossed, the frame it had been seen long enough on (label and speed too)."""

    schema_: Literal["its.crossing"] = Field("its.crossing", alias="schema")
    v: Literal[1] = 1
    line: LineOrZoneName
    direction: Direction
    track_id: int = Field(ge=1)
    label: str = Field(description="The track's most frequent class so far")
    cls: int
    speed_kmh: Kmh = Field(None, description="Only when the camera is calibrated")
    line_version: int = Field(0, ge=0, description="CameraConfig.line_versions of the line: a line added again counts afresh")


class SpeedStats(Record):
    n: int = Field(ge=1, description="Vehicles with a speed")
    mean_kmh: float = Field(ge=0)
    p85_kmh: float = Field(ge=0, description="85th percentile, the figure speed limits are set by")


class WindowCount(Record):
    start: float = Field(description="Window start, Unix seconds of scene time (capture time for live sources)")
    end: float
    count: int = Field(ge=0)
    speed: SpeedStats | None = Field(None, description="Of the vehicles counted, when the camera is calibrated")


class CountUpdate(CameraRecord):
    """The counts of one (line, direction, class) right after a crossing was added to them."""

    schema_: Literal["its.count"] = Field("its.count", alias="schema")
    v: Literal[1] = 1
    line: LineOrZoneName
    direction: Direction
    label: str
    line_version: int = Field(0, ge=0, description="Which adding of the line these counts are of (CameraConfig.line_versions)")
    total: int = Field(ge=0, description="Since the line was added (or the counts were first kept)")
    minute: WindowCount = Field(description="The 1-minute tumbling window the crossing fell in")
    quarter: WindowCount = Field(description="The 15-minute tumbling window the crossing fell in")


class ZoneEvent(CameraRecord):
    """A track entered or left a zone; ``occupancy`` is how many are inside right after."""

    schema_: Literal["its.zone-event"] = Field("its.zone-event", alias="schema")
    v: Literal[1] = 1
    zone: LineOrZoneName
    kind: Literal["enter", "exit"]
    track_id: int = Field(ge=1)
    label: str
    occupancy: int = Field(ge=0)
    dwell_s: float | None = Field(None, description="On exit: seconds inside (scene time)")
    mean_speed_kmh: Kmh = Field(None, description="On exit, when calibrated: mean speed inside")
    zone_version: int = Field(0, ge=0, description="CameraConfig.zone_versions of the zone: a zone added again counts afresh")


AlertKind = Literal["stopped_vehicle", "wrong_way", "congestion", "overspeed"]


class FrameRef(Record):
    """Where to see it: the frame ``(camera_id, seq)`` on ``its.frames``."""

    camera_id: str
    seq: Seq


class Alert(CameraRecord):
    """An incident. ``raised`` once when it starts, ``cleared`` once when it ends; same ``alert_id``."""

    schema_: Literal["its.alert"] = Field("its.alert", alias="schema")
    v: Literal[1] = 1
    alert_id: str = Field(description="camera:kind:subject:first seq; the raised and cleared events share it")
    kind: AlertKind
    state: Literal["raised", "cleared"]
    severity: Literal["info", "warning", "critical"]
    subject: str = Field(description="What it is about: 'track-12' or 'zone-lane1'")
    track_ids: list[int] = Field(default_factory=list)
    zone: LineOrZoneName | None = None
    started_at: float = Field(description="Scene time the condition began (capture time for live sources)")
    snapshot: FrameRef = Field(description="The frame it was raised on")
    message: str
    details: dict[str, float] = Field(default_factory=dict)
    config_version: int = Field(0, ge=0, description="On raised alerts: the camera's configuration version (CameraConfig.version) "
                                "it was raised under; 0 on cleared ones and on alerts from before this field")


class ZoneWindow(Record):
    start: float
    end: float
    entries: int = Field(ge=0)
    exits: int = Field(ge=0)
    mean_dwell_s: float | None = None
    speed: SpeedStats | None = Field(None, description="Mean speeds inside of the vehicles that left, when calibrated")


class ZoneStats(CameraRecord):
    """A zone's traffic right after a zone event was added: occupancy now, totals and the current windows."""

    schema_: Literal["its.zone-stats"] = Field("its.zone-stats", alias="schema")
    v: Literal[1] = 1
    zone: LineOrZoneName
    zone_version: int = Field(0, ge=0, description="Which adding of the zone these figures are of (CameraConfig.zone_versions)")
    occupancy: int = Field(ge=0)
    entries: int = Field(ge=0, description="Since the zone was added")
    exits: int = Field(ge=0)
    minute: ZoneWindow
    quarter: ZoneWindow
