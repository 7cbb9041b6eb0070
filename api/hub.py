"""The API's one piece of state: the topic rings and the read models built on them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from api.broker_probe import BrokerProbe
from api.live import LiveView
from api.topic_ring import Message, TopicRing
from api.read_models import (Alerts, CameraEvents, Cameras, Counts, DeadLetters, FramesArriving, TrackedCameras, Workers,
                              Zones)
from api.snapshots import AlertSnapshots
from its_faust.broker import BrokerMemoryNote, LocalBrokerProcess
from its_faust.codecs import decode_keyed
from its_faust.topic_reader import GroupOffsetsReader
from its_faust.topic_names import (
    ALERTS, CAMERA_COMMANDS, CAMERA_CONFIGS, CAMERA_EVENTS, COUNTS, DEAD_LETTERS, DETECTIONS, FRAMES, TRACKS, WORKERS, ZONE_STATS,
    ensure_topics,
)
from schemas import CameraEvent, TrackRecord
from schemas.analytics import Alert, CountUpdate, ZoneStats

# A camera with a frame tracked this recently is live (a live camera's frames take well under a second).
LIVE_WITHIN_S = 10.0
# A removed camera is listed as such this long (as a stopped worker is), unless it has an alert active: each
# `replay --source` on a shared broker removes a camera of its own, and each stayed in the list for as long as the
# API held a frame of it.
REMOVED_LISTED_S = 600.0


def keyed_record(record_type):
    """A ring's check of its records: the record decoded, if it is a ``record_type`` of its key's camera
    (:class:`SchemaError` otherwise)."""
    def check(m: Message):
        return decode_keyed(record_type, m.key, m.value)

    return check


class Hub:
    def __init__(self, bootstrap: str, settings):
        self.bootstrap = bootstrap
        self.settings = settings
        size = settings.api.ring_size
        self.cameras = Cameras(on_removed=self._camera_removed)
        # Bounded in the cameras no configuration names (any producer may invent them): see HeardCameras.
        configured = self.cameras.is_configured
        self.counts, self.zones = Counts(configured=configured), Zones(configured=configured)
        self.alerts, self.camera_events = Alerts(configured=configured), CameraEvents()
        self.broker = BrokerProbe(bootstrap)
        # The embedded broker keeps every frame and slows as it fills (a trial: 23 fps down to 18 at 1 GB): told in
        # /ready when it runs on this machine, since only the process that started it said so (in its log).
        self.broker_memory = BrokerMemoryNote.for_settings(LocalBrokerProcess(bootstrap), settings)
        # Silent workers are judged over the time the broker answered: one it stopped answering made them "gone".
        self.workers = Workers(away_between=self.broker.away_between)
        self.frames_arriving = FramesArriving()
        self.dead_letters = DeadLetters()
        self.tracked = TrackedCameras()
        topic = settings.topic

        def ring(name: str, capacity: int, **kwargs) -> TopicRing:
            return TopicRing(bootstrap, topic(name), capacity, fetch_max_wait_ms=settings.fetch_max_wait_ms, **kwargs)

        self.rings = {  # the first five are the SSE feeds: their records must be what the feed says
            "tracks": ring(TRACKS, size, on_message=self._on_track, check=keyed_record(TrackRecord)),
            "counts": ring(COUNTS, size, on_message=self.counts.apply, on_reset=self.counts.forget_partition,
                           check=keyed_record(CountUpdate)),
            "alerts": ring(ALERTS, size, on_message=self._on_alert, on_reset=self.alerts.forget_partition,
                           check=keyed_record(Alert)),
            "zone-stats": ring(ZONE_STATS, size, on_message=self.zones.apply, on_reset=self.zones.forget_partition,
                               check=keyed_record(ZoneStats)),
            "camera-events": ring(CAMERA_EVENTS, size, on_message=self.camera_events.apply,
                                  check=keyed_record(CameraEvent)),
            "frames": ring(FRAMES, settings.api.frames_ring, keep_s=settings.api.frames_keep_s,
                           max_bytes=settings.api.frames_memory_mb << 20, on_message=self.frames_arriving.apply),
            # Each worker's latest reports (every few seconds each): enough to know every recent worker.
            "workers": ring(WORKERS, 200, on_message=self.workers.apply),
            # Counted as they come; few held, as a dead frame is a whole JPEG (the read model keeps the reasons).
            "dead-letters": ring(DEAD_LETTERS, 50, on_message=self.dead_letters.apply),
            # Every configuration since the beginning: the camera list must be complete.
            "configs": ring(CAMERA_CONFIGS, 100, from_beginning=True, on_message=self.cameras.apply,
                            on_reset=self.cameras.forget_partition),
        }

        self.snapshots = AlertSnapshots(self.rings["frames"], self.rings["tracks"], self.cameras)
        self.live = LiveView(self.rings["frames"], self.rings["tracks"])
        # The workers' commits and the logs' ends, for /ready and /metrics (the lag). Camera commands too:
        # queued with no worker to apply them, they are work waiting.
        self.group_offsets = GroupOffsetsReader(bootstrap, settings.app_id,
                                                [topic(t) for t in (FRAMES, DETECTIONS, TRACKS, CAMERA_COMMANDS)])

    def _camera_removed(self, config) -> None:
        self.alerts.camera_removed(config)
        self.counts.camera_removed(config)
        self.zones.camera_removed(config)
        self.tracked.camera_removed(config)

    def knows(self, camera_id: str) -> bool:
        """Whether the camera is configured or any record of it is held: a camera's routes answer 404 otherwise
        (a camera that only sends frames, with no configuration, is known by them)."""
        if self.cameras.get(camera_id) is not None or camera_id in self.camera_events.by_camera:
            return True
        if self.counts.has(camera_id) or self.zones.has(camera_id) or any(self.alerts.for_camera(camera_id)):
            return True
        key = camera_id.encode()
        if key in self.tracked.frames:
            return True
        frames = self.rings["frames"]  # a camera whose frames are not tracked yet (no worker, say)
        return any(m.key == key for partition in frames.partitions for m in frames.latest(partition, frames.capacity))

    def alerts_of(self, camera_id: str | None) -> tuple[list[Alert], list[Alert]]:
        """(recent, active) alerts of the camera (None: of all). An active one of a camera silent for
        ``analytics.camera_silent_s`` is over: a worker closes such a camera, clearing it, but none may be
        left to do so (``run`` stops its own with the clip; every worker is down); the stream says
        "cleared" once one does, or once the camera is back."""
        recent, active = self.alerts.for_camera(camera_id)
        silent_s = self.settings.analytics.camera_silent_s
        if silent_s > 0 and active:
            now = time.time()  # one look per camera: a camera may have many alerts, each look decodes a record
            silent = {c for c in {a.camera_id for a in active} if self.tracked.silent_for(c, silent_s, now)}
            active = [a for a in active if a.camera_id not in silent]
        return recent, active

    def camera_activity(self, now: float) -> list[dict]:
        """Each camera at a glance, configured or with tracks or active alerts held (by id): whether it is live (a frame of it
        tracked within ``LIVE_WITHIN_S``), its newest frame's age, what is in view, frames tracked since the API
        started and its active alerts; what a control room scans for a camera that stopped or needs a look."""
        latest = {record.camera_id: (record, count) for record, count in self.tracked.latest()}
        _, active = self.alerts_of(None)
        alerts = Counter(a.camera_id for a in active)
        silent_s = self.settings.analytics.camera_silent_s
        shed = self.camera_events.shed_lately(now)
        # The broker does not answer this API: what the cameras do now is not known (each read "stopped", its frames
        # unread, though it may be live for the workers: a broker-outage trial).
        broker_away = not self.broker.up
        listed = []
        for camera_id in sorted({c.camera_id for c in self.cameras.all()} | set(latest) | set(alerts)):
            config = self.cameras.get(camera_id)
            record, count = latest.get(camera_id, (None, 0))
            removed = self.cameras.removed(camera_id)
            if removed and not alerts.get(camera_id) and now - self.tracked.removed_at(camera_id, now) > REMOVED_LISTED_S:
                continue
            if record is not None and not removed and self.tracked.before_removal(record):
                record = None  # of before it was removed: added again since, it has sent no frame
            age = max(0.0, now - record.tracked_at) if record else None
            # A camera removed is over at once (its frames are refused), though its last frames were tracked lately:
            # it read "removed" and live, with what was in view then.
            live = age is not None and age <= LIVE_WITHIN_S and not removed and not broker_away
            sent_at = self.frames_arriving.newest(camera_id)
            arriving = sent_at is not None and now - sent_at <= LIVE_WITHIN_S
            state = ("removed" if removed else "unknown" if broker_away else "live" if live else "untracked" if arriving
                     else "stopped" if record else "no_frames")
            listed.append({
                "camera_id": camera_id, "name": config.name if config else None, "configured": config is not None,
                "state": state, "live": live,
                "last_tracked_at": record.tracked_at if record else None, "last_frame_age_s": age,
                "frames_tracked": count,
                # A camera silent past camera_silent_s is closed by the workers: nothing is in view any more.
                "objects": len(record.objects) if record and not removed and not (0 < silent_s < age) else 0,
                "alerts_active": alerts.get(camera_id, 0),
                # Live is not keeping up: a camera of 8 fps tracked at 0.2 read "live" like any other.
                "frames_shed_lately": shed.get(camera_id, 0),
            })
        return listed

    def _on_track(self, m) -> None:
        self.tracked.apply(m)
        self.snapshots.track_arrived(m)

    def _on_alert(self, m) -> None:
        self.alerts.apply(m)
        self.snapshots.apply(m)

    async def start(self) -> "Hub":
        await ensure_topics(self.bootstrap, self.settings)
        await asyncio.gather(*(ring.start() for ring in self.rings.values()))
        self.broker.start()
        return self

    async def stop(self) -> None:
        await asyncio.gather(*(ring.stop() for ring in self.rings.values()), self.group_offsets.close(), self.broker.stop())
