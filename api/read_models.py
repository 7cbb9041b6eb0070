"""Read models the API builds from the topics: cameras, what each camera's tracks say (for /metrics), counts and
their windows, zone figures, alerts, camera events, workers, dead letters.

They are folds of the topics and nothing more: the API decides nothing. Each
``apply`` is called by a :class:`~api.topic_ring.TopicRing` for every message it reads.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import Callable

from api.topic_ring import Message
from its_faust.codecs import SchemaError, decode, decode_or_none
from schemas.analytics import Alert, CountUpdate, ZoneStats
from schemas.camera_events import CameraEvent
from schemas.dead_letters import DeadLetter
from schemas.tracks import TrackRecord
from schemas.control import CameraConfig
from schemas.workers import WorkerStatus

# How many minute (and quarter-hour) windows of history the API keeps per count key.
HISTORY_WINDOWS = 24 * 60
WINDOW_S = {"1m": 60.0, "15m": 900.0}


class CamerasByPartition:
    """Which topic partition each camera's records came from: a partition whose log the broker lost (an
    in-memory broker restarted) takes what the read models built from it along (``TopicRing.on_reset``)."""

    def __init__(self):
        self._partition: dict[str, int] = {}

    def note(self, camera_id: str, partition: int) -> None:
        self._partition[camera_id] = partition

    def take(self, partition: int) -> list[str]:
        cameras = [c for c, p in self._partition.items() if p == partition]
        for camera_id in cameras:
            del self._partition[camera_id]
        return cameras

    def forget(self, cameras: set[str]) -> None:
        for camera_id in cameras:
            self._partition.pop(camera_id, None)


class HeardCameras:
    """Which unconfigured cameras a read model holds figures of: the ``max_cameras`` heard from most recently.
    Any producer may write a topic: a flood of made-up camera ids must not grow the API without end, nor push
    out a configured camera's figures (``configured``: whether a camera is one; those are never counted here).
    Past the limit, the least recently heard tenth goes at once (``note`` returns them), so that what a read
    model holds of them goes in one pass."""

    def __init__(self, max_cameras: int, configured: Callable[[str], bool] = lambda camera_id: False):
        self.max_cameras = max_cameras
        self.configured = configured
        self._order: OrderedDict[str, None] = OrderedDict()

    def note(self, camera_id: str) -> set[str]:
        if self.configured(camera_id):
            self._order.pop(camera_id, None)
            return set()
        self._order[camera_id] = None
        self._order.move_to_end(camera_id)
        gone: set[str] = set()
        if len(self._order) > self.max_cameras:
            while len(self._order) > self.max_cameras * 0.9:
                gone.add(self._order.popitem(last=False)[0])
        return {camera_id for camera_id in gone if not self.configured(camera_id)}  # (configured since)


class Cameras:
    def __init__(self, on_removed: Callable[[CameraConfig], None] | None = None):
        self.configs: dict[str, CameraConfig] = {}
        self._partitions = CamerasByPartition()
        self.on_removed = on_removed  # told of each removal (what other read models hold of the camera goes)

    def apply(self, m: Message) -> None:
        try:
            config = m.decoded(CameraConfig)
        except SchemaError:
            return
        self._partitions.note(config.camera_id, m.partition)
        self.put(config)

    def forget_partition(self, partition: int) -> None:
        for camera_id in self._partitions.take(partition):
            self.configs.pop(camera_id, None)

    def put(self, config: CameraConfig) -> None:
        """A configuration the API just saw applied (the topic will bring it too)."""
        known = self.configs.get(config.camera_id)
        if known is None or config.version >= known.version:
            self.configs[config.camera_id] = config
            if config.removed and self.on_removed is not None:
                self.on_removed(config)

    def get(self, camera_id: str) -> CameraConfig | None:
        config = self.configs.get(camera_id)
        return None if config is None or config.removed else config

    def is_configured(self, camera_id: str) -> bool:
        return self.get(camera_id) is not None

    def removed(self, camera_id: str) -> bool:
        """Whether the camera was configured and then removed (and not added again)."""
        config = self.configs.get(camera_id)
        return config is not None and config.removed

    def all(self) -> list[CameraConfig]:
        return sorted((c for c in self.configs.values() if not c.removed), key=lambda c: c.camera_id)


class FramesArriving:
    """Per camera: when its newest frame was sent (``its.frames``' Kafka time), whether or not anything tracked it,
    so that a camera whose frames come while no worker tracks them is told from one that stopped sending.
    Bounded like TrackedCameras (any producer may write the topic)."""

    def __init__(self, max_cameras: int = 10_000):
        self.max_cameras = max_cameras
        self.sent_at: OrderedDict[bytes, float] = OrderedDict()

    def apply(self, m: Message) -> None:
        if not m.key:
            return
        # Sent at most now: one frame stamped in the future (any producer may) must not keep it "arriving".
        self.sent_at[m.key] = max(min(m.timestamp, time.time()), self.sent_at.get(m.key, float("-inf")))
        self.sent_at.move_to_end(m.key)
        if len(self.sent_at) > self.max_cameras:
            self.sent_at.popitem(last=False)

    def newest(self, camera_id: str) -> float | None:
        return self.sent_at.get(camera_id.encode())


class TrackedCameras:
    """Per camera: frames tracked since the API started, and the newest track record.

    A frame's record that comes again (a worker replaced before it committed tracks it again: same seq)
    is not counted again: a seq not above the camera's last is a repeat, unless it is over
    ``RESTARTED_BELOW`` below it (a producer that started its seqs again).
    Bounded like CameraEvents: the ``max_cameras`` heard from most recently (any producer may write).
    """

    RESTARTED_BELOW = 1_000  # (as the tracker judges it: its_faust/seqs_behind.py)

    def __init__(self, max_cameras: int = 10_000):
        self.max_cameras = max_cameras
        self.frames: OrderedDict[bytes, int] = OrderedDict()
        self.newest: dict[bytes, Message] = {}
        self._last_seq: dict[bytes, int] = {}

    def apply(self, m: Message) -> None:
        if not m.key:
            return
        seq = m.record.seq if isinstance(m.record, TrackRecord) else None
        last = self._last_seq.get(m.key)
        if seq is not None and last is not None and last - self.RESTARTED_BELOW <= seq <= last:
            return  # a frame tracked again
        if seq is not None:
            self._last_seq[m.key] = seq
        self.frames[m.key] = self.frames.get(m.key, 0) + 1
        self.frames.move_to_end(m.key)
        self.newest[m.key] = m
        if len(self.frames) > self.max_cameras:
            gone, _ = self.frames.popitem(last=False)
            self.newest.pop(gone, None)
            self._last_seq.pop(gone, None)

    def frame_size(self, camera_id: str) -> tuple[int, int] | None:
        """(width, height) of the camera's newest tracked frame; None when none is held (or it does not decode)."""
        message = self.newest.get(camera_id.encode())
        record = decode_or_none(TrackRecord, message.value) if message else None
        return (record.width, record.height) if record else None

    def silent_for(self, camera_id: str, seconds: float, now: float) -> bool:
        """Whether the camera's newest track record held was tracked over ``seconds`` before ``now`` (wall
        clock). A camera none of whose records is held is not judged: False."""
        message = self.newest.get(camera_id.encode())
        record = decode_or_none(TrackRecord, message.value) if message else None
        return record is not None and now - record.tracked_at > seconds

    def latest(self) -> list[tuple[TrackRecord, int]]:
        """Each camera's newest track record and how many were read, by camera id (records that do not decode left out)."""
        out = []
        for key, count in self.frames.items():
            try:
                out.append((decode(TrackRecord, self.newest[key].value), count))
            except SchemaError:
                continue
        return sorted(out, key=lambda pair: pair[0].camera_id)


class CurrentFigures:
    """The current records of each camera (keyed by camera first), gone when it is removed or its log is lost.
    Bounded: the configured cameras, and the ``max_cameras`` others heard from most recently (:class:`HeardCameras`)."""

    def __init__(self, max_cameras: int = 10_000, configured: Callable[[str], bool] = lambda camera_id: False):
        self.latest: dict[tuple, object] = {}
        self._partitions = CamerasByPartition()
        self._removed_at: dict[str, float] = {}  # camera -> when it was last removed
        self._heard = HeardCameras(max_cameras, configured)

    def _current(self, m: Message, schema: type):
        """``m`` decoded, or None: not a ``schema`` record (any producer may write a topic), or one of a camera removed since."""
        try:
            record = m.decoded(schema)
        except SchemaError:
            return None
        if record.captured_at <= self._removed_at.get(record.camera_id, float("-inf")):
            return None  # of a camera removed since (the rings fill side by side at start)
        self._partitions.note(record.camera_id, m.partition)
        gone = self._heard.note(record.camera_id)
        if gone:
            self._forget(gone)
            self._partitions.forget(gone)
        return record

    def camera_removed(self, config: CameraConfig) -> None:
        """A removed camera's lines and zones went with it: it has no current figures (a count history stays)."""
        self._removed_at[config.camera_id] = config.updated_at
        for key in [k for k in self.latest if k[0] == config.camera_id]:
            del self.latest[key]

    def forget_partition(self, partition: int) -> None:
        """Figures from a lost log would hide the new ones (they start again from 0) until they passed them."""
        self._forget(set(self._partitions.take(partition)))

    def _forget(self, cameras: set[str]) -> None:
        """Everything held of these cameras."""
        for key in [k for k in self.latest if k[0] in cameras]:
            del self.latest[key]

    def has(self, camera_id: str) -> bool:
        return any(k[0] == camera_id for k in self.latest)


class Counts(CurrentFigures):
    """Latest totals per (camera, line, direction, class), and per-window counts over time."""

    def __init__(self, max_cameras: int = 10_000, configured: Callable[[str], bool] = lambda camera_id: False):
        super().__init__(max_cameras, configured)
        self.latest: dict[tuple[str, str, str, str], CountUpdate] = {}
        # (camera, window) -> OrderedDict[start -> {(line, direction, label): count}]
        self.history: dict[tuple[str, str], OrderedDict] = {}

    def apply(self, m: Message) -> None:
        u = self._current(m, CountUpdate)
        if u is None:
            return
        key = (u.camera_id, u.line, u.direction, u.label)
        known = self.latest.get(key)
        if known is not None and (u.line_version, u.total) < (known.line_version, known.total):
            return  # an older update (or one of the line before it was added again)
        if known is None or u.line_version > known.line_version:
            # The line was added again: its other directions and classes from before are not its counts now.
            for k in [k for k, v in self.latest.items() if k[:2] == key[:2] and v.line_version < u.line_version]:
                del self.latest[k]
        self.latest[key] = u
        for name, window in (("1m", u.minute), ("15m", u.quarter)):
            windows = self.history.setdefault((u.camera_id, name), OrderedDict())
            slot = windows.setdefault(window.start, {})
            # (version, count): a window in which the line was added again shows the new line's count.
            slot[key[1:]] = max(slot.get(key[1:], (0, 0)), (u.line_version, window.count))
            while len(windows) > HISTORY_WINDOWS:
                windows.popitem(last=False)

    def _forget(self, cameras: set[str]) -> None:
        super()._forget(cameras)
        for key in [k for k in self.history if k[0] in cameras]:
            del self.history[key]

    def current(self, camera_id: str, config: CameraConfig | None = None) -> list[CountUpdate]:
        """The camera's totals by line, direction and class; with its configuration, only those of the lines it has
        now, as added now (a line removed, or removed and added again since, is not counting them)."""
        return [u for k, u in sorted(self.latest.items()) if k[0] == camera_id and _counts_line_now(u, config)]

    def all_current(self, config_of: Callable[[str], CameraConfig | None]) -> list[CountUpdate]:
        """``current`` of every camera in one pass (``config_of``: a camera's configuration, or None)."""
        return [u for k, u in sorted(self.latest.items()) if _counts_line_now(u, config_of(k[0]))]

    def idle(self, camera_id: str, config: CameraConfig | None) -> list[str]:
        """The camera's lines with no current count held: none crossed since it was added (or not in what the API has read)."""
        if config is None:
            return []
        held = {u.line for u in self.current(camera_id, config)}
        return sorted(line.name for line in config.lines if line.name not in held)

    def has(self, camera_id: str) -> bool:
        return super().has(camera_id) or any(k[0] == camera_id for k in self.history)

    def windows(self, camera_id: str, window: str, shed: CameraEvents | None = None) -> list[dict]:
        """The windows with crossings, oldest first; with ``shed``, also those in which live frames were shed,
        and in each how many (``frames_shed``: its counts miss what those frames showed)."""
        size = WINDOW_S[window]
        history = self.history.get((camera_id, window), {})
        shed_by_window = shed.shed_by_window(camera_id, size) if shed is not None else {}
        out = []
        for start in sorted(set(history) | set(shed_by_window)):
            counts = history.get(start, {})
            out.append({
                "start": start, "end": start + size,
                "counts": [{"line": l, "direction": d, "label": c, "count": n}
                           for (l, d, c), (_, n) in sorted(counts.items())],
                **({"frames_shed": shed_by_window.get(start, 0)} if shed is not None else {}),
            })
        return out


def _counts_line_now(u: CountUpdate, config: CameraConfig | None) -> bool:
    if config is None:
        return True  # not configured (or not read yet): nothing to judge by
    return (any(line.name == u.line for line in config.lines)
            and u.line_version >= config.line_versions.get(u.line, 0))


class Zones(CurrentFigures):
    """Each zone's latest figures: occupancy now, entries and exits since it was added, the current windows."""

    def __init__(self, max_cameras: int = 10_000, configured: Callable[[str], bool] = lambda camera_id: False):
        super().__init__(max_cameras, configured)
        self.latest: dict[tuple[str, str], ZoneStats] = {}

    def apply(self, m: Message) -> None:
        stats = self._current(m, ZoneStats)
        if stats is None:
            return
        key = (stats.camera_id, stats.zone)
        known = self.latest.get(key)
        # Every zone event adds one entry or exit: a record with fewer than the figure held is an older one that
        # landed late (a refused batch-mate sent again on its own lands after its camera's later records); a
        # redelivered one has as many, and may stand.
        if known is not None and (stats.zone_version, stats.entries + stats.exits) < (known.zone_version,
                                                                                      known.entries + known.exits):
            return
        self.latest[key] = stats

    def current(self, camera_id: str, config: CameraConfig | None) -> list[ZoneStats]:
        """The camera's zones, by name; with its configuration, only the zones it has now, as added now (one removed,
        or removed and added again since, has no figures yet)."""
        return [s for (camera, _), s in sorted(self.latest.items()) if camera == camera_id and _zone_now(s, config)]

    def all_current(self, config_of: Callable[[str], CameraConfig | None]) -> list[ZoneStats]:
        """``current`` of every camera in one pass (``config_of``: a camera's configuration, or None)."""
        return [s for (camera, _), s in sorted(self.latest.items()) if _zone_now(s, config_of(camera))]

    def idle(self, camera_id: str, config: CameraConfig | None) -> list[str]:
        """The camera's zones with no current figures held: none entered since it was added (or not in what the API has read)."""
        if config is None:
            return []
        held = {s.zone for s in self.current(camera_id, config)}
        return sorted(z.name for z in config.zones if z.name not in held)


def _zone_now(s: ZoneStats, config: CameraConfig | None) -> bool:
    if config is None:
        return True  # not configured (or not read yet): nothing to judge by
    return config.zone(s.zone) is not None and s.zone_version >= config.zone_versions.get(s.zone, 0)


class Alerts:
    """Recent alerts, and those raised and not yet cleared (of the configured cameras, and the ``max_cameras``
    others heard from most recently: a producer's made-up cameras' alerts, never cleared, must not grow the
    API without end)."""

    def __init__(self, keep: int = 1000, max_cameras: int = 10_000,
                 configured: Callable[[str], bool] = lambda camera_id: False):
        self.recent: deque[Alert] = deque(maxlen=keep)
        self.active: dict[str, Alert] = {}
        self._partitions = CamerasByPartition()
        self._removed_at: dict[str, float] = {}  # camera -> when it was last removed
        self._heard = HeardCameras(max_cameras, configured)

    def camera_removed(self, config: CameraConfig) -> None:
        """A removed camera sends no more frames, so its actor never clears what it raised: those alerts
        are over. (The rings fill side by side at start: an alert read after the removal is judged by time.)"""
        self._removed_at[config.camera_id] = config.updated_at
        self.active = {k: a for k, a in self.active.items()
                       if a.camera_id != config.camera_id or a.captured_at > config.updated_at}

    def apply(self, m: Message) -> None:
        try:
            alert = m.decoded(Alert)
        except SchemaError:
            return
        self._partitions.note(alert.camera_id, m.partition)
        gone = self._heard.note(alert.camera_id)
        if gone:
            self._partitions.forget(gone)
            self._end_active(gone)
        if alert.state == "raised":
            if alert.alert_id in self.active:
                return  # a re-emitted copy
            if alert.captured_at > self._removed_at.get(alert.camera_id, float("-inf")):
                self.active[alert.alert_id] = alert
        elif self.active.pop(alert.alert_id, None) is None and any(a.alert_id == alert.alert_id and a.state == "cleared" for a in self.recent):
            return
        self.recent.append(alert)

    def forget_partition(self, partition: int) -> None:
        """Alerts raised in a lost log are never cleared there: they are no longer active."""
        self._end_active(set(self._partitions.take(partition)))

    def _end_active(self, cameras: set[str]) -> None:
        self.active = {k: a for k, a in self.active.items() if a.camera_id not in cameras}

    def raised_on(self, camera_id: str, seq: int) -> list[Alert]:
        """The alerts held that were raised with frame ``seq`` of the camera as their snapshot."""
        alerts = {a.alert_id: a for a in [*self.recent, *self.active.values()]
                  if a.state == "raised" and a.snapshot.camera_id == camera_id and a.snapshot.seq == seq}
        return list(alerts.values())

    def for_camera(self, camera_id: str | None) -> tuple[list[Alert], list[Alert]]:
        recent = [a for a in self.recent if camera_id is None or a.camera_id == camera_id]
        active = [a for a in self.active.values() if camera_id is None or a.camera_id == camera_id]
        return recent, active


class CameraEvents:
    """The last events of each camera's stream (started, frames rejected, stream lost, ...), newest last.

    Bounded both ways: ``keep_per_camera`` events each, and the ``max_cameras`` cameras heard from
    most recently (the topic is open to any producer: a flood of made-up camera ids must not grow
    the API without end).
    """

    def __init__(self, keep_per_camera: int = 100, max_cameras: int = 10_000):
        self.keep = keep_per_camera
        self.max_cameras = max_cameras
        self.by_camera: OrderedDict[str, deque[CameraEvent]] = OrderedDict()
        # camera -> OrderedDict[minute start -> live frames shed, by the reports made in that minute]
        self.shed_minutes: dict[str, OrderedDict[float, int]] = {}
        self.shed_total: dict[str, int] = {}  # camera -> live frames shed, as reported since the API started

    def apply(self, m: Message) -> None:
        try:
            event = m.decoded(CameraEvent)
        except SchemaError:
            return
        events = self.by_camera.get(event.camera_id)
        if events is None:
            events = self.by_camera[event.camera_id] = deque(maxlen=self.keep)
            if len(self.by_camera) > self.max_cameras:
                self.by_camera.popitem(last=False)
        self.by_camera.move_to_end(event.camera_id)
        events.append(event)
        if event.frames_shed:
            minutes = self.shed_minutes.setdefault(event.camera_id, OrderedDict())
            minute = event.at // 60 * 60
            minutes[minute] = minutes.get(minute, 0) + event.frames_shed
            while len(minutes) > HISTORY_WINDOWS:
                minutes.popitem(last=False)
            self.shed_total[event.camera_id] = self.shed_total.get(event.camera_id, 0) + event.frames_shed
            for by_camera in (self.shed_minutes, self.shed_total):
                if len(by_camera) > self.max_cameras:
                    by_camera.pop(next(iter(by_camera)))

    def shed_lately(self, now: float) -> dict[str, int]:
        """Per camera that shed any: live frames shed, as reported in this minute and the one before."""
        since = now // 60 * 60 - 60
        lately = {camera: sum(n for minute, n in minutes.items() if minute >= since)
                  for camera, minutes in self.shed_minutes.items()}
        return {camera: n for camera, n in sorted(lately.items()) if n}

    def shed_by_window(self, camera_id: str, size: float) -> dict[float, int]:
        """Live frames of the camera shed (so not counted), as reported, by the start of each ``size``-second window."""
        windows: dict[float, int] = {}
        for minute, n in self.shed_minutes.get(camera_id, {}).items():
            start = minute // size * size
            windows[start] = windows.get(start, 0) + n
        return windows

    def recent(self, camera_id: str, limit: int) -> list[CameraEvent]:
        """The camera's last ``limit`` events, newest first."""
        events = self.by_camera.get(camera_id, ())
        return list(reversed(events))[:limit]


class Workers:
    """Each worker's latest report (``its.workers``) and what it means now: running, recovering, stopped
    (it said so as it stopped) or gone (silent for ``SILENT_INTERVALS`` of its own report intervals:
    killed, cut off or frozen). Stopped and gone workers are forgotten after ``forget_after_s``."""

    SILENT_INTERVALS = 3

    def __init__(self, forget_after_s: float = 600.0, max_workers: int = 1000, away_between=None):
        self.forget_after_s = forget_after_s
        self.max_workers = max_workers  # any producer may write the topic: made-up ids must not grow the API
        self.latest: OrderedDict[str, WorkerStatus] = OrderedDict()
        # away_between(since, now): seconds the broker did not answer the API in between. A worker is judged silent
        # over the rest only, so a broker the API cannot reach does not make every worker "gone", neither while it
        # lasts nor for the moments after it in which their reports have not been read again.
        self.away_between = away_between

    def apply(self, m: Message) -> None:
        try:
            status = m.decoded(WorkerStatus)
        except SchemaError:
            return
        known = self.latest.get(status.worker)
        if known is not None and status.at < known.at:
            return
        self.latest[status.worker] = status
        self.latest.move_to_end(status.worker)
        if len(self.latest) > self.max_workers:
            self.latest.popitem(last=False)

    def state(self, status: WorkerStatus, now: float) -> str:
        silent_s = now - status.at - (self.away_between(status.at, now) if self.away_between else 0.0)
        if status.state != "stopped" and silent_s > self.SILENT_INTERVALS * status.interval_s:
            return "gone"
        return status.state

    def view(self, now: float) -> list[dict]:
        """Every worker not long gone or stopped, by id: its last report, its state now, how long ago it spoke."""
        for worker, status in list(self.latest.items()):
            if self.state(status, now) in ("stopped", "gone") and now - status.at > self.forget_after_s:
                del self.latest[worker]
        return [self._view(status, now) for _, status in sorted(self.latest.items())]

    def _view(self, status: WorkerStatus, now: float) -> dict:
        view = {**status.model_dump(mode="json", by_alias=False, exclude={"schema_", "v"}),
                "state": self.state(status, now), "reported_s_ago": round(max(0.0, now - status.at), 1)}
        if view["state"] == "gone":  # its partitions went to the others (or wait for one): it holds none
            view["last_partitions"], view["partitions"] = view["partitions"], []
        return view

    def serving(self, now: float) -> list[WorkerStatus]:
        """The workers that report in time and have not stopped (running or recovering)."""
        return [s for s in self.latest.values() if self.state(s, now) in ("running", "recovering")]


class DeadLetters:
    """What the stages dead-lettered (``its.dead-letters``), as the API has read it: counts by key and stage,
    and the last ``keep_per_key`` letters of each key, without their payloads (``its-faust tail dead-letters``
    shows those). Keys are camera ids, or whatever a producer put there: the ``max_keys`` keys heard
    from most recently are kept."""

    def __init__(self, keep_per_key: int = 20, max_keys: int = 10_000):
        self.keep = keep_per_key
        self.max_keys = max_keys
        self.counts: OrderedDict[str, dict[str, int]] = OrderedDict()  # key -> stage -> letters
        self._recent: dict[str, deque[dict]] = {}

    def apply(self, m: Message) -> None:
        try:
            letter = m.decoded(DeadLetter)
        except SchemaError:
            return
        key = letter.key.decode("utf-8", "replace") if letter.key is not None else ""
        stages = self.counts.setdefault(key, {})
        stages[letter.stage] = stages.get(letter.stage, 0) + 1
        self.counts.move_to_end(key)
        if len(self.counts) > self.max_keys:
            self._recent.pop(self.counts.popitem(last=False)[0], None)
        self._recent.setdefault(key, deque(maxlen=self.keep)).append({
            "stage": letter.stage, "topic": letter.topic, "partition": letter.partition, "offset": letter.offset,
            "key": key, "reason": letter.reason, "failed_at": letter.failed_at, "bytes": len(letter.value),
        })

    def view(self, key: str | None, limit: int) -> dict:
        """The counts of one key (or of the ``limit`` keys heard from most recently) and the newest ``limit``
        letters of those, newest first."""
        keys = [key] if key is not None else list(self.counts)[-limit:]
        recent = sorted((d for k in keys for d in self._recent.get(k, ())), key=lambda d: d["failed_at"], reverse=True)
        return {"counts": {k: dict(self.counts[k]) for k in keys if k in self.counts}, "recent": recent[:limit]}
