"""The pipeline's results read from outside a worker (tracks, counts, any record of a camera), and a run's summary."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from its_faust.codecs import SchemaError, decode
from its_faust.topic_names import COUNTS, TRACKS
from its_faust.topic_reader import TopicReader
from schemas import TrackRecord
from schemas.analytics import Alert, CountUpdate, Crossing, ZoneEvent
from tables.speed import speed_stats


class RecordFeed:
    """Records of one type and camera from one topic, from when the feed started (or the beginning)."""

    def __init__(self, bootstrap: str, topic: str, record_type, camera_id: str, *, from_beginning: bool = False):
        self.reader = TopicReader(bootstrap, topic, from_beginning=from_beginning, keys=[camera_id.encode()])
        self.record_type = record_type
        self.camera_id = camera_id
        self.records: list = []

    async def start(self):
        await self.reader.start()
        return self

    async def poll(self, timeout_ms: int = 100) -> int:
        """Reads what has arrived; returns how many messages (of any camera) came in."""
        messages = await self.reader.poll(timeout_ms)
        for message in messages:
            try:
                record = decode(self.record_type, message.value)
            except SchemaError:
                continue
            if record.camera_id == self.camera_id:
                self.add(record)
        return len(messages)

    def add(self, record) -> None:
        self.records.append(record)

    async def drain(self) -> None:
        while await self.poll(200):
            pass

    async def stop(self) -> None:
        await self.reader.stop()


class CountFeed(RecordFeed):
    """Count updates of one camera since the feed started: crossings per (line, direction, class).

    Totals in the tables run since a line was added; the feed counts from the first update it
    sees, so a run on a camera that already had the line reports that run's crossings only.
    """

    def __init__(self, bootstrap: str, settings, camera_id: str):
        super().__init__(bootstrap, settings.topic(COUNTS), CountUpdate, camera_id)
        self.latest: dict[tuple[str, str, str], CountUpdate] = {}
        self._before: dict[tuple[str, str, str], int] = {}

    def add(self, update: CountUpdate) -> None:
        key = (update.line, update.direction, update.label)
        self._before.setdefault(key, update.total - 1)
        if key not in self.latest or update.total >= self.latest[key].total:
            self.latest[key] = update

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """line -> direction -> class -> crossings."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (line, direction, label), update in sorted(self.latest.items()):
            out.setdefault(line, {}).setdefault(direction, {})[label] = update.total - self._before[(line, direction, label)]
        return out


class TrackFeed:
    """Track records (of every camera, or of the ones named), first copy of each ``(camera, seq)`` only."""

    def __init__(self, bootstrap: str, settings, *, from_beginning: bool = False, cameras: Collection[str] | None = None):
        keys = [camera.encode() for camera in cameras] if cameras is not None else None
        # A feed lives as long as its run or demo: poll several partitions as a worker does, not every 10 ms.
        self.reader = TopicReader(bootstrap, settings.topic(TRACKS), from_beginning=from_beginning, keys=keys,
                                  many_partitions_wait_ms=settings.fetch_max_wait_ms)
        self.seen: dict[tuple[str, int], TrackRecord] = {}
        self.duplicates: list[TrackRecord] = []
        self.invalid = 0

    async def start(self) -> "TrackFeed":
        await self.reader.start()
        return self

    async def poll(self, timeout_ms: int = 200) -> list[TrackRecord]:
        new = []
        for message in await self.reader.poll(timeout_ms):
            try:
                record = decode(TrackRecord, message.value)
            except SchemaError:
                self.invalid += 1
                continue
            key = (record.camera_id, record.seq)
            if key in self.seen:
                self.duplicates.append(record)
                continue
            self.seen[key] = record
            new.append(record)
        return new

    async def stop(self) -> None:
        await self.reader.stop()


