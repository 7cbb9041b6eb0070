"""Stage 3: tracks -> line crossings, zone events and alerts, one analytics actor per camera.

The actor reads its camera's configuration from the ``camera-config`` table
(same key, same partition, same worker) and keeps its memory in
``camera-analytics``. Like the tracker it is idempotent by frame seq, and its
state is written only once the broker holds the outputs of the frames it covers
(:mod:`tables.checkpoints`); a crash can repeat a crossing (same seq, same track)
but never lose one, and the count tables apply each crossing once.

A camera's actor acts only on its frames, so when they stop (a stream that ended or
was lost, a removed camera) nothing would clear its alerts or empty its zones: a
task beside the agent closes a camera silent for ``analytics.camera_silent_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from faust.types import TP

from its_faust import topics
from its_faust.app import app, settings, stall_watchdog
from its_faust.background import tied_to_current_task
from its_faust.codecs import encode
from its_faust.dead_letters import valid_records
from its_faust.delivery import Acknowledger
from schemas import TrackRecord
from tables.analytics_table import analytics_cache
from tables.camera_analytics import FrameOutput, Moment
from tables.checkpoints import Checkpoints
from tables.config_table import current_config

log = logging.getLogger(__name__)


@dataclass
class _LastFrame:
    record: TrackRecord
    partition: int
    heard: float  # monotonic time it was taken


@app.agent(topics.tracks, name="analyze")
async def analyze(stream):
    async with Checkpoints(app, stream, analytics_cache(), "analyze", interval_s=settings.state_flush_interval_s) as checkpoints:
        last_frames: dict[bytes, _LastFrame] = {}  # per camera
        taken: dict[int, int] = {}  # per partition: the offset after the last frame taken
        silent_s = settings.analytics.camera_silent_s
        closer = tied_to_current_task(_close_silent_cameras(checkpoints, last_frames, taken, silent_s),
                                      "analyze: closing silent cameras") if silent_s > 0 else None
        try:
            async with Acknowledger(stream, "analyze") as acks:  # (acknowledges the frames dead-lettered for what they are)
                await _analyze(stream, acks, checkpoints, last_frames, taken)
        finally:
            if closer is not None:
                closer.cancel()


async def _analyze(stream, acks: Acknowledger, checkpoints, last_frames: dict, taken: dict) -> None:
    def took(event) -> None:  # a dead-lettered record is taken too: the closer waits for none after it
        partition = event.message.partition
        taken[partition] = max(taken.get(partition, 0), event.message.offset + 1)

    async for event, record in valid_records(stream, TrackRecord, acks, ack=False, admitted=took):
        last_frames[event.key] = _LastFrame(record, event.message.partition, time.monotonic())
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
                await step.dead_letter(f"internal error: {exc!r}")
                continue
            for topic, item in _records(out):
                await step.send(topic, encode(item), timestamp=item.at)
            step.changed(actor, (record, config))
        _log_alerts(out)


async def _close_silent_cameras(checkpoints, last_frames: dict, taken: dict, silent_s: float) -> None:
    """Every few seconds: a camera this worker holds whose frames stopped ``silent_s`` ago, with none of its
    partition's waiting (a busy worker is not a silent camera), is closed (CameraAnalytics.close).

    While the worker does not read (the broker does not answer, a rebalance, a table recovery) no frame
    can come: that silence is not the cameras'. Their clocks start again once it reads. Whether frames
    wait is asked of the broker each time (its partitions' ends now), not taken from the consumer's
    last fetch, which a worker that has not fetched since an outage or a rebalance still holds."""
    consumer = app.consumer
    worker_was_away = False
    while True:
        await asyncio.sleep(max(0.5, silent_s / 4))
        now = time.monotonic()
        if not any(now - last.heard >= silent_s for last in last_frames.values()):
            continue
        ends = None
        if not (app.rebalancing or app.in_recovery) and await stall_watchdog.broker_answers():
            ends = await _log_ends(consumer, {last.partition for last in last_frames.values()})
        if ends is None:
            worker_was_away = True
            continue
        if worker_was_away:
            worker_was_away = False
            for last in last_frames.values():
                last.heard = max(last.heard, now)
            continue
        for key, last in list(last_frames.items()):
            if now - last.heard < silent_s:
                continue
            if last.partition not in ends:
                del last_frames[key]  # its partition went to another worker, which judges it now
                continue
            if ends[last.partition] > taken.get(last.partition, 0):
                continue  # frames of its partition wait: they may be its own
            async with checkpoints.between_frames():
                # This loop awaits (the lock, the sends) between cameras: a frame of this one that
                # came meanwhile replaced its entry, and the camera is not silent after all.
                if last_frames.get(key) is not last:
                    continue
                del last_frames[key]
                record = last.record
                scene_time = record.scene_time + (now - last.heard) if record.scene_time is not None else None
                moment = Moment(record.camera_id, record.seq, time.time(), scene_time)
                out = checkpoints.cache.get(key, record.camera_id).close(moment, f"no frames for {now - last.heard:.0f} s")
            for topic, item in _records(out):
                await topic.send(key=key, value=encode(item), timestamp=item.at)
            if out.alerts or out.zone_events:
                log.info("analyze: %s sent no frames for %.0f s: %d alerts cleared, %d zone exits", record.camera_id,
                         now - last.heard, len(out.alerts), len(out.zone_events))
            _log_alerts(out)


async def _log_ends(consumer, partitions: set[int]) -> dict[int, int] | None:
    """The broker's log end of each of these tracks partitions this worker holds now (the others left
    out); None if it could not be asked."""
    topic = topics.tracks.get_topic_name()
    held = [TP(topic, partition) for partition in partitions if TP(topic, partition) in consumer.assignment()]
    try:
        ends = await asyncio.wait_for(consumer.highwaters(*held), 5.0) if held else {}
    except Exception as exc:
        log.debug("analyze: the tracks partitions' ends could not be asked (%r)", exc)
        return None
    return {tp.partition: end for tp, end in ends.items()}


def _records(out: FrameOutput):
    for topic, items in ((topics.crossings, out.crossings), (topics.zone_events, out.zone_events),
                         (topics.alerts, out.alerts)):
        for item in items:
            yield topic, item


def _log_alerts(out: FrameOutput) -> None:
    for alert in out.alerts:
        log.info("analyze: %s alert %s %s: %s", alert.camera_id, alert.state, alert.alert_id, alert.message)


def _apply_again(actor, applied) -> None:
    """A frame applied since the last flush, applied again to a rebuilt actor with the configuration
    it had then (its outputs are out already)."""
    record, config = applied
    actor.update(record, config)
