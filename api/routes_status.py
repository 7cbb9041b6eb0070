"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, create_model
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas.workers import WorkerStatus

router = APIRouter(tags=["status"])
# A ring whose consumer has not fetched for this long means the broker is unreachable.
STALE_FETCH_S = 10.0
# Work waiting while the workers' committed offsets have not moved for this long: they are not consuming.
STALLED_AFTER_S = 30.0
METRICS_LAG_TIMEOUT_S = 3.0
# /ready waits this long for the lag: a probe (a load balancer's, Kubernetes') must get an answer in its own time.
READY_LAG_TIMEOUT_S = 5.0
# A scrape whose read of the lag takes longer gives the last figures read, if they are this recent.
METRICS_LAG_KEEP_S = 30.0


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
            description="503 when the broker is not read, when work waits and no worker runs, or when work has waited "
            "30 s with nothing committed. It judges the whole system: a load balancer's probe of an API process "
            "should use /api/v1/health, or it would hide the dashboard just when the workers are down.",
            responses={503: {"description": "Not ready: see the reasons", "model": Readiness}})
async def ready(request: Request, response: Response) -> dict:
    hub = request.app.state.hub
    now = time.monotonic()
    if not hub.broker.up:  # reading the lag would wait out the client's timeouts (40 s)
        return _not_ready(response, {"broker": f"not answering: {hub.broker.trouble}",
                                     "lag": "unknown: the broker does not answer"})
    stale = [name for name, ring in hub.rings.items() if now - ring.last_fetch_ok > STALE_FETCH_S]
    body: dict = {"broker": "reachable" if not stale else f"not read for {STALE_FETCH_S:.0f}s: {stale}",
                  "frames_shed": hub.camera_events.shed_lately(time.time())}
    try:
        try:
            offsets, lag = await asyncio.wait_for(asyncio.shield(_lag_read(request.app.state)), READY_LAG_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no answer in {READY_LAG_TIMEOUT_S:g} s") from None
        body["lag"] = lag
        waiting = sum(lag.values())
        progress = _workers_state(request.app.state, sum(done for done, _ in offsets.values()), waiting, now)
        body["workers"], working = _workers_verdict(_workers_running(hub, time.time()), progress, waiting)
        if not working:
            stale.append("workers")
    except Exception as exc:  # the broker did not answer
        stale.append("lag")
        body["lag"] = f"unknown: {exc!r}"
        if not stale[:-1]:  # the rings read a moment ago, but the broker does not answer now
            body["broker"] = f"not answering: {exc!r}"
    if stale:
        return _not_ready(response, body)
    return {**body, "status": "ready"}


def _not_ready(response: Response, body: dict) -> dict:
    response.status_code = 503
    return {**body, "status": "not ready"}


async def _worker_lag(state) -> tuple[dict, dict[str, int]]:
    """The workers' group offsets and the messages waiting per topic, also set as the lag metric.
    Raises when the broker does not answer (the metric as it was)."""
    offsets = await state.hub.group_offsets.read()
    lag: dict[str, int] = {}
    for (topic, _), (done, end) in offsets.items():
        # A commit past the log's end (a log the broker lost, an end not read in time) is no work waiting.
        lag[topic] = lag.get(topic, 0) + max(0, end - done)
    state.metrics.lag.clear()  # set whole, after the read: a read that fails leaves no half-cleared figure
    for t, n in lag.items():
        state.metrics.lag.labels(t).set(n)
    state.lag_read_at = time.monotonic()
    return offsets, lag


def _lag_read(state) -> asyncio.Future:
    """The read of the lag in flight, or a new one: a scrape that stops waiting for it leaves it running."""
    read = getattr(state, "lag_read", None)
    if read is None or read.done():
        read = state.lag_read = asyncio.ensure_future(_worker_lag(state))
        read.add_done_callback(lambda r: r.cancelled() or r.exception())  # failures are the scrape's to judge
    return read


def _workers_verdict(running: str, progress: str, waiting: int) -> tuple[str, bool]:
    """/ready's line on the workers, and whether they do the work."""
    if running == "none running" and waiting:
        # Nobody to do it: not "consuming", though the group's commits may have moved a moment ago.
        return f"{running}, {waiting} messages waiting", False
    return f"{running}, {progress}", not progress.startswith("stalled")


def _workers_running(hub, now: float) -> str:
    """How many workers report themselves (its.workers) in time: the group's membership is the broker's
    to tell, and the embedded broker does not describe groups reliably."""
    serving = hub.workers.serving(now)
    recovering = sum(1 for s in serving if s.state == "recovering")
    if not serving:
        return "none running"
    # As /workers and the metrics count them: a recovering worker is not a running one.
    return f"{len(serving) - recovering} running" + (
        f", {recovering} recovering (in a rebalance or restoring tables)" if recovering else "")


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
    state: Literal["live", "untracked", "stopped", "no_frames"] = Field(
        description="live: a frame of it tracked in the last 10 s; untracked: none, though its frames came in the "
                    "last 10 s (no worker running, a rebalance, the broker away for the workers, the pipeline far "
                    "behind); stopped: no frame tracked or sent since; no_frames: none held")
    live: bool = Field(description="A frame of it was tracked in the last 10 s")
    last_tracked_at: float | None = Field(description="When its newest frame was tracked (Unix seconds); none: no frame held")
    last_frame_age_s: float | None = Field(description="Since its newest frame was tracked")
    frames_tracked: int = Field(description="Its frames this API process has read tracked since it started")
    objects: int = Field(description="Tracked in its newest frame; 0 once the workers closed it as silent")
    alerts_active: int


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


def _workers_state(state, committed: int, waiting: int, now: float) -> str:
    """Are the workers consuming? Judged by their committed offsets moving while work waits."""
    last = getattr(state, "committed_seen", None)
    if last is None or committed != last[0]:
        state.committed_seen = (committed, now)
        return "consuming" if waiting else "caught up"
    if not waiting:
        return "caught up"
    still = now - last[1]
    return f"stalled: {waiting} messages waiting, nothing committed for {still:.0f}s" if still > STALLED_AFTER_S else "consuming"


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    state = request.app.state
    state.metrics.broker_up.set(1 if state.hub.broker.up else 0)
    try:
        if not state.hub.broker.up:
            raise ConnectionError(state.hub.broker.trouble)
        # Read at each scrape: the figure is the broker's, not a cache. Waited for 3 s at most, or Prometheus
        # (10 s) would lose the API's own figures too while the broker hangs.
        await asyncio.wait_for(asyncio.shield(_lag_read(state)), METRICS_LAG_TIMEOUT_S)
    except asyncio.TimeoutError:
        # A loaded broker answers slowly, just when the lag matters: the read goes on for the next scrape, and
        # this one gives the figures of the last read if they are recent (the age metric says how recent).
        if time.monotonic() - getattr(state, "lag_read_at", float("-inf")) > METRICS_LAG_KEEP_S:
            state.metrics.lag.clear()
    except Exception:
        state.metrics.lag.clear()  # the broker said no: no figure rather than an old one
    read_at = getattr(state, "lag_read_at", None)
    if read_at is not None and state.metrics.lag.collect()[0].samples:
        state.metrics.lag_age.set(time.monotonic() - read_at)
    else:
        state.metrics.lag_age.set(float("nan"))
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
