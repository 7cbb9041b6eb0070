"""``its.camera-commands`` and ``its.camera-configs``: cameras are configured by events only.

A command changes one camera. The configure agent folds the commands of a
camera, in order, into its :class:`CameraConfig` (kept in a table and published
on ``its.camera-configs`` after every change); a command that cannot apply goes
to the dead-letter topic with the reason and changes nothing. Replaying the
command topic rebuilds every camera's configuration.
"""

from __future__ import annotations

import unicodedata
import uuid
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, Field, model_validator

from schemas.analytics import MAX_SPEED_KMH
from schemas.base import CAMERA_ID_PATTERN, Record, UnixSeconds
from schemas.geometry import NAME_PATTERN, Calibration, CountingLine, Zone, reading_stored


def _one_line_of_text(value: str) -> str:
    """A display text with no control character: a name of '\\e[2J' cleared the terminal of whoever listed the
    cameras, and one with a newline printed a row of its own (an odd-names trial)."""
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        raise ValueError(f"{ascii(bad)} at {value.index(bad)}: control characters and line breaks are not taken")
    return value


# What the API and the CLI take (a 5,000-character name given to the CLI widened every row of `cameras list`, and the
# API refused to take it back). The commands themselves take any text: one issued before these rules, refused when
# the commands topic is replayed to rebuild the configurations, would lose its camera and every change after it;
# what prints a name makes it safe (its_faust.cli_support.terminal_safe; the dashboard sets text, never HTML).
# (The JSON Schemas say the same as a pattern, for clients that check before they send.)
_ONE_LINE = {"pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"}
DisplayName = Annotated[str, Field(max_length=200, json_schema_extra=_ONE_LINE), AfterValidator(_one_line_of_text)]
SourceText = Annotated[str, Field(max_length=2000, json_schema_extra=_ONE_LINE), AfterValidator(_one_line_of_text)]


class AddCamera(Record):
    op: Literal["add_camera"] = "add_camera"
    name: str = Field("", description="A display name (the API and the CLI take one line of text, 200 characters at most)")
    source: str = Field("", description="Where the camera's frames come from (file, rtsp://, http://), for operators")


class UpdateCamera(Record):
    op: Literal["update_camera"] = "update_camera"
    name: str | None = Field(None, description="A display name; None leaves it, \"\" clears it (the camera id is shown)")
    source: str | None = None


class RemoveCamera(Record):
    op: Literal["remove_camera"] = "remove_camera"


class AddLine(Record):
    op: Literal["add_line"] = "add_line"
    line: CountingLine


class RemoveLine(Record):
    op: Literal["remove_line"] = "remove_line"
    name: str = Field(pattern=NAME_PATTERN)


class AddZone(Record):
    op: Literal["add_zone"] = "add_zone"
    zone: Zone


class RemoveZone(Record):
    op: Literal["remove_zone"] = "remove_zone"
    name: str = Field(pattern=NAME_PATTERN)


class SetCalibration(Record):
    op: Literal["set_calibration"] = "set_calibration"
    calibration: Calibration | None = Field(description="null removes the calibration (and with it every speed)")


class SetSpeedLimit(Record):
    op: Literal["set_speed_limit"] = "set_speed_limit"
    kmh: float | None = Field(gt=0, le=MAX_SPEED_KMH, description="null removes the limit")


Change = Annotated[
    Union[AddCamera, UpdateCamera, RemoveCamera, AddLine, RemoveLine, AddZone, RemoveZone, SetCalibration, SetSpeedLimit],
    Field(discriminator="op"),
]


def new_command_id() -> str:
    return uuid.uuid4().hex


class CameraCommand(Record):
    schema_: Literal["its.camera-command"] = Field("its.camera-command", alias="schema")
    v: Literal[1] = 1
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    command_id: str = Field(default_factory=new_command_id, min_length=1, max_length=64)
    issued_at: UnixSeconds
    issued_by: str = Field("", description="Who asked for it (CLI user, API client), for the record")
    change: Change


class CameraConfig(Record):
    """A camera's configuration after every command so far; ``removed`` cameras keep no geometry."""

    schema_: Literal["its.camera-config"] = Field("its.camera-config", alias="schema")
    v: Literal[1] = 1
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    version: int = Field(ge=1, description="How many commands have changed this camera")
    last_command_id: str
    updated_at: float
    applied_offset: int = Field(-1, description="Position in its.camera-commands of the last command applied")
    removed: bool = False
    name: str = ""
    source: str = ""
    lines: list[CountingLine] = Field(default_factory=list)
    line_versions: dict[str, int] = Field(
        default_factory=dict,
        description="Per line: the configuration version that added it. A line removed (with its camera or alone) and "
        "added again is a new line: its counts start afresh (Crossing.line_version, CountUpdate.line_version)",
    )
    zones: list[Zone] = Field(default_factory=list)
    zone_versions: dict[str, int] = Field(
        default_factory=dict,
        description="Per zone, as line_versions: a zone removed and added again starts its totals afresh "
        "(ZoneEvent.zone_version, ZoneStats.zone_version). Zones added before this field have none (0)",
    )
    line_added_at: dict[str, float] = Field(
        default_factory=dict,
        description="Per line: when the command that added it was issued, Unix seconds. The workers count a line from "
        "about then; replay counts it from then too (lines added before this field have none: counted throughout)",
    )
    zone_added_at: dict[str, float] = Field(default_factory=dict, description="Per zone, as line_added_at")
    calibration: Calibration | None = None
    speed_limit_kmh: float | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _shapes_read_as_stored(cls, value, handler):
        # What it holds was checked when it came in; one stored before a bound was added (a zone at 1e308, a
        # calibration's road points beyond it) is read as it is, or its camera could not be told to drop it.
        token = reading_stored.set(True)
        try:
            return handler(value)
        finally:
            reading_stored.reset(token)

    def line(self, name: str) -> CountingLine | None:
        return next((line for line in self.lines if line.name == name), None)

    def zone(self, name: str) -> Zone | None:
        return next((zone for zone in self.zones if zone.name == name), None)
