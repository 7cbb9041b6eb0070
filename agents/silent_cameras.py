"""Beside the analyze agent: closing the cameras whose frames stopped.

A camera's analytics actor acts only on its frames, so when they stop (a stream that
ended or was lost, a removed camera) nothing would clear its alerts or empty its zones.
:class:`SilentCameras` closes a camera this worker holds once it has been silent for
``analytics.camera_silent_s`` with none of its partition's frames waiting
(:meth:`tables.camera_analytics.CameraAnalytics.close`), and writes the closed state
to the table once the broker holds what the close sent, so that it is not undone.

The cameras it watches are those whose frames this worker took, and those it took over
(a restart, a rebalance) left open in the table, tracks in zones or alerts active, with
no frame of theirs since: their silence counts from the takeover. Without the second
kind a camera that stopped just before its worker was replaced was never closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from agents.analytics_output import log_alerts, records_of
from its_faust import topics
from its_faust.app import app, settings, stall_watchdog
from its_faust.codecs import encode
from its_faust.delivery import send
from its_faust.broker import bootstrap_servers
from its_faust.topic_reader import group_offsets, partition_for
from schemas import TrackRecord
from tables.camera_analytics import Moment

log = logging.getLogger(__name__)


@dataclass
class LastFrame:
    """What the closer knows of a camera's last frame."""

    camera_id: str
    seq: int
    scene_time: float | None
    partition: int
    heard: float  # monotonic time it was taken (or the camera taken over)
    event: Any  # its event, or a stand-in: Faust writes a table key in the partition of the event it is given
    upstream_ends: dict[str, int] | None = None  # frames and detections of its partition when first found silent
    silent_s: float | None = None  # its own limit (a slow camera's: CameraAnalytics.silent_s); None: the closer's

    def passed_upstream(self, offsets: dict[tuple[str, int], tuple[int, int]]) -> bool:
        """Whether what was on its way to analyze when the camera was first found silent (frames and detections
        of its partition) has gone through detect and track since: had its frames been there, they would have
        come. A camera's frames can stop reaching analyze for a while (detect or track behind, or restarting, on
        another worker) without the camera stopping: closed then, a file camera, whose scene clock shows no gap,
        re-entered every zone under the same track ids. The first call notes the ends, and says no."""
        mine = {topic: (done, end) for (topic, partition), (done, end) in offsets.items() if partition == self.partition}
        if self.upstream_ends is None or any(end < self.upstream_ends.get(topic, 0) for topic, (_, end) in mine.items()):
            # (noted again where a log went back: a broker that lost its logs)
            self.upstream_ends = {topic: end for topic, (_, end) in mine.items()}
            return False
        return all(mine.get(topic, (end, end))[0] >= end for topic, end in self.upstream_ends.items())

    def silence(self, now: float) -> str:
        """The camera's silence, in words, as this worker knows it (``now``: monotonic)."""
        if isinstance(self.event, _TakenOver):  # its last frame came before this worker held it: how long, it cannot tell
            return f"no frames since this worker took the camera over, {now - self.heard:.0f} s ago"
        return f"no frames for {now - self.heard:.0f} s"

    @classmethod
    def of(cls, event, record: TrackRecord) -> "LastFrame":
        return cls(record.camera_id, record.seq, record.scene_time, event.message.partition, time.monotonic(), event)


class _TakenOver:
    """Stands for the last frame of a camera taken over with none of its frames since (see :class:`LastFrame`)."""

    __slots__ = ("key", "message", "__weakref__")

    def __init__(self, key: bytes, topic: str, partition: int):
        self.key = key
        self.message = SimpleNamespace(topic=topic, partition=partition, offset=None)


