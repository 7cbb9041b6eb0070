"""Every Kafka topic of the pipeline, keyed by camera id so one camera's records stay in order (its.workers: by worker).

Values are raw bytes (JSON records from :mod:`schemas`); agents decode them
with :mod:`its_faust.codecs` so that bad input can be dead-lettered with a reason.
The names and schemas are the integrator interface; see docs/architecture.md.
"""

from __future__ import annotations

import logging

from its_faust.app import app, settings
from its_faust.codecs import encode
from its_faust.topic_names import (
    CAMERA_COMMANDS,
    CAMERA_EVENTS,
    CAMERA_CONFIGS,
    COUNTS,
    CROSSINGS,
    ALERTS,
    ZONE_EVENTS,
    ZONE_STATS,
    DEAD_LETTERS,
    DETECTIONS,
    FRAMES,
    TRACKS,
    WORKERS,
    retention_s,
)


def _topic(name: str):
    return app.topic(
        settings.topic(name),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        retention=retention_s(name, settings),  # as ensure_topics creates it
    )


frames = _topic(FRAMES)
detections = _topic(DETECTIONS)
tracks = _topic(TRACKS)
dead_letters = _topic(DEAD_LETTERS)
camera_events = _topic(CAMERA_EVENTS)
camera_commands = _topic(CAMERA_COMMANDS)
camera_configs = _topic(CAMERA_CONFIGS)
crossings = _topic(CROSSINGS)
counts = _topic(COUNTS)
zone_events = _topic(ZONE_EVENTS)
zone_stats = _topic(ZONE_STATS)
alerts = _topic(ALERTS)
workers = _topic(WORKERS)  # keyed by worker id, not camera id

log = logging.getLogger(__name__)


async def send_camera_event(event) -> None:
    """A :class:`schemas.CameraEvent` on its camera's key; None sends nothing (reporters return None when
    nothing is due).

    A send that fails is logged, not raised: a report is worth less than the work it reports on (a frame's
    detections, a dead letter), and a timer that raises stops the whole worker."""
    if event is None:
        return
    try:
        await camera_events.send(key=event.camera_id.encode(), value=encode(event))
    except Exception as exc:
        log.warning("camera %s: its %s event was not sent (%r)", event.camera_id, event.kind.value, exc)
