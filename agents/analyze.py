"""Stage 3: tracks -> line crossings, zone events and alerts, one analytics actor per camera.

The actor reads its camera's configuration from the ``camera-config`` table
(same key, same partition, same worker) and keeps its memory in
``camera-analytics``. Like the tracker it is idempotent by frame seq, and its
outputs are on the broker before its state moves on; a crash can repeat a
crossing (same seq, same track) but never lose one, and the count tables apply
each crossing once.
"""

from __future__ import annotations

import logging

from its_faust import topics
from its_faust.app import app
from its_faust.codecs import encode
from its_faust.dead_letters import dead_letter, valid_records
from schemas import TrackRecord
from tables.analytics_table import analytics_cache
from tables.config_table import current_config

log = logging.getLogger(__name__)


@app.agent(topics.tracks, name="analyze")
async def analyze(stream):
    actors = analytics_cache()
    async for event, record in valid_records(stream, TrackRecord, "analyze"):
        try:
            actor = actors.get(event.key, record.camera_id)
            if record.seq <= actor.last_seq:
                continue  # a redelivered (or re-emitted) frame: already applied
            config = current_config(event.key)
            if actor.idle_under(config):
                continue
            out = actor.update(record, config)
        except Exception as exc:  # a bug (or unreadable stored state) must not stop the other cameras
            log.exception("analyze: %s seq %s failed", record.camera_id, record.seq)
            actors.forget(event.key)
            await dead_letter("analyze", event, f"internal error: {exc!r}")
            continue
        try:
            acks = [
                await topic.send(key=event.key, value=encode(item), timestamp=item.at)
                for topic, items in ((topics.crossings, out.crossings), (topics.zone_events, out.zone_events),
                                     (topics.alerts, out.alerts))
                for item in items
            ]
            for ack in acks:
                await ack
        except BaseException:
            # Not delivered: the state must not move on without its outputs. The frame stays
            # uncommitted and comes again (its outputs then repeat with the same seq, and the
            # count tables take each once); dead-lettering it would count its crossings on the next frame.
            actors.forget(event.key)
            raise
        actors.save(event.key, actor)
        for alert in out.alerts:
            log.info("analyze: %s alert %s %s: %s", alert.camera_id, alert.state, alert.alert_id, alert.message)