class SilentCameras:
    def __init__(self, checkpoints, silent_s: float):
        self.checkpoints = checkpoints
        self.silent_s = silent_s
        self.last_frames: dict[bytes, LastFrame] = {}  # per camera
        self.taken: dict[int, int] = {}  # per partition: the offset after the last frame taken
        self._held: set[int] = set()  # the tracks partitions whose cameras left open in the table are known
        self._held_in: int | None = None  # the consumer generation they were held in

    def heard(self, event, record: TrackRecord) -> None:
        """A frame of the camera was taken (its own silence limit kept: a frame skipped as a redelivery or as idle
        is not applied, and does not set it again)."""
        before = self.last_frames.get(event.key)
        self.last_frames[event.key] = LastFrame.of(event, record)
        if before is not None:
            self.last_frames[event.key].silent_s = before.silent_s

    def paced(self, key: bytes, silent_s: float) -> None:
        """The camera's own silence limit, as its actor judges it from its pace (after its frame was applied)."""
        last = self.last_frames.get(key)
        if last is not None:
            last.silent_s = silent_s

    def _silent(self, last: LastFrame, now: float) -> bool:
        return now - last.heard >= (last.silent_s or self.silent_s)

    def took(self, event) -> None:
        """A record of the partition was taken, a frame or one dead-lettered: the closer waits for none after it."""
        partition = event.message.partition
        self.taken[partition] = max(self.taken.get(partition, 0), event.message.offset + 1)

    async def run(self) -> None:
        """Every few seconds: close the cameras silent for ``silent_s``.

        While the worker does not read (the broker does not answer, a rebalance, a table recovery) no frame
        can come: that silence is not the cameras'. Their clocks start again once it reads. Whether frames
        wait is asked of the broker each time (its partitions' ends now), not taken from the consumer's
        last fetch, which a worker that has not fetched since an outage or a rebalance still holds."""
        worker_was_away = False
        while True:
            await asyncio.sleep(max(0.5, self.silent_s / 4))
            now = time.monotonic()
            settled = not (app.rebalancing or app.in_recovery)
            if settled:
                self._note_cameras_taken_over(now)
            if not any(self._silent(last, now) for last in self.last_frames.values()):
                continue
            ends, generation = None, app.consumer_generation_id
            if settled and await stall_watchdog.broker_answers():
                ends = await _log_ends(app.consumer, {last.partition for last in self.last_frames.values()})
            if ends is None:
                worker_was_away = True
                continue
            if worker_was_away:
                worker_was_away = False
                for last in self.last_frames.values():
                    last.heard = max(last.heard, now)
                continue
            silent = []
            for key, last in list(self.last_frames.items()):
                if not self._silent(last, now):
                    continue
                if last.partition not in ends:
                    del self.last_frames[key]  # its partition went to another worker, which judges it now
                    continue
                if ends[last.partition] > self.taken.get(last.partition, 0):
                    continue  # frames of its partition wait: they may be its own
                silent.append((key, last))
            upstream = await _upstream_offsets({last.partition for _, last in silent}) if silent else None
            if upstream is None:
                continue  # none silent, or not known: judged again at the next look
            for key, last in silent:
                if last.passed_upstream(upstream):  # (else what was on its way then may be its frames)
                    await self._close(key, last, now, generation)

    async def _close(self, key: bytes, last: LastFrame, now: float, generation: int | None) -> None:
        checkpoints = self.checkpoints
        async with checkpoints.between_frames():
            # This loop awaits (the lock, the sends) between cameras: a frame of this one that
            # came meanwhile replaced its entry, and the camera is not silent after all; or a
            # rebalance began, and the camera may be another worker's now (it judges it then).
            if self.last_frames.get(key) is not last or not self._still_held(last.partition, generation):
                return
            del self.last_frames[key]
            scene_time = last.scene_time + (now - last.heard) if last.scene_time is not None else None
            actor = checkpoints.cache.get(key, last.camera_id)
            out = actor.close(Moment(last.camera_id, last.seq, time.time(), scene_time), last.silence(now))
            sent = [await send(last.event, topic, encode(item), timestamp=item.at) for topic, item in records_of(out)]
            await checkpoints.write_between_frames(key, actor, last.event, sent, generation)
        if out.alerts or out.zone_events:
            log.info("analyze: %s closed, %s: %d alerts cleared, %d zone exits", last.camera_id,
                     last.silence(now), len(out.alerts), len(out.zone_events))
        log_alerts(out)

    @staticmethod
    def _still_held(partition: int, generation: int | None) -> bool:
        return (not app.rebalancing and app.consumer_generation_id == generation
                and TP(topics.tracks.get_topic_name(), partition) in app.consumer.assignment())

    def _note_cameras_taken_over(self, now: float) -> None:
        """The cameras of the tracks partitions this worker got since the last look (in a rebalance since, every
        partition it holds: one may have been another's in between) that the table says were left open
        (another worker's, or this one's before a restart), with no frame of theirs taken since."""
        topic = topics.tracks.get_topic_name()
        held = {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}
        known = self._held if self._held_in == app.consumer_generation_id else set()
        new, self._held, self._held_in = held - known, held, app.consumer_generation_id
        if not new:
            return
        for partition in new:  # what the group had committed there is taken: a frame waiting is one after it
            committed = app.consumer.next_to_commit(TP(topic, partition))
            self.taken[partition] = max(self.taken.get(partition, 0), committed or 0)
        partitions = app.consumer.topic_partitions(topic) or settings.partitions
        cache = self.checkpoints.cache
        for key in list(cache.table.keys()):
            partition = partition_for(key, partitions)
            if partition not in new or key in self.last_frames:
                continue
            try:
                actor = cache.get(key, key.decode())
            except Exception as exc:  # (its next frame dead-letters what cannot be read)
                log.warning("analyze: camera %r's stored state could not be read (%r)", key, exc)
                continue
            self.checkpoints.looked_at(key, partition, keep=actor.is_open())
            if actor.is_open():
                self.last_frames[key] = LastFrame(actor.camera_id, actor.last_seq, actor.last_at, partition, now,
                                                  _TakenOver(key, topic, partition), silent_s=actor.silent_s())
                log.info("analyze: %s was left open (tracks in view or alerts active) with no frame since; closed "
                         "if none comes within %.0f s", actor.camera_id, actor.silent_s())


async def _upstream_offsets(partitions: set[int]) -> dict[tuple[str, int], tuple[int, int]] | None:
    """Per (topic, partition) of frames and detections, these partitions: (committed by the group, log end);
    None if the broker could not be asked."""
    try:
        return await asyncio.wait_for(
            group_offsets(bootstrap_servers(settings.broker), settings.app_id,
                          [topics.frames.get_topic_name(), topics.detections.get_topic_name()], partitions), 5.0)
    except Exception as exc:
        log.debug("analyze: the frames and detections waiting could not be asked (%r)", exc)
        return None


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
