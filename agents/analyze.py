"""Stage 3: tracks -> line crossings, zone events and alerts, one analytics actor per camera.

The actor reads its camera's configuration from the ``camera-config`` table
(same key, same partition, same worker) and keeps its memory in
``camera-analytics``. Like the tracker it is idempotent by frame seq, and its
state is written only once the broker holds the outputs of the frames it covers
(:mod:`tables.checkpoints`); a crash can repeat a crossing (same seq, same track)
but never lose one, and the count tables apply each crossing once.
"""

from __future__ import annotations

import logging

from its_faust import topics
from its_faust.app import app, settings
from its_faust.codecs import encode
from its_faust.dead_letters import dead_letter, valid_records
from schemas import TrackRecord
from tables.analytics_table import analytics_cache
from tables.checkpoints import Checkpoints
from tables.config_table import current_config

log = logging.getLogger(__name__)


@app.agent(topics.tracks, name="analyze")
async def analyze(stream):
    async with Checkpoints(app, stream, analytics_cache(), "analyze", interval_s=settings.state_flush_interval_s) as checkpoints:
        async for event, record in valid_records(stream, TrackRecord, "analyze", ack=False):
            async with checkpoints.step(event) as step:
                try:
                    actor = step.actor(record.camera_id)
                    if record.seq <= actor.last_seq:
                        continue  # a redelivered (or re-emitted) frame: already applied
                    config = current_config(event.key)
                    if actor.idle_under(config):
                        continue
                    out = actor.update(record, config)
                except Exception as exc:  # a bug (or unreadable stored state) must not stop the other cameras
                    log.exception("analyze: %s seq %s failed", record.camera_id, record.seq)
                    checkpoints.restart_camera(event.key, record.camera_id, _apply_again)
                    await dead_letter("analyze", event, f"internal error: {exc!r}")
                    continue
                for topic, items in ((topics.crossings, out.crossings), (topics.zone_events, out.zone_events),
                                     (topics.alerts, out.alerts)):
                    for item in items:
                        await step.send(topic, encode(item), timestamp=item.at)
                step.changed(actor, (record, config))
            for alert in out.alerts:
                log.info("analyze: %s alert %s %s: %s", alert.camera_id, alert.state, alert.alert_id, alert.message)


def _apply_again(actor, applied) -> None:
    """A frame applied since the last flush, applied again to a rebuilt actor with the configuration
    it had then (its outputs are out already)."""
    record, config = applied
    actor.update(record, config)
