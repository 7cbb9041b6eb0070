"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, create_model
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas.workers import WorkerStatus

router = APIRouter(tags=["status"])


@router.get("/api/v1/health", summary="Liveness: the process answers")
async def health() -> dict:
    return {"status": "ok"}


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    broker: str = Field(description="`reachable`, or why not: the broker not answering (asked every 2 s), the feeds not "
                                    "read for 10 s, or the lag not read in 5 s")
    lag: dict[str, int] | str = Field(
        description="Messages the workers have not committed, per topic (frames, detections, tracks); or, when the "
                    "broker did not answer, `unknown: ` and why")
    workers: str | None = Field(None, description="How many run and whether they consume: `consuming`, `caught up` "
                                                  "or `stalled: ...`; none when the lag is unknown")
    frames_shed: dict[str, int] = Field(
        default_factory=dict,
        description="Per camera that shed any: live frames shed in this minute and the last, as reported (the "
                    "pipeline behind its live cameras: more workers, or fewer cameras). Ready all the same: the "
                    "workers do work; this says the system is short of capacity")
    embedded_broker_mb: int | None = Field(
        None, description="Memory the embedded broker holds, when it runs on the API's machine (it keeps every record: "
                          "it only grows, and slows as it does); none with Kafka")
    warnings: list[str] = Field(
        default_factory=list,
        description="What to act on though the system is ready: the embedded broker past "
                    "`ITS_FAUST_EMBEDDED_BROKER_WARN_MB`; the broker's logs lost (see `logs_lost_at`)")
    logs_lost_at: float | None = Field(
        None, description="When the broker lost its logs (an in-memory broker restarted), Unix seconds: the cameras' "
                          "configurations went with them; given for an hour, while no camera is configured again")


# A worker's last report as it made it (its.workers), and what the API makes of it now.
WorkerView = create_model(
    "WorkerView",
    **{name: (field.annotation, field) for name, field in WorkerStatus.model_fields.items()
       if name not in ("schema_", "v", "state")},
    state=(Literal["recovering", "running", "stopped", "gone"], Field(
        description="As it reported, or gone: silent for three of its report intervals (killed, cut off, frozen)")),
    reported_s_ago=(float, Field(description="Since its last report")),
    last_partitions=(list[int] | None, Field(None, description="Gone: the partitions it held (it holds none now)")),
)


class Workers(BaseModel):
    workers: list[WorkerView]  # type: ignore[valid-type]
    running: int = Field(description="Of them, running or recovering")


class DeadLetterSummary(BaseModel):
    stage: str
    topic: str
    partition: int
    offset: int = Field(description="Where the refused record is on its topic (`its-faust tail` shows it)")
    key: str
    reason: str
    failed_at: float = Field(description="Unix seconds")
    bytes: int = Field(description="The record's size as kept in the letter (0: too large to copy, named only)")


class DeadLettersView(BaseModel):
    counts: dict[str, dict[str, int]] = Field(description="key (camera id) -> stage -> letters")
    recent: list[DeadLetterSummary] = Field(description="Newest first")


@router.get("/api/v1/ready", response_model=Readiness, summary="Readiness of the system: broker reachable, workers running and consuming (lag per topic)",
            description="Answered within 5 s. 503 when the broker does not answer, when work waits and no worker runs, "
            "or when work has waited 30 s with nothing committed (judged in api/readiness.py). It judges the whole system: a load balancer's probe of an API process "
            "should use /api/v1/health, or it would hide the dashboard just when the workers are down.",
            responses={503: {"description": "Not ready: see the reasons", "model": Readiness}})
async def ready(request: Request, response: Response) -> dict:
    ok, body = await request.app.state.health.ready()
    if not ok:
        response.status_code = 503
    return {**body, "status": "ready" if ok else "not ready"}


@router.get("/api/v1/workers", response_model=Workers, summary="The workers: what each holds, runs and does, from their own reports",
            description="From `its.workers`: each worker reports every few seconds and once as it stops. `state`: "
            "running, recovering (in a rebalance or restoring tables after one: taking no frames), stopped (left cleanly), or gone (silent for "
            "three of its report intervals: killed, cut off or frozen). Stopped and gone workers are listed for 10 "
            "minutes, with the figures of their last report (`reported_s_ago`); a gone worker is shown holding no "
            "partitions (the group hands them to the others once its session times out, "
            "`ITS_FAUST_SESSION_TIMEOUT_S`), `last_partitions` says which it had.")
async def workers(request: Request) -> dict:
    hub = request.app.state.hub
    listed = hub.workers.view(time.time())
    return {"workers": listed, "running": sum(1 for w in listed if w["state"] in ("running", "recovering"))}


class CameraActivity(BaseModel):
    camera_id: str
    name: str | None = Field(description="From its configuration; none for a camera that sends frames unconfigured")
    configured: bool
    state: Literal["removed", "unknown", "live", "untracked", "stopped", "no_frames"] = Field(
        description="removed: its configuration was removed (its frames are refused; listed for 10 minutes after, "
                    "while the API holds its tracks); unknown: the broker does not answer this API now, so what the camera does is "
                    "not known (the other fields are as of its last answer; /api/v1/ready says since when); "
                    "live: a frame of it tracked in the last 10 s; untracked: none, though its frames came in the "
                    "last 10 s (no worker running, a rebalance, the broker away for the workers, the pipeline far "
                    "behind); stopped: no frame tracked or sent since; no_frames: none held")
    live: bool = Field(description="A frame of it was tracked in the last 10 s (and it is not removed, and the broker "
                                   "answers this API)")
    last_tracked_at: float | None = Field(description="When its newest frame was tracked (Unix seconds); none: no frame held")
    last_frame_age_s: float | None = Field(description="Since its newest frame was tracked")
    frames_tracked: int = Field(description="Its frames this API process has read tracked since it started")
    objects: int = Field(description="Tracked in its newest frame; 0 once the workers closed it as silent, or it was removed")
    alerts_active: int
    frames_shed_lately: int = Field(description="Its live frames the workers shed in this minute and the last, as "
                                    "reported (too old when detection reached them: the workers are behind, its "
                                    "counts miss what those frames held); 0 while it keeps up")


@router.get("/api/v1/camera-activity", response_model=list[CameraActivity],
            summary="Every camera at a glance: live or not, its newest frame's age, what is in view, active alerts",
            description="Configured cameras and cameras with tracks, by id; what the dashboard's camera list shows.")
async def camera_activity(request: Request):
    return request.app.state.hub.camera_activity(time.time())


@router.get("/api/v1/dead-letters", response_model=DeadLettersView, summary="What the stages refused, and why: counts by key (camera) and stage, "
            "and the newest letters", description="From `its.dead-letters`, as this API process has read it (since it "
            "started, and the topic's last few before). `counts`: key -> stage -> records, of the `limit` keys heard "
            "from most recently (or of `camera`); `recent`: their newest letters first, without the records "
            "themselves (`its-faust tail dead-letters` shows those).")
async def dead_letters(request: Request, camera: str | None = Query(None, description="Only this key (camera id)"),
                       limit: int = Query(20, ge=1, le=500)) -> dict:
    return request.app.state.hub.dead_letters.view(camera, limit)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    await request.app.state.health.scrape()
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
