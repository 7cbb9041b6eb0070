"""What every record on a per-camera topic has in common."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

# Camera ids become Kafka keys, table keys and URL path segments; line and zone names, table keys and
# URL path segments too.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
CAMERA_ID_PATTERN = NAME_PATTERN
# Times are Unix seconds; one past this (the year 5138) is milliseconds or nanoseconds sent by mistake.
LATEST_UNIX_S = 1e11


def unix_seconds(value: float | None) -> float | None:
    """A time sent to the pipeline, checked to be Unix seconds, not milliseconds by mistake."""
    if value is not None and abs(value) > LATEST_UNIX_S:
        raise ValueError(f"{value!r} is not Unix seconds (milliseconds?)")
    return value


# What the JSON Schemas say of such a time, for clients that validate before they send (the check is the validator's,
# with its reason).
UNIX_SECONDS_BOUNDS = {"minimum": -LATEST_UNIX_S, "maximum": LATEST_UNIX_S}
UnixSeconds = Annotated[float, Field(json_schema_extra=UNIX_SECONDS_BOUNDS), AfterValidator(unix_seconds)]

# A camera numbers its frames on from the Unix time in milliseconds when it started (its_faust/ingest.py); a producer
# may count in its own way (from 0, in microseconds), as long as its seqs go up. Past 2**53 a seq is not a number
# JavaScript (the dashboard) reads exactly, and not one a producer meant: a frame with seq 10**30 (a trial's) was
# taken by its camera's tracker, and every later frame of the camera skipped as already seen, for good.
MAX_SEQ = 2**53 - 1


# A frame's number in its camera's sequence (``CameraRecord.seq``; the frame an alert or an event names).
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]

# Seqs in a worker's stored state (TableState), which a frame taken before MAX_SEQ was checked may have set past it:
# a camera's last seq is forgotten (kept, it held back the camera's every later frame, after an upgrade too), a
# frame named in the state is taken as MAX_SEQ (the records that name it must pass Seq).
LastSeqStored = Annotated[int, BeforeValidator(lambda v: -1 if isinstance(v, int) and v > MAX_SEQ else v)]
SeqStored = Annotated[int, BeforeValidator(lambda v: MAX_SEQ if isinstance(v, int) and v > MAX_SEQ else v)]


class Record(BaseModel):
    """Base of all wire records: immutable, unknown fields rejected."""

    # Bytes travel as base64 in JSON and are plain bytes in Python.
    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, ser_json_bytes="base64", val_json_bytes="base64",
        allow_inf_nan=False,  # NaN/inf would travel as null and fail somewhere far from the mistake
    )


class TableState(Record):
    """Base of what a worker keeps in its tables (a camera's tracker, its analytics): fields it does not know are
    left out, not refused. A worker rolled back to an earlier version (one with this class) reads what a later one
    wrote, and does without what it does not know; a field refused made every frame of the camera dead-lettered (an
    upgrade trial, with a field once added to the stored alerts). So a field added to a table's state must be one an
    earlier worker can do without. (Records on topics stay strict: a producer's misspelt field is refused with the
    reason. The camera-config table's CameraConfig is one.)"""

    model_config = ConfigDict(extra="ignore")


def scene_clock(captured_at: float, scene_time: float | None) -> float:
    """A frame's time on its camera's clock: the scene time of a file, the capture time of a live source."""
    return scene_time if scene_time is not None else captured_at


class CameraRecord(Record):
    """A record about one frame of one camera; ``(camera_id, seq)`` identifies the frame everywhere."""

    camera_id: str = Field(pattern=CAMERA_ID_PATTERN, description="Kafka key of every per-camera topic")
    seq: Seq = Field(description="Per-camera frame sequence number, strictly increasing")
    captured_at: float = Field(description="When the frame was read from its source, Unix seconds (latency starts here)",
                               json_schema_extra=UNIX_SECONDS_BOUNDS)
    scene_time: float | None = Field(
        None,
        description="When the scene was filmed, on the source's own clock: for a video file, playback start plus the "
        "frame's position in it (its read time if the file has no frame rate); for live sources absent (= captured_at). Speeds, timers and windows run on it.",
        json_schema_extra=UNIX_SECONDS_BOUNDS,
    )

    _seconds = field_validator("captured_at", "scene_time")(unix_seconds)

    @property
    def at(self) -> float:
        """The scene's time: analytics use this, so a file gives the same results at any processing speed."""
        return scene_clock(self.captured_at, self.scene_time)


def error_text(error: dict) -> str:
    """One pydantic error's message in plain words, for people: "Value error, " dropped (the reason our
    validators give is the message), a list's length as a count of what it holds."""
    kind, ctx = error.get("type"), error.get("ctx") or {}
    if kind in ("too_short", "too_long") and "actual_length" in ctx:
        field = str(error["loc"][-1]) if error.get("loc") else ""
        noun = "points" if field.endswith("points") else "items"
        bound = f"at least {ctx['min_length']}" if kind == "too_short" else f"at most {ctx['max_length']}"
        return f"needs {bound} {noun}, {ctx['actual_length']} given"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == NAME_PATTERN:
        return (f"{error.get('input')!r} is not a name: 1-64 letters, digits, '_', '.' or '-', "
                "beginning with a letter or digit")
    if kind == "bytes_invalid_encoding":  # "Invalid symbol 33, offset 0.": the character, not its code
        found = re.search(r"Invalid symbol (\d+), offset (\d+)", str(ctx.get("encoding_error", "")))
        if found:
            return f"not base64: {chr(int(found[1]))!r} at offset {found[2]} (standard or URL-safe alphabet)"
    return error["msg"].removeprefix("Value error, ")
