"""SSE feeds: tracks, counts, zone statistics, alerts and camera events, for one camera or for all of them."""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response
from sse_starlette import EventSourceResponse

from api.errors import brief
from api.routes_cameras import AlertsNow
from api.sse import (BadCursor, check_partitions, events, format_cursor, merged, parse_cursor, parse_positions,
                     past_the_log, quoted_in_brief)
from schemas.base import CAMERA_ID_PATTERN

router = APIRouter(prefix="/api/v1", tags=["feeds"])


class Feed(str, Enum):
    tracks = "tracks"
    counts = "counts"
    alerts = "alerts"
    zone_stats = "zone-stats"
    camera_events = "camera-events"


# The SSE event name of each feed's records (what EventSource listeners subscribe to).
EVENT_NAMES = {Feed.tracks: "track", Feed.counts: "count", Feed.alerts: "alert", Feed.zone_stats: "zone-stats",
               Feed.camera_events: "camera-event"}
DESCRIPTION = (
    "Server-sent events. Each record is one event whose `data` is the record's JSON as on the topic (see "
    "`schemas/`) and whose `id` is the feed position after it. Reconnect with the `Last-Event-ID` header (browsers "
    "do it by themselves) to continue exactly there, on any API process. Events: `hello` (first, with the starting "
    "position), the feed's records, `dropped` (events older than this API process holds were skipped), and "
    "comment heartbeats. A camera's feed may be opened before the camera is known (it starts with its first "
    "record), so an id no camera has gives an empty feed, not the 404 of the camera's REST routes."
)


async def _feed_events(request: Request, feed: Feed, camera_id: str | None, cursor: dict[int, int] | None):
    """One feed's events (of one camera, or of all), counted in the metrics; BadCursor for a cursor not of it."""
    hub, metrics = request.app.state.hub, request.app.state.metrics
    ring = hub.rings[feed.value]
    if cursor:
        check_partitions(ring, cursor)
    lost = await past_the_log(ring, cursor) if cursor else set()
    key = camera_id.encode() if camera_id else None

    async def counted():
        metrics.clients.labels(feed.value).inc()
        try:
            async for event in events(
                ring, cursor, (lambda m: m.key == key) if key else (lambda m: True), EVENT_NAMES[feed],
                hub.settings.api.heartbeat_s,
                on_sent=metrics.sent.labels(feed.value).inc, on_dropped=metrics.dropped.labels(feed.value).inc,
                past_the_log=lost,
            ):
                yield event
        finally:
            metrics.clients.labels(feed.value).dec()

    return counted()


def _respond(stream) -> EventSourceResponse:
    # Heartbeats come from the generator (so they follow the feed's own idle time); sse-starlette's ping is off.
    return EventSourceResponse(stream, ping=3600, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _stream(request: Request, feed: Feed, camera_id: str | None, header: str | None,
                  query: str | None) -> EventSourceResponse:
    try:
        return _respond(await _feed_events(request, feed, camera_id, parse_cursor(header or query)))
    except BadCursor as exc:
        raise _bad_position(exc, header) from None


def _bad_position(exc: BadCursor, header: str | None) -> HTTPException:
    """A 400 that names what gave the position: the header, or the query parameter (it said the header always)."""
    return HTTPException(status_code=400, detail=f"{'Last-Event-ID' if header else 'last_event_id'} {exc}")


LastEventIdHeader = Annotated[str | None, Header(alias="Last-Event-ID", description="Resume after this event id")]
LastEventIdQuery = Annotated[str | None, Query(description="Same as the Last-Event-ID header, for clients that cannot set headers")]
CameraId = Annotated[str, Path(pattern=CAMERA_ID_PATTERN)]
SSE_RESPONSE = {200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "An endless stream of events"}}


@router.get("/alerts", response_model=AlertsNow, summary="Active and recent alerts of every camera",
            description="`recent`: the last `limit` alert events (raised and cleared), oldest first (`limit=0`: none, "
            "for the active alerts alone); `active`: every "
            "alert raised and not cleared, as this API process holds them. The `X-Feed-Position` header is the alerts "
            "feed's position right after them: open `/alerts/stream` with it as `last_event_id` to go on with no "
            "gap and no repeat (the dashboard does).")
