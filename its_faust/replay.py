"""Rebuild a camera's analytics from its stored tracks, with the same actor code the workers run.

``its-faust replay`` reads the camera's track records from the beginning of
``its.tracks`` (as far back as the topic's retention keeps them), folds them
through a fresh :class:`~tables.camera_analytics.CameraAnalytics` with the
camera's configuration (or lines given on the command line), and reports the
counts, zone traffic and alerts. It changes nothing on the broker: it answers
"what do these tracks give with this configuration", which for the live
configuration is what the live run gave: each of the camera's own lines and zones counts
from when it was added (``CameraConfig.line_added_at``), as the workers' did; lines and
zones given in their place count throughout.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from its_faust.cameras import CameraSetup, check_speed_limit, read_configs
from its_faust.codecs import decode_or_none
from its_faust.results import alert_summary, line_speeds, zone_summary
from its_faust.topic_reader import TopicReader
from its_faust.topic_names import CAMERA_EVENTS, TRACKS
from schemas import CameraEvent, CameraEventKind, TrackRecord
from schemas.control import CameraConfig
from tables.camera_analytics import CameraAnalytics
from tables.camera_config import AsAdded
from tables.pace import Pace

log = logging.getLogger(__name__)

# Tracks of one camera more than this far apart in capture time are separate stretches: a live camera
# that was off, or runs of a producer that does not say where its runs start. A camera that sends keeps
# its frames well under a second apart. Each run of ``its-faust ingest`` starts a stretch: its
# ``started`` camera event gives the run's first seq.
STRETCH_GAP_S = 30.0


@dataclass
class ReplaySummary:
    camera_id: str
    frames: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    config_version: int | None = None  # of the camera's stored configuration replayed with (None: it has none)
    replaced: list[str] = field(default_factory=list)  # what --line/--config gave in place of the stored one's
    # The camera's own lines and zones added after the first track replayed, and when: counted from then on.
    added_later: dict[str, str] = field(default_factory=dict)
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    line_travel: dict[str, dict[str, str]] = field(default_factory=dict)  # as in run's summary
    line_speeds: dict[str, dict[str, dict]] = field(default_factory=dict)  # as in run's summary: results.line_speeds
    zones: dict[str, dict] = field(default_factory=dict)  # as in run's summary: results.zone_summary
    alerts: list[dict] = field(default_factory=list)
    # Every stretch of the camera's stored tracks (first_seq, last_seq, frames, started): pick one with
    # --from-seq/--to-seq, or --latest.
    stretches: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


async def stored_tracks(bootstrap: str, settings, camera_id: str, others: set[str] | None = None) -> list[TrackRecord]:
    """The camera's track records on the broker, first copy of each seq, in seq order; ``others`` gets the
    other cameras' ids (for a camera with none: a typo?)."""
    reader = await TopicReader(bootstrap, settings.topic(TRACKS), from_beginning=True).start()
    try:
        messages = await reader.read_to_end()
    finally:
        await reader.stop()
    records: dict[int, TrackRecord] = {}
    if others is not None:
        others.update(m.key.decode(errors="replace") for m in messages if m.key and m.key != camera_id.encode())
    for message in messages:
        record = decode_or_none(TrackRecord, message.value) if message.key == camera_id.encode() else None
        if record is not None:
            records.setdefault(record.seq, record)
    return [records[s] for s in sorted(records)]


def stretches(records: list[TrackRecord], run_starts: Collection[int] = (),
              gap_s: float = STRETCH_GAP_S) -> list[list[TrackRecord]]:
    """Records in seq order, cut where a run of the camera starts (``run_starts``: the first seqs of its
    runs) or capture times are more than ``gap_s`` apart (or three of a slow camera's intervals: one sending
    every 40 s was cut into a stretch a frame)."""
    starts = sorted(run_starts)
    out: list[list[TrackRecord]] = []
    pace = Pace()  # a slow camera's (tables.pace): its stretch goes on over three of its intervals
    for record in records:
        if out:
            last = out[-1][-1]
            pace.learn(record.captured_at - last.captured_at, consecutive=record.seq == last.seq + 1)
        if not out or _apart(out[-1][-1], record, starts, pace.at_least(gap_s, 3)):
            out.append([])
        out[-1].append(record)
    return out


def _apart(before: TrackRecord, after: TrackRecord, starts: list[int], gap_s: float) -> bool:
    if after.captured_at - before.captured_at > gap_s:
        return True
    i = bisect.bisect_right(starts, before.seq)  # the first run start above ``before``
    return i < len(starts) and starts[i] <= after.seq


async def run_starts(bootstrap: str, settings, camera_id: str) -> set[int]:
    """The first seq of each run of the camera, from the ``started`` events of its ingest on ``its.camera-events``."""
    reader = await TopicReader(bootstrap, settings.topic(CAMERA_EVENTS), keys=[camera_id.encode()],
                               from_beginning=True).start()
    try:
        messages = await reader.read_to_end()
    finally:
        await reader.stop()
    events = (decode_or_none(CameraEvent, message.value) for message in messages)
    return {e.seq for e in events
            if e is not None and e.camera_id == camera_id and e.kind is CameraEventKind.started and e.seq is not None}


