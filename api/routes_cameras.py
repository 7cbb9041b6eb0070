"""Cameras over REST: every change is a command on ``its.camera-commands``; reads come from the read models.

A change is checked against the camera's current configuration first (404 for
an unknown camera or line or zone, 409 for a conflict, 422 for bad geometry or a line, zone or calibration
wholly outside the camera's frame, all with the reason), then sent; the response waits until a worker has applied it and
returns the new configuration (504 if no worker did in time, 503 if the broker cannot be reached).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.live import annotated_jpeg
from api.sse import format_cursor
from its_faust.cameras import CommandFailed, NoWorkerApplied, command, send_commands
from schemas.analytics import Alert, CountUpdate, Direction, ZoneStats
from schemas.base import CAMERA_ID_PATTERN
from schemas.camera_events import CameraEvent
from schemas.control import (
    AddCamera,
    AddLine,
    AddZone,
    CameraConfig,
    Change,
    DisplayName,
    RemoveCamera,
    RemoveLine,
    RemoveZone,
    SetCalibration,
    SetSpeedLimit,
    SourceText,
    UpdateCamera,
)
from schemas.geometry import NAME_PATTERN, Calibration, CountingLine, Zone, out_of_view
from tables.camera_config import CommandRejected, already_added, changes_nothing

router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"])
CameraId = Annotated[str, Path(pattern=CAMERA_ID_PATTERN, description="The camera's id (its Kafka key)")]
Name = Annotated[str, Path(pattern=NAME_PATTERN)]
ExistOk = Annotated[bool, Query(description="One of that name that is already the same is no conflict: answered 200 "
                                            "with the configuration, nothing sent (a client's retry, a set-up script "
                                            "run again); one that differs is still a 409")]


def _heard_of(request: Request, camera_id: CameraId) -> str:
    if not request.app.state.hub.knows(camera_id):
        raise HTTPException(status_code=404, detail=f"unknown camera {camera_id!r}: not configured, and no record of it is held")
    return camera_id


# A camera the API has heard of: configured, or any of its records held (one that only sends frames counts).
KnownCameraId = Annotated[str, Depends(_heard_of)]
UNKNOWN = {404: {"description": "Unknown camera: not configured, and no record of it is held"}}
ERRORS = {404: {"description": "Unknown camera, or no line or zone of that name"}, 409: {"description": "Conflicts with the camera's configuration"},
          503: {"description": "The broker cannot be reached; nothing was changed"},
          504: {"description": "No worker applied the change in time (it stays queued for the next worker)"}}


class NewCamera(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, as on every other body

    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    name: DisplayName = ""
    source: SourceText = ""


class CameraChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DisplayName | None = None
    source: SourceText | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> "CameraChanges":
        if self.name is None and self.source is None:
            raise ValueError("nothing to change: give a name or a source")
        return self


class SpeedLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kmh: float | None = Field(gt=0, le=400, description="km/h; null removes the limit (no overspeed alerts)")


class CountsNow(BaseModel):
    camera_id: str
    counts: list[CountUpdate]
    idle: list[str] = Field(description="The camera's lines with no crossing yet: none counted since they were added "
                                        "(or none in what this API process has read)")


class CountInWindow(BaseModel):
    line: str
    line_version: int = Field(description="The camera's configuration version that added the line: a line removed "
                                          "and added again under its name (or its camera) counts afresh, from a "
                                          "higher one")
    direction: Direction
    label: str = Field(description="The vehicle class")
    count: int


class CountsWindow(BaseModel):
    start: float = Field(description="Scene time, Unix seconds")
    end: float
    counts: list[CountInWindow] = Field(description="Per line, direction and class; empty: none counted")
    frames_shed: int = Field(description="Live frames the workers reached too late in it: its counts miss what they "
                                         "showed")


class ZoneStatsNow(BaseModel):
    camera_id: str
    zones: list[ZoneStats]
    idle: list[str] = Field(description="The camera's zones with no figures yet: no vehicle has entered since they "
                                        "were added (or none in what this API process has read)")


class AlertsNow(BaseModel):
    active: list[Alert] = Field(description="Raised and not cleared")
    recent: list[Alert] = Field(description="The last alert events (raised and cleared), oldest first")


def _known(request: Request, camera_id: str) -> CameraConfig:
    cameras = request.app.state.hub.cameras
    config = cameras.get(camera_id)
    if config is None:
        removed = camera_id in cameras.configs  # held, as removed
        raise HTTPException(status_code=404, detail=f"camera {camera_id!r} was removed" if removed
                            else f"unknown camera {camera_id!r}")
    return config


def _in_view(request: Request, camera_id: str, shape: CountingLine | Zone | Calibration) -> None:
    """422 for a line, zone or calibration wholly outside the camera's frame, when a frame of it has been tracked (the
    size is known only then; the CLI checks the same, a raw command on its.camera-commands is not checked)."""
    size = request.app.state.hub.tracked.frame_size(camera_id)
    reason = out_of_view(shape, *size) if size else None
    if reason:
        # The shape of every other 422 (FastAPI's validation errors), so a client reads them all one way.
        raise HTTPException(status_code=422, detail=[{"type": "value_error", "loc": ["body"], "msg": reason,
                                                      "input": shape.model_dump(mode="json")}])


async def _change(request: Request, camera_id: str, change: Change, response: Response | None = None,
                  exist_ok: bool = False) -> CameraConfig:
    hub = request.app.state.hub
    cmd = command(camera_id, change, issued_by=f"api:{request.client.host if request.client else '-'}")
    current = hub.cameras.configs.get(camera_id)
    if exist_ok and already_added(current, cmd):
        if response is not None:
            response.status_code = 200  # nothing added: it was there, the same
        return current
    try:
        if changes_nothing(current, cmd):
            return current  # as it is already: nothing sent, no new version (a repeated PUT, the same name again)
    except CommandRejected as exc:
        raise HTTPException(status_code=404 if exc.missing else 409, detail=str(exc)) from None
    try:
        config = await send_commands(hub.bootstrap, hub.settings, [cmd], timeout_s=hub.settings.api.command_timeout_s)
    except NoWorkerApplied as exc:
        raise HTTPException(status_code=504, detail=str(exc)) from None
    except CommandFailed as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except KafkaError as exc:  # the broker is down or unreachable: nothing was changed
        raise HTTPException(status_code=503, detail=f"broker not reachable, nothing changed: {exc}") from None
    hub.cameras.put(config)
    return config


@router.get("", response_model=list[CameraConfig], summary="Every camera")
async def list_cameras(request: Request):
    return request.app.state.hub.cameras.all()


@router.post("", response_model=CameraConfig, status_code=201, responses=ERRORS, summary="Add a camera")
async def add_camera(request: Request, response: Response, body: NewCamera, exist_ok: ExistOk = False):
    return await _change(request, body.camera_id, AddCamera(name=body.name, source=body.source), response, exist_ok)


@router.get("/{camera_id}", response_model=CameraConfig, responses={404: ERRORS[404]}, summary="One camera's configuration")
async def get_camera(request: Request, camera_id: CameraId):
    return _known(request, camera_id)


@router.patch("/{camera_id}", response_model=CameraConfig, responses=ERRORS, summary="Rename or re-source a camera")
async def update_camera(request: Request, camera_id: CameraId, body: CameraChanges):
    return await _change(request, camera_id, UpdateCamera(name=body.name, source=body.source))


@router.delete("/{camera_id}", status_code=204, responses=ERRORS, summary="Remove a camera")
async def remove_camera(request: Request, camera_id: CameraId):
    await _change(request, camera_id, RemoveCamera())
    return Response(status_code=204)


@router.post("/{camera_id}/lines", response_model=CameraConfig, status_code=201, responses=ERRORS,
             summary="Add a counting line")
async def add_line(request: Request, response: Response, camera_id: CameraId, line: CountingLine, exist_ok: ExistOk = False):
    _in_view(request, camera_id, line)
    return await _change(request, camera_id, AddLine(line=line), response, exist_ok)


@router.delete("/{camera_id}/lines/{name}", response_model=CameraConfig, responses=ERRORS,
               summary="Remove a counting line (its counts stop; one added again under the name counts afresh)")
async def remove_line(request: Request, camera_id: CameraId, name: Name):
    return await _change(request, camera_id, RemoveLine(name=name))


@router.post("/{camera_id}/zones", response_model=CameraConfig, status_code=201, responses=ERRORS, summary="Add a zone")
async def add_zone(request: Request, response: Response, camera_id: CameraId, zone: Zone, exist_ok: ExistOk = False):
    _in_view(request, camera_id, zone)
    return await _change(request, camera_id, AddZone(zone=zone), response, exist_ok)


@router.delete("/{camera_id}/zones/{name}", response_model=CameraConfig, responses=ERRORS,
               summary="Remove a zone (one added again under the name starts its figures afresh)")
async def remove_zone(request: Request, camera_id: CameraId, name: Name):
    return await _change(request, camera_id, RemoveZone(name=name))


@router.put("/{camera_id}/calibration", response_model=CameraConfig, responses=ERRORS,
            summary="Set the image-to-road calibration")
async def set_calibration(request: Request, camera_id: CameraId, calibration: Calibration):
    _in_view(request, camera_id, calibration)
    return await _change(request, camera_id, SetCalibration(calibration=calibration))


@router.delete("/{camera_id}/calibration", response_model=CameraConfig, responses=ERRORS,
               summary="Remove the calibration (no speeds, no overspeed alerts)")
async def clear_calibration(request: Request, camera_id: CameraId):
    return await _change(request, camera_id, SetCalibration(calibration=None))


@router.put("/{camera_id}/speed-limit", response_model=CameraConfig, responses=ERRORS,
            summary="Set the speed limit for overspeed alerts (calibrated cameras); null removes it")
async def set_speed_limit(request: Request, camera_id: CameraId, body: SpeedLimit):
    return await _change(request, camera_id, SetSpeedLimit(kmh=body.kmh))


@router.get("/{camera_id}/counts", response_model=CountsNow, responses=UNKNOWN, summary="Current totals and windows per line",
            description="Of the lines the camera has now: a removed line's totals are left out (its windows stay in "
                        "the history), and a line added again counts afresh; its lines with no crossing yet are "
                        "listed in `idle`.")
async def counts_now(request: Request, camera_id: KnownCameraId):
    hub = request.app.state.hub
    config = hub.cameras.get(camera_id)
    return CountsNow(camera_id=camera_id, counts=hub.counts.current(camera_id, config),
                     idle=hub.counts.idle(camera_id, config))


@router.get("/{camera_id}/counts/history", response_model=list[CountsWindow], responses=UNKNOWN, summary="Counts per window, oldest first",
            description="The windows with crossings, and those in which the workers shed live frames they reached too "
                        "late: `frames_shed` says how many, as reported (a window with some counts less than "
                        "passed).")
async def counts_history(request: Request, camera_id: KnownCameraId, window: Literal["1m", "15m"] = "1m") -> list[dict]:
    hub = request.app.state.hub
    return hub.counts.windows(camera_id, window, shed=hub.camera_events)


@router.get("/{camera_id}/zone-stats", response_model=ZoneStatsNow, responses=UNKNOWN,
            summary="Each zone now: occupancy, entries and exits since it was added, the current minute and "
                    "quarter hour (dwell, speeds when calibrated)",
            description="As of each zone's last event (a zone's figures change when a vehicle enters or leaves "
                        "it); a window whose `end` has passed had no event since. Zones the camera no longer "
                        "has are left out; those it has with no event yet are listed in `idle`.")
async def zone_stats_now(request: Request, camera_id: KnownCameraId):
    hub = request.app.state.hub
    config = hub.cameras.get(camera_id)
    return ZoneStatsNow(camera_id=camera_id, zones=hub.zones.current(camera_id, config),
                        idle=hub.zones.idle(camera_id, config))


@router.get("/{camera_id}/alerts", response_model=AlertsNow, responses=UNKNOWN, summary="Active and recent alerts")
async def camera_alerts(request: Request, camera_id: KnownCameraId):
    recent, active = request.app.state.hub.alerts_of(camera_id)
    return AlertsNow(active=active, recent=recent)


@router.get("/{camera_id}/events", response_model=list[CameraEvent],
            summary="The camera's last events, newest first: started, frames rejected (blank, frozen), stream lost, ...",
            description="At most the last 100 per camera, as this API process holds them (after a restart, those "
                        "in the last `ring_size` messages of each partition). The `X-Feed-Position` header is the "
                        "camera-events feed's position right after them: open the SSE feed with it as "
                        "`last_event_id` to go on with no gap and no repeat. A camera not heard of yet has "
                        "none (not a 404): this is how a client waits for a camera's first events.")
async def camera_events(request: Request, response: Response, camera_id: CameraId,
                        limit: Annotated[int, Query(ge=1, le=100)] = 20):
    hub = request.app.state.hub
    # The read model and the ring's position move together (TopicRing._add), with no await between them here.
    response.headers["X-Feed-Position"] = format_cursor(hub.rings["camera-events"].next)
    return hub.camera_events.recent(camera_id, limit)


JPEG = {200: {"content": {"image/jpeg": {}}}, 404: {"description": "No frame of this camera (or seq) is held"}}


@router.get("/{camera_id}/snapshot.jpg", response_class=Response, responses=JPEG,
            summary="The latest annotated frame, or frame `seq`: an alert's snapshot (the last 500 alerts' are "
                    "kept), or any other frame while it is held")
async def snapshot(request: Request, camera_id: CameraId, seq: Annotated[int | None, Query(ge=0)] = None):
    hub = request.app.state.hub
    kept = hub.snapshots.get(camera_id, seq) if seq is not None else None
    if kept is not None:
        return Response(kept, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
    if seq is None:
        image = await asyncio.to_thread(hub.live.jpeg, camera_id, hub.cameras.get(camera_id))
    else:
        image = await asyncio.to_thread(annotated_jpeg, hub.rings["frames"], hub.rings["tracks"], camera_id,
                                        hub.cameras.get(camera_id), seq)
    alerts = hub.alerts.raised_on(camera_id, seq) if image is None and seq is not None else []
    if alerts:  # an alert's frame, gone from the rings before the alert came: from the topics
        image = await hub.snapshots.fetch(alerts)
    if image is None:
        raise HTTPException(status_code=404, detail=f"no frame of {camera_id!r}{f' with seq {seq}' if seq is not None else ''} is held")
    return Response(image, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/{camera_id}/live.mjpg", response_class=Response,
            responses={200: {"content": {"multipart/x-mixed-replace": {}}}, **UNKNOWN},
            summary="Live annotated view (MJPEG): boxes, track ids, classes, lines and zones")
async def live(request: Request, camera_id: KnownCameraId, fps: Annotated[float | None, Query(gt=0, le=30)] = None):
    from starlette.responses import StreamingResponse

    hub = request.app.state.hub
    period = 1.0 / (fps or hub.settings.api.live_fps)

    async def parts():
        last = None
        while not await request.is_disconnected():
            image = await asyncio.to_thread(hub.live.jpeg, camera_id, hub.cameras.get(camera_id))
            if image is not None and image is not last:  # the same drawing, shared: unchanged
                last = image
                yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(image)).encode() + b"\r\n\r\n" + image + b"\r\n"
            await asyncio.sleep(period)

    return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame",
                             headers={"Cache-Control": "no-store"})