async def all_alerts(request: Request, response: Response, limit: Annotated[int, Query(ge=0, le=1000)] = 100):
    hub = request.app.state.hub
    # The read model and the ring's position move together (TopicRing._add), with no await between them here.
    response.headers["X-Feed-Position"] = format_cursor(hub.rings["alerts"].next)
    recent, active = hub.alerts_of(None)
    return AlertsNow(active=active, recent=recent[-limit:] if limit else [])


FEED_ITEM = re.compile(rf"^(?P<feed>{'|'.join(f.value for f in Feed)})(?::(?P<camera>{CAMERA_ID_PATTERN[1:-1]}))?$")


# Each feed of a stream reads the topic on its own: a page needs a few (the dashboard three), a wall of cameras some
# dozens, and a client that asked for hundreds in every connection cost the API a core.
MAX_FEEDS_PER_STREAM = 64


def _feed_items(feeds: str) -> list[tuple[str, Feed, str | None]]:
    items = []
    if feeds.count(",") >= MAX_FEEDS_PER_STREAM:
        raise _bad_feeds(feeds, f"{feeds.count(',') + 1} feeds: a stream takes at most {MAX_FEEDS_PER_STREAM} (open "
                                "another for more)")
    for item in feeds.split(","):
        found = FEED_ITEM.match(item.strip())
        if not found:
            raise _bad_feeds(feeds, (
                f"{quoted_in_brief(item.strip())} is not a feed: give FEED or FEED:CAMERA_ID, comma-separated, FEED one of "
                f"{', '.join(f.value for f in Feed)}"))
        items.append((found.group(0), Feed(found.group("feed")), found.group("camera")))
    names = [name for name, _, _ in items]
    if len(set(names)) != len(names):
        twice = next(name for i, name in enumerate(names) if name in names[:i])
        raise _bad_feeds(feeds, f"{quoted_in_brief(twice)} is named twice")
    return items


def _bad_feeds(feeds: str, reason: str) -> HTTPException:
    """A 422 in FastAPI's list of errors, as every other 422 of the API."""
    return HTTPException(status_code=422, detail=[{"type": "value_error", "loc": ["query", "feeds"],
                                                   "msg": f"feeds: {reason}", "input": brief(feeds)}])


@router.get("/stream", summary="Several feeds in one stream (what the dashboard opens)", responses=SSE_RESPONSE,
            response_class=EventSourceResponse,
            description="`feeds`: comma-separated, each a feed of every camera (`alerts`) or of one (`tracks:cam-1`). "
            "A browser opens at most six connections to a host: one stream for a page's feeds leaves it room. At most "
            f"{MAX_FEEDS_PER_STREAM} feeds a stream. "
            "Events as in each feed; `hello` and `dropped` name their feed in `data`. An event's `id` is every "
            "feed's position, `name=p:o,...;name=p:o,...` (a feed's part as its own stream gives it, so the "
            "`X-Feed-Position` of a listing can start one: `alerts=0:12,1:9`); a feed the id does not name "
            "starts from now.")
async def stream_several(
    request: Request,
    feeds: Annotated[str, Query(max_length=2000, examples=["alerts,tracks:cam-1,counts:cam-1"])],
    last_event_id: LastEventIdQuery = None, last_event_id_header: LastEventIdHeader = None,
):
    items = _feed_items(feeds)
    try:
        cursors = parse_positions(last_event_id_header or last_event_id, [name for name, _, _ in items])
        streams = {name: await _feed_events(request, feed, camera, cursors.get(name)) for name, feed, camera in items}
    except BadCursor as exc:
        raise _bad_position(exc, last_event_id_header) from None
    return _respond(merged(streams))


@router.get("/{feed}/stream", summary="Feed of all cameras", description=DESCRIPTION, responses=SSE_RESPONSE,
            response_class=EventSourceResponse)
async def stream_all(request: Request, feed: Feed, last_event_id: LastEventIdQuery = None,
                     last_event_id_header: LastEventIdHeader = None):
    return await _stream(request, feed, None, last_event_id_header, last_event_id)


@router.get("/cameras/{camera_id}/{feed}/stream", summary="Feed of one camera", description=DESCRIPTION,
            responses=SSE_RESPONSE, response_class=EventSourceResponse)
async def stream_camera(request: Request, camera_id: CameraId, feed: Feed, last_event_id: LastEventIdQuery = None,
                        last_event_id_header: LastEventIdHeader = None):
    return await _stream(request, feed, camera_id, last_event_id_header, last_event_id)