def _described(stretch: list[TrackRecord]) -> dict:
    started = datetime.fromtimestamp(stretch[0].captured_at, timezone.utc).isoformat(timespec="seconds")
    return {"first_seq": stretch[0].seq, "last_seq": stretch[-1].seq, "frames": len(stretch), "started": started}


def replay(records: list[TrackRecord], config: CameraConfig, rules, tracking=None) -> ReplaySummary:
    summary = ReplaySummary(camera_id=config.camera_id, config_version=config.version)
    summary.counts = {line.name: {} for line in config.lines}
    summary.line_travel = {line.name: line.travel() for line in config.lines}
    crossings = []
    zone_events: dict[str, list] = {zone.name: [] for zone in config.zones}
    actor = CameraAnalytics(config.camera_id, rules=rules, tracking=tracking)
    as_of = AsAdded(config)
    summary.added_later = as_of.added_after(records[0].tracked_at) if records else {}
    for record in records:
        out = actor.update(record, as_of.at(record.tracked_at))
        crossings += out.crossings
        for c in out.crossings:
            by_class = summary.counts[c.line].setdefault(c.direction, {})
            by_class[c.label] = by_class.get(c.label, 0) + 1
        for e in out.zone_events:
            zone_events[e.zone].append(e)
        summary.alerts += [alert_summary(a, records[0].at) for a in out.alerts]
    summary.line_speeds = line_speeds(crossings)
    summary.zones = {name: zone_summary(events) for name, events in zone_events.items()}
    summary.frames = len(records)
    if records:
        summary.first_seq, summary.last_seq = records[0].seq, records[-1].seq
    return summary


async def replay_camera(bootstrap: str, settings, camera_id: str, setup: CameraSetup | None = None, *,
                        from_seq: int | None = None, to_seq: int | None = None, latest: bool = False) -> ReplaySummary:
    """Replay with the camera's current configuration; what ``setup`` gives replaces the camera's own.

    Every stored track of the camera by default (what the workers' totals count, across its runs);
    ``from_seq``/``to_seq`` (inclusive) or ``latest`` (its last stretch) pick a part."""
    others: set[str] = set()
    records = await stored_tracks(bootstrap, settings, camera_id, others)
    if not records:
        listed = ", ".join(sorted(others)[:20]) + (", ..." if len(others) > 20 else "")
        raise ValueError(f"no stored tracks for camera {camera_id!r} on {settings.topic(TRACKS)}"
                         + (f"; cameras with tracks: {listed}" if others else "; no camera has any"))
    stored = (await read_configs(bootstrap, settings)).get(camera_id)
    if stored is not None and stored.removed:
        stored = None
    config, replaced = stored, {}
    if setup:  # a line or zone nothing in view can reach would count nothing, silently (run refuses it too)
        setup.check_in_view(records[-1].width, records[-1].height, f"camera {camera_id!r}")
        base = stored or CameraConfig(camera_id=camera_id, version=1, last_command_id="-", updated_at=0)
        given = {"lines": setup.lines, "zones": setup.zones, "calibration": setup.calibration,
                 "speed_limit_kmh": setup.speed_limit_kmh}
        replaced = {k: v for k, v in given.items() if v}
        # What is given counts throughout (a given line named as a stored one is not the stored one).
        added_at = {"line_added_at": {} if setup.lines else base.line_added_at,
                    "zone_added_at": {} if setup.zones else base.zone_added_at}
        config = base.model_copy(update=replaced | added_at | {"removed": False})
        check_speed_limit(config)
    if config is None:
        raise ValueError(f"camera {camera_id!r} has no configuration to replay with: give --line, or add it first")
    starts = await run_starts(bootstrap, settings, camera_id)
    parts = stretches(records, starts)
    if latest:
        records = parts[-1]
    records = [r for r in records if (from_seq is None or r.seq >= from_seq) and (to_seq is None or r.seq <= to_seq)]
    if not records:
        wanted = " ".join(part for part in (f"from seq {from_seq}" if from_seq is not None else "",
                                             f"up to seq {to_seq}" if to_seq is not None else "") if part)
        raise ValueError(f"camera {camera_id!r} has no stored tracks {wanted}; it has seqs "
                         + ", ".join(f"{p[0].seq}-{p[-1].seq}" for p in parts))
    chosen = stretches(records, starts)
    if len(chosen) > 1:
        log.warning("%s: replaying %d stretches of tracks (runs, or the camera off for over %.0f s) as one; "
                    "--latest or --from-seq/--to-seq picks one (\"stretches\" in the result)",
                    camera_id, len(chosen), STRETCH_GAP_S)
    summary = replay(records, config, settings.analytics, settings.tracker)
    summary.stretches = [_described(p) for p in parts]
    summary.config_version = None if stored is None else stored.version
    summary.replaced = sorted(replaced)
    return summary