@dataclass
class RunSummary:
    source: str
    camera_id: str
    # Stopped (Ctrl-C, SIGTERM) before the source's end: the figures cover the frames sent until then.
    stopped_early: bool = False
    frames_read: int = 0
    frames_in: int = 0
    frames_rejected: int = 0
    frames_sampled: int = 0  # of frames_in: sent while the picture was frozen (frame_quality.StillSceneSampler)
    frames_tracked: int = 0
    duplicate_track_records: int = 0
    frames_with_detections: int = 0
    detections: int = 0
    distinct_track_ids: int = 0
    fps: float = 0.0  # end to end: frames tracked / (last frame tracked - ingest start)
    # Between the first and the last frame tracked, as the plain Ultralytics loop is timed (bench).
    throughput_fps: float = 0.0
    wall_s: float = 0.0
    # The scene time the tracked frames span (a file's video time, first to last frame tracked): the
    # denominator of a rate per hour, where wall_s is how long the processing took.
    scene_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    # Where the time goes: capture -> detection emitted, and detection -> track emitted (p50).
    stage_p50_ms: dict[str, float] = field(default_factory=dict)
    workers: int = 1  # the workers this run started (0: it used those already running on the broker)
    # host:pid of each worker that tracked the frames (more than one: the camera moved, as when one stopped)
    tracked_by: list[str] = field(default_factory=list)
    model: str = ""
    # CPU milliseconds per frame tracked, by process (broker, each worker, camera and reader), and in all;
    # cores_busy is their CPU time over the run's wall time; cores_busy_elsewhere and cores_stolen are
    # what other processes and the hypervisor took meanwhile (a disturbed run shows there).
    cpu_ms_per_frame: dict[str, float] = field(default_factory=dict)
    cores_busy: float = 0.0
    cores_busy_elsewhere: float | None = 0.0  # None: a process of the run died, so its CPU cannot be told apart
    cores_stolen: float = 0.0
    missing_seqs: list[int] = field(default_factory=list)
    # What the camera had on the broker before this run and kept (``line y120``, ``zone lanes``,
    # ``calibration``, ``speed limit``): counted and reported like what the run was given.
    kept_from_before: list[str] = field(default_factory=list)
    # What the camera had under the same name, defined otherwise, that this run replaced (its counts start again).
    replaced_from_before: list[str] = field(default_factory=list)
    # line -> direction -> class -> vehicles that crossed (the lines given, and any kept)
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    # line -> which way on screen the traffic counted "in" and "out" moves ({"in": "down", "out": "up"})
    line_travel: dict[str, dict[str, str]] = field(default_factory=dict)
    # line -> direction -> n, mean_kmh, p85_kmh of the speeds vehicles crossed at (calibrated cameras)
    line_speeds: dict[str, dict[str, dict]] = field(default_factory=dict)
    # zone -> entries, exits, occupancy at the end, mean dwell and speed (the zones given, and any kept)
    zones: dict[str, dict] = field(default_factory=dict)
    alerts: list[dict] = field(default_factory=list)

    @classmethod
    def build(cls, source: str, stats, records: list[TrackRecord], duplicates: int, workers: int) -> "RunSummary":
        records = sorted(records, key=lambda r: r.seq)
        tracked = {r.seq for r in records}
        latencies = np.array([(r.tracked_at - r.captured_at) * 1000 for r in records]) if records else np.zeros(0)
        wall = (max(r.tracked_at for r in records) - stats.started_at) if records else 0.0
        return cls(
            source=source,
            camera_id=stats.camera_id,
            stopped_early=stats.stopped_early,
            frames_read=stats.frames_read,
            frames_in=stats.frames_sent,
            frames_rejected=stats.frames_rejected,
            frames_sampled=stats.frames_sampled,
            frames_tracked=len(tracked),
            duplicate_track_records=duplicates,
            frames_with_detections=sum(1 for r in records if r.detections),
            detections=sum(r.detections for r in records),
            distinct_track_ids=len({o.track_id for r in records for o in r.objects}),
            fps=round(len(tracked) / wall, 2) if wall > 0 else 0.0,
            throughput_fps=_throughput(records),
            wall_s=round(wall, 3),
            scene_s=round(records[-1].at - records[0].at, 3) if records else 0.0,
            latency_ms={
                f"p{q}": round(float(np.percentile(latencies, q)), 1) for q in (50, 95, 99)
            }
            if len(latencies)
            else {},
            stage_p50_ms={
                "to_detected": round(float(np.median([(r.detected_at - r.captured_at) * 1000 for r in records])), 1),
                "to_tracked": round(float(np.median([(r.tracked_at - r.detected_at) * 1000 for r in records])), 1),
            }
            if records
            else {},
            workers=workers,
            tracked_by=sorted({r.worker for r in records}),
            model=records[0].model if records else "",
            missing_seqs=[s for s in stats.sent_seqs if s not in tracked][:100],
        )


def _throughput(records: list[TrackRecord]) -> float:
    """Frames per second after the first one came out: the pipeline's rate once it is full."""
    times = sorted(r.tracked_at for r in records)
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return round((len(times) - 1) / (times[-1] - times[0]), 2)


def line_speeds(crossings: list[Crossing]) -> dict[str, dict[str, dict]]:
    """line -> direction -> n, mean_kmh, p85_kmh of the speeds vehicles crossed it at (only crossings with a
    speed: a calibrated camera, the line within its calibrated area)."""
    speeds: dict[str, dict[str, list[float]]] = {}
    for c in crossings:
        if c.speed_kmh is not None:
            speeds.setdefault(c.line, {}).setdefault(c.direction, []).append(c.speed_kmh)
    return {line: {d: speed_stats(v).model_dump() for d, v in sorted(by_direction.items())}
            for line, by_direction in sorted(speeds.items())}


def zone_summary(events: list[ZoneEvent]) -> dict:
    """One zone over a run: entries, exits, occupancy at the end, mean dwell and speed of those that left."""
    exits = [e for e in events if e.kind == "exit"]
    dwell = [e.dwell_s for e in exits if e.dwell_s is not None]
    speeds = [e.mean_speed_kmh for e in exits if e.mean_speed_kmh is not None]
    return {
        "entries": sum(1 for e in events if e.kind == "enter"),
        "exits": len(exits),
        "occupancy_at_end": events[-1].occupancy if events else 0,
        "mean_dwell_s": round(sum(dwell) / len(dwell), 2) if dwell else None,
        "mean_speed_kmh": round(sum(speeds) / len(speeds), 2) if speeds else None,
    }


def alert_summary(alert: Alert, start_at: float | None) -> dict:
    """An alert as run's and replay's summaries give it; ``since_start_s``: seconds from the first frame
    (``start_at``, on the scene clock) to the frame it was raised or cleared on, so for a clip its place in it."""
    return {"alert_id": alert.alert_id, "kind": alert.kind, "state": alert.state, "seq": alert.seq,
            "since_start_s": round(alert.at - start_at, 2) if start_at is not None else None,
            "severity": alert.severity, "message": alert.message,
            # Which vehicles, where, and what was measured (an operator's review had the message alone to go by).
            "track_ids": alert.track_ids, "zone": alert.zone, "details": alert.details}
