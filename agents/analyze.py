"""Stage 3: tracks -> line crossings, zone events and alerts, one analytics actor per camera.

The actor reads its camera's configuration from the ``camera-config`` table
(same key, same partition, same worker) and keeps its memory in
``camera-analytics``. Like the tracker it is idempotent by frame seq, and its
state is written only once the broker holds the outputs of the frames it covers
(:mod:`tables.checkpoints`); a crash can repeat a crossing (same seq, same track)
but never lose one, and the count tables apply each crossing once.

A camera's actor acts only on its frames, so when they stop (a stream that ended or
was lost, a removed camera) nothing would clear its alerts or empty its zones: a
task beside the agent closes a camera silent for ``analytics.camera_silent_s``
(:mod:`agents.silent_cameras`).
"""

from __future__ import annotations

import logging

from agents.analytics_output import log_alerts, records_of
from agents.silent_cameras import SilentCameras
from its_faust import topics
from its_faust.app import app, settings
from its_faust.background import tied_to_current_task
from its_faust.codecs import encode
from its_faust.dead_letters import valid_records
from its_faust.delivery import Acknowledger
from schemas import TrackRecord
from tables.analytics_table import analytics_cache
from tables.checkpoints import Checkpoints
from tables.config_table import config_at

log = logging.getLogger(__name__)


@app.agent(topics.tracks, name="analyze")
async def analyze(stream):
    async with Checkpoints(app, stream, analytics_cache(), "analyze", interval_s=settings.state_flush_interval_s) as checkpoints:
        silent = SilentCameras(checkpoints, settings.analytics.camera_silent_s)
        closer = tied_to_current_task(silent.run(), "analyze: closing silent cameras") if silent.silent_s > 0 else None
        try:
            async with Acknowledger(stream, "analyze") as acks:  # (acknowledges the frames dead-lettered for what they are)
                await _analyze(stream, acks, checkpoints, silent)
        finally:
            if closer is not None:
                closer.cancel()


async def _analyze(stream, acks: Acknowledger, checkpoints, silent: SilentCameras) -> None:
    async for event, record in valid_records(stream, TrackRecord, acks, ack=False, admitted=silent.took):
        silent.heard(event, record)
        async with checkpoints.step(event) as step:
            try:
                actor = step.actor(record.camera_id)
                if record.seq <= actor.last_seq:
                    continue  # a redelivered (or re-emitted) frame: already applied
                config = config_at(event.key, record.tracked_at)  # (a line added since counts from then on)
                if actor.idle_under(config):
                    actor.idle_frame(record)
                    continue
                out = actor.update(record, config)
                silent.paced(event.key, actor.silent_s())
            except Exception as exc:  # a bug (or unreadable stored state) must not stop the other cameras
                log.exception("analyze: %s seq %s failed", record.camera_id, record.seq)
                checkpoints.restart_camera(event.key, record.camera_id, _apply_again)
                await step.dead_letter(f"internal error: {exc!r}")
                continue
            for topic, item in records_of(out):
                await step.send(topic, encode(item), timestamp=item.at)
            step.changed(actor, (record, config))
        log_alerts(out)


def _apply_again(actor, applied) -> None:
    """A frame applied since the last flush, applied again to a rebuilt actor with the configuration
    it had then (its outputs are out already)."""
    record, config = applied
    actor.update(record, config)
