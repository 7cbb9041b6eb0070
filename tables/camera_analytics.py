"""One camera's analytics actor: what it remembers of each track, and what a new frame of tracks yields.

Pure and deterministic (no Faust, no wall clock): the same state, configuration
and track record always give the same events, which is what makes a
redelivered frame harmless and a replay equal to the live run. The whole memory
round-trips through :class:`AnalyticsState`, kept per camera in the
``camera-analytics`` table.

Per frame, in order: each seen track updates its path (speed, heading), its
side of every counting line (crossings) and its zone memberships (enter/exit);
tracks gone too long leave their zones or are forgotten; then the incident
rules say which conditions hold and the alert book turns them into alerts.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from its_faust.settings import AnalyticsSettings, TrackerSettings
from schemas.analytics import Alert, Crossing, ZoneEvent
from schemas.base import CAMERA_ID_PATTERN, LastSeqStored, SeqStored, TableState, scene_clock
from schemas.control import CameraConfig
from schemas.tracks import TrackedObject, TrackRecord
from tables.frame_gaps import Gap, arrival_gap
from tables.incidents import ActiveAlert, AlertBook, Condition
from tables.line_counting import LineSide, clearance
from tables.pace import Pace
from tables.speed import MIN_SAMPLES, RoadPlane, fitted_speed_kmh, fitted_velocity, trim
from tables.zones import Membership, inside


# ---- the snapshot kept in the table -------------------------------------------------------------

class LineMemory(TableState):
    line: str
    side: int
    x: float
    y: float
    counted: bool
    pending: Literal["in", "out"] | None = Field(None, description="crossed while the track was too young to count")


class ZoneMemory(TableState):
    zone: str
    inside: bool
    streak: int
    entered_at: float
    speed_sum: float
    speed_n: int


class TrackMemory(TableState):
    track_id: int
    last_seq: SeqStored
    last_at: float
    votes: dict[str, int] = Field(description="label -> frames seen as that label")
    label_cls: dict[str, int]
    lines: list[LineMemory] = Field(default_factory=list)
    zones: list[ZoneMemory] = Field(default_factory=list)
    path: list[tuple[float, float, float]] = Field(default_factory=list, description="(t, x, y) ground point, last seconds")
    since: dict[str, float] = Field(default_factory=dict, description="incident condition -> scene time it began")


class AnalyticsState(TableState):
    schema_: Literal["its.analytics-state"] = Field("its.analytics-state", alias="schema")
    v: Literal[1] = 1
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    last_seq: LastSeqStored = -1
    last_at: float | None = Field(None, description="the last frame's time (scene clock): a frame long after it closes the camera first")
    intervals: list[float] = Field(default_factory=list, description="the camera's pace (tables.pace): steps between "
                                   "its last frames with consecutive seqs")
    tracks: list[TrackMemory] = Field(default_factory=list)
    zone_since: dict[str, float] = Field(default_factory=dict, description="zone -> congestion began; "
                                        "'<zone>:off' -> when it last lapsed, within the grace")
    alerts: dict[str, ActiveAlert] = Field(default_factory=dict)
    quiet_until: dict[str, float] = Field(default_factory=dict)
    geometry: dict[str, str] = Field(default_factory=dict, description="line:/zone: name -> its definition's digest "
                                     "(the whole JSON in states of before), @ the version that added it, as last seen")


@dataclass(frozen=True)
class Moment:
    """A point in a camera's time that is not a frame: its last frame's seq, stamped with a later time."""

    camera_id: str
    seq: int
    captured_at: float
    scene_time: float | None = None

    @property
    def at(self) -> float:
        return scene_clock(self.captured_at, self.scene_time)


@dataclass
class FrameOutput:
    crossings: list[Crossing] = field(default_factory=list)
    zone_events: list[ZoneEvent] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


# ---- live memory ---------------------------------------------------------------------------------

@dataclass
class _Track:
    track_id: int
    last_seq: int = 0
    last_at: float = 0.0
    votes: Counter = field(default_factory=Counter)
    label_cls: dict[str, int] = field(default_factory=dict)
    lines: dict[str, LineSide] = field(default_factory=dict)
    zones: dict[str, Membership] = field(default_factory=dict)
    path: list[tuple[float, float, float]] = field(default_factory=list)
    since: dict[str, float] = field(default_factory=dict)
    # Derived each frame the track is seen (not stored):
    speed_kmh: float | None = None
    px_speed: float | None = None
    heading_deg: float | None = None

    def label(self) -> tuple[str, int]:
        # Most frequent label; ties go to the alphabetically first, so replays agree.
        best = min(self.votes.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        return best, self.label_cls[best]

    def hold(self, condition: str, holds: bool, now: float, grace_s: float) -> float | None:
        """How long ``condition`` has held: since when, or None when it does not hold (see ``held_since``)."""
        return held_since(self.since, condition, holds, now, grace_s)


def held_since(since: dict[str, float], condition: str, holds: bool, now: float, grace_s: float) -> float | None:
    """How long ``condition`` has held, by the clocks in ``since``: since when, or None when it does not hold.

    A lapse shorter than ``grace_s`` (one fast frame, a box that jumps, a frame the detector saw nothing
    on) does not restart the clock; ``since`` keeps when the lapse began under ``"<condition>:off"``.
    """
    off_key = f"{condition}:off"
    if holds:
        since.pop(off_key, None)
        return since.setdefault(condition, now)
    if condition in since:
        off = since.setdefault(off_key, now)
        if now - off < grace_s:
            return None  # a short lapse: the clock keeps running, but it does not hold now
        since.pop(condition, None)
        since.pop(off_key, None)
    return None


# Tracked, counted over lines and in zones, but no vehicle: the incident rules (stopped vehicle, wrong way, overspeed,
# queue) leave them out.
NOT_VEHICLES = frozenset({"person"})


def _middle(points) -> tuple[float, float]:
    return sum(x for x, _ in points) / len(points), sum(y for _, y in points) / len(points)


def _centre(o: TrackedObject) -> tuple[float, float]:
    return ((o.x1 + o.x2) / 2, (o.y1 + o.y2) / 2)


def _ground(o: TrackedObject) -> tuple[float, float]:
    """Where the vehicle touches the road: the bottom centre of its box."""
    return ((o.x1 + o.x2) / 2, o.y2)


def _angle_between(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return 360 - d if d > 180 else d


class CameraAnalytics:
    def __init__(self, camera_id: str, state: AnalyticsState | None = None, rules: AnalyticsSettings | None = None,
                 tracking: TrackerSettings | None = None):
        self.camera_id = camera_id
        self.rules = rules or AnalyticsSettings()
        # The track stage's: a clock set back over its max_gap_s restarted the camera's tracks under new ids, and it
        # sheds live frames older than its live_max_age_s.
        self.tracking = tracking or TrackerSettings()
        self.last_seq = -1
        self.last_at: float | None = None
        self._last_arrived: float | None = None  # when the last frame was tracked (not kept in the table)
        self.pace = Pace(state.intervals if state is not None else ())
        self.tracks: dict[int, _Track] = {}
        self.zone_since: dict[str, float] = {}
        self.geometry: dict[str, str] = {}
        self._synced: tuple | None = None  # the configuration's parts geometry was last synced with (not kept)
        active, quiet = {}, {}
        if state is not None:
            self.last_seq = state.last_seq
            self.last_at = state.last_at
            self.zone_since = dict(state.zone_since)
            self.geometry = _as_digests(state.geometry)
            active, quiet = state.alerts, state.quiet_until
            for m in state.tracks:
                self.tracks[m.track_id] = _Track(
                    m.track_id, m.last_seq, m.last_at, Counter(m.votes), dict(m.label_cls),
                    {l.line: LineSide(l.side, l.x, l.y, l.counted, l.pending) for l in m.lines},
                    {z.zone: Membership(z.inside, z.streak, z.entered_at, z.speed_sum, z.speed_n) for z in m.zones},
                    [tuple(p) for p in m.path], dict(m.since),
                )
        self.alert_book = AlertBook(self.rules.cooldown_s, active, quiet)
        self._plane: tuple[object, RoadPlane] | None = None

    # -- one frame --------------------------------------------------------------------------------

    def idle_frame(self, record: TrackRecord) -> None:
        """A frame skipped as idle (:meth:`idle_under`) still teaches the camera's pace, as the tracker learned it
        from the same frame: configured later, the camera was closed at its every frame until it had learned it
        again. (In memory: nothing else of the actor changes, and its state is not written for it.)"""
        if self.last_at is not None:
            self.pace.learn(record.at - self.last_at, consecutive=record.seq == self.last_seq + 1)
        self.last_seq, self.last_at = record.seq, record.at

    def idle_under(self, config: CameraConfig | None) -> bool:
        """Nothing to do: no line, zone or speed limit to apply, no alert left to clear, no memory to drop.

        Such a frame changes nothing that matters, so the agent skips it rather than write the
        actor's whole memory to its table for every frame of a camera nobody configured.
        """
        if self.alert_book.active or self.geometry:
            return False  # an alert to clear, or the memory of lines and zones that are gone to drop
        if config is None or config.removed:
            return True
        return not (config.lines or config.zones or (config.calibration and config.speed_limit_kmh))

    def update(self, record: TrackRecord, config: CameraConfig | None) -> FrameOutput:
        """Apply one frame's tracks (the caller has checked ``record.seq > last_seq``)."""
        live = config is not None and not config.removed
        lines = config.lines if live else []
        line_versions = config.line_versions if live else {}
        zones = config.zones if live else []
        zone_versions = config.zone_versions if live else {}
        plane = self._road_plane(config.calibration if live else None)
        limit = config.speed_limit_kmh if live and plane else None
        now = record.at
        arrived = record.tracked_at
        out = self._close_if_broken_off(now, arrived, record.scene_time)
        self._sync_geometry(lines, zones, line_versions, zone_versions)
        lost_s = self.zone_lost_s()
        if self.last_at is not None and now - self.last_at > lost_s:
            # Tracks not in this frame after a gap in the camera's frames left their zones during it: as of its
            # start (the last frame's seq), not as events of this frame, which may be a new run's first.
            gap = Moment(self.camera_id, self.last_seq, self.last_at + lost_s)
            self._lose_tracks({o.track_id for o in record.objects}, gap, now, out)

        seen = set()
        for obj in sorted(record.objects, key=lambda o: o.track_id):
            seen.add(obj.track_id)
            track = self.tracks.get(obj.track_id) or self.tracks.setdefault(obj.track_id, _Track(obj.track_id))
            track.last_seq, track.last_at = record.seq, now
            track.votes[obj.label] += 1
            track.label_cls[obj.label] = obj.cls
            self._move(track, _ground(obj), now, plane)
            self._count_lines(track, lines, line_versions, obj, record, out)
            self._zones(track, zones, _ground(obj), record, out)

        self._lose_tracks(seen, record, now, out)
        conditions = self._conditions(zones, limit, plane, now)
        clear_after_s = self.pace.at_least(self.rules.clear_after_s, 1.5)  # (as grace_s, for clearing)
        out.alerts.extend(self.alert_book.step(self.camera_id, record, conditions, clear_after_s, seen,
                                               config.version if live else 0, {z.name for z in zones}))
        if self.last_at is not None:
            self.pace.learn(now - self.last_at, consecutive=record.seq == self.last_seq + 1)
        self.last_seq, self.last_at, self._last_arrived = record.seq, now, arrived
        return out

    def _close_if_broken_off(self, now: float, arrived: float | None = None, scene_time: float | None = None) -> FrameOutput:
        """A frame that does not go on from the last one closes the camera first, so that this stretch starts bare:

        * one after the camera was silent ``camera_silent_s`` that nothing closed it for (``run`` stops its own
          worker; every worker was down), as of then. Otherwise the last stretch's tracks left their zones, and its
          alerts cleared, in this one;
        * one older than the last by over the tracker's gap limit (the camera's clock was set back, or a new run of
          a file started before the last one's scene time: the tracker restarted its tracks), as of the last frame.
          Measured on the old clock, its tracks would stay in their zones, its alerts stay up and its cool-downs
          run on for as long as the clock went back (an hour, for a clock an hour fast set right), and speeds and
          dwell times across it would come out negative. A smaller step back closes nothing: the tracks go on,
          under the same ids (closed, they would leave their zones and enter again, their alerts raised again).

        (``scene_time``: the frame's, None for a live one; ``arrived``: when it was tracked. A long silence on a
        live camera's clock between frames tracked about as close together as ever was its clock set forward, and
        is said so: :mod:`tables.frame_gaps`.)"""
        if self.last_at is None:
            return FrameOutput()
        silent_s = self.silent_s()
        if 0 < silent_s < now - self.last_at:
            apart = arrival_gap(self.last_at, self._last_arrived, arrived, self.tracking.live_max_age_s)
            gap = Gap(now - self.last_at, apart, live=scene_time is None)
            why = (f"the camera's clock went forward {gap.scene_s:.0f} s (its frames came {apart:.1f} s apart)"
                   if gap.clock_moved else f"no frames for {gap.scene_s:.0f} s")
            return self.close(Moment(self.camera_id, self.last_seq, self.last_at + silent_s), why)
        if self.last_at - now > self.tracking.max_gap_s:
            back = f"{self.last_at - now:.1f} s"
            why = (f"the camera's clock went back {back}" if scene_time is None
                   else f"a new run started {back} before the last one's scene time")
            out = self.close(Moment(self.camera_id, self.last_seq, self.last_at), why)
            self.alert_book.quiet_until = {}  # (until times on the old clock)
            return out
        return FrameOutput()

    def is_open(self) -> bool:
        """Whether closing the camera would change anything: tracks it still holds (in zones, maybe), or alerts
        active."""
        return bool(self.tracks or self.alert_book.active)

    def close(self, moment: Moment, why: str) -> FrameOutput:
        """The camera's frames have stopped (the agent judges when): its alerts clear now and its tracks leave
        their zones, as no frame will come to do it. Its tracks are forgotten; the tracker's ids go on.

        The exits are as of the last frame (``zone_lost_s`` after it, when a track out of sight leaves), like
        those of tracks lost in a gap: stamped ``moment``, tens of seconds later, they counted in a minute of
        the zone's statistics with no frame in it."""
        out = FrameOutput()
        left = Moment(self.camera_id, self.last_seq, self.last_at + self.zone_lost_s()) \
            if self.last_at is not None else moment
        for track in sorted(self.tracks.values(), key=lambda t: t.track_id):
            for name, member in sorted(track.zones.items()):
                if member.inside:
                    member.inside = False
                    out.zone_events.append(self._zone_event(left, name, "exit", track, member, track.last_at))
        self.tracks, self.zone_since = {}, {}
        out.alerts = self.alert_book.clear_all(moment, why)
        return out

    def _road_plane(self, calibration) -> RoadPlane | None:
        if calibration is None:
            return None
        if self._plane is None or self._plane[0] != calibration:
            self._plane = (calibration, RoadPlane(calibration))
        return self._plane[1]

    def _move(self, track: _Track, ground, now: float, plane: RoadPlane | None) -> None:
        # Over the window, or for a slow camera as many of its intervals as a fit needs samples (at 0.5 fps a 1 s
        # window never held the 4: no speeds, and so no stopped-vehicle, wrong-way or overspeed alerts).
        window_s = self.pace.at_least(self.rules.speed_window_s, MIN_SAMPLES + 2)  # (+2: a miss, or a step a bit long)
        track.path = trim(track.path, now, window_s) + [(now, ground[0], ground[1])]
        v = fitted_velocity(track.path)
        track.px_speed = math.hypot(*v) if v else None
        moving = v is not None and track.px_speed >= self.rules.moving_px_s
        # Screen heading, clockwise from "right" (y grows downwards).
        track.heading_deg = math.degrees(math.atan2(v[1], v[0])) % 360 if moving else None
        track.speed_kmh = None
        if plane is not None and plane.covers(*ground):  # measured inside the calibrated area only
            speed = fitted_speed_kmh([(t, *plane.to_road(x, y)) for t, x, y in track.path if plane.covers(x, y)])
            track.speed_kmh = round(speed, 2) if speed is not None else None

    def _count_lines(self, track: _Track, lines, line_versions, obj: TrackedObject, record: TrackRecord,
                     out: FrameOutput) -> None:
        young = sum(track.votes.values()) < self.rules.line_min_track_frames
        for line in lines:
            past = clearance(line, obj.x2 - obj.x1, obj.y2 - obj.y1) if line.count != "both" else 0.0
            side = track.lines.setdefault(line.name, LineSide())
            direction = side.observe(line, _centre(obj), self.rules.line_margin_px, past)
            if young:
                side.pending = direction or side.pending  # counted once the track is old enough (module notes)
                continue
            direction, side.pending = direction or side.pending, None
            if direction:
                label, cls = track.label()
                out.crossings.append(Crossing(
                    camera_id=record.camera_id, seq=record.seq, captured_at=record.captured_at,
                    scene_time=record.scene_time, line=line.name,
                    direction=direction, track_id=track.track_id, label=label, cls=cls, speed_kmh=track.speed_kmh,
                    line_version=line_versions.get(line.name, 0),
                ))

    def _zones(self, track: _Track, zones, ground, record: TrackRecord, out: FrameOutput) -> None:
        if not zones or sum(track.votes.values()) < self.rules.zone_min_track_frames:
            return  # too young to tell from a brief second track (on the demo clip those lived 3 to 8 frames)
        for zone in zones:
            now_inside = inside(zone.points, ground)
            member = track.zones.get(zone.name)
            if member is None:
                if not now_inside:
                    continue  # outside, as it was: nothing to remember (a track kept one per zone of 64)
                member = track.zones[zone.name] = Membership()
            change = member.observe(now_inside, self.rules.zone_frames, record.at)
            member.add_speed(track.speed_kmh)
            if change:
                out.zone_events.append(self._zone_event(record, zone.name, change, track, member, record.at))
            if not member.inside and not member.streak:
                del track.zones[zone.name]  # as a new one: outside, and no frame towards entering

    def _zone_event(self, record, zone: str, kind: str, track: _Track, member: Membership, at: float) -> ZoneEvent:
        return ZoneEvent(
            camera_id=record.camera_id, seq=record.seq, captured_at=record.captured_at, scene_time=record.scene_time,
            zone=zone, kind=kind, zone_version=self._zone_version(zone),
            track_id=track.track_id, label=track.label()[0], occupancy=self.occupancy(zone),
            dwell_s=round(at - member.entered_at, 3) if kind == "exit" else None,
            mean_speed_kmh=member.mean_speed() if kind == "exit" else None,
        )

    def _lose_tracks(self, seen: set[int], moment: TrackRecord | Moment, now: float, out: FrameOutput) -> None:
        """Tracks gone ``zone_lost_s`` by ``now`` leave their zones (their dwell ends at their last sighting; the
        event is ``moment``'s); gone longer, they are forgotten."""
        lost_s = self.zone_lost_s()  # (once a frame: the pace's median, not once a track)
        for track in sorted(self.tracks.values(), key=lambda t: t.track_id):
            if track.track_id in seen or now - track.last_at < lost_s:
                continue
            track.since.clear()
            track.path = []  # its speed is stale now; the memory it took is not needed
            for name, member in sorted(track.zones.items()):
                member.streak = 0  # back in view, it must be inside again for zone_frames to re-enter
                if member.inside:
                    member.inside = False
                    out.zone_events.append(self._zone_event(moment, name, "exit", track, member, track.last_at))
        forget_after_s = self.pace.at_least(self.rules.forget_after_s, self.tracking.track_buffer)
        self.tracks = {tid: t for tid, t in self.tracks.items() if now - t.last_at <= forget_after_s}

    def silent_s(self) -> float:
        """Without frames this long, the camera is closed: ``camera_silent_s`` (0: never), or for a camera with a
        slow, steady pace three of its intervals (a snapshot camera sending every 40 s was closed at every frame:
        its tracks out of their zones, its alerts cleared)."""
        silent_s = self.rules.camera_silent_s
        return self.pace.at_least(silent_s, 3) if silent_s > 0 else silent_s

    def zone_lost_s(self) -> float:
        """Unseen this long, a track has left its zones: ``zone_lost_s``, or for a camera with a slow, steady pace
        (tables.pace) one and a half of its intervals (a time-lapse camera's tracks left their zones between any
        two of its frames); they are forgotten once the tracker would have dropped them, ``track_buffer`` frames."""
        return self.pace.at_least(self.rules.zone_lost_s, 1.5)

    def _sync_geometry(self, lines, zones, line_versions, zone_versions) -> None:
        """Lines and zones removed, or redefined under the same name, start afresh: their memory goes. So does one
        added again (a new version), even the same one: no frame may have come while it was away."""
        given = (lines, zones, line_versions, zone_versions)
        if self._synced is not None and all(a is b for a, b in zip(given, self._synced)):
            return  # the same configuration as on the last frame (each of its lines and zones was written out anew)
        self._synced = given
        now = ({f"line:{l.name}": f"{_digest(l.model_dump_json())}@{line_versions.get(l.name, 0)}" for l in lines}
               | {f"zone:{z.name}": _versioned(_digest(z.model_dump_json()), zone_versions.get(z.name, 0)) for z in zones})
        if now == self.geometry:
            return
        stale = {k for k in self.geometry if now.get(k) != self.geometry[k]}
        for track in self.tracks.values():
            for name in [n for n in track.lines if f"line:{n}" in stale or f"line:{n}" not in now]:
                del track.lines[name]
            for name in [n for n in track.zones if f"zone:{n}" in stale or f"zone:{n}" not in now]:
                del track.zones[name]
        kept = now.keys() - stale
        self.zone_since = {z: t for z, t in self.zone_since.items() if f"zone:{z.removesuffix(':off')}" in kept}
        self.geometry = now

    def _zone_version(self, zone: str) -> int:
        """The adding of ``zone`` its events are of, as last synced (0: a zone from before versions, or none)."""
        _, at, version = self.geometry.get(f"zone:{zone}", "").rpartition("@")  # names have no "@"
        return int(version) if at else 0

    def occupancy(self, zone: str) -> int:
        return sum(1 for t in self.tracks.values() if t.zones.get(zone) and t.zones[zone].inside)

    # -- incident rules ---------------------------------------------------------------------------

    def _conditions(self, zones, limit: float | None, plane: RoadPlane | None, now: float) -> list[Condition]:
        """The incidents that hold on this frame. They are of vehicles: people (a pedestrian waiting in a lane, a
        rider's own box over a scooter) had raised stopped-vehicle alerts, and counted in a zone's queue."""
        r = self.rules
        # A slow camera's condition lasts over one frame without it (a miss, a window a sample short): a second
        # at 40 s a frame cleared a parked car's alert at its first miss, and raised it again anew.
        grace_s = self.pace.at_least(r.condition_grace_s, 1.5)
        held: list[Condition] = []
        for track in sorted(self.tracks.values(), key=lambda t: t.track_id):
            if track.last_at != now:
                continue  # only tracks seen on this frame can start or keep a condition
            label = track.label()[0]
            if label in NOT_VEHICLES:
                continue
            subject = f"track-{track.track_id}"
            lanes = [z for z in zones if z.kind == "lane" and track.zones.get(z.name, Membership()).inside]
            slow = (track.speed_kmh < r.stopped_kmh) if track.speed_kmh is not None else (
                track.px_speed is not None and track.px_speed < r.stopped_px_s)
            since = track.hold("stopped", bool(lanes) and slow, now, grace_s)
            if since is not None and now - since >= r.stopped_after_s:
                held.append(Condition(
                    "stopped_vehicle", subject, since, "warning",
                    f"{label} {track.track_id} stopped in lane {lanes[0].name}", [track.track_id], lanes[0].name,
                    {"stopped_s": round(now - since, 1)},
                ))
            against = [z for z in zones if z.heading_deg is not None and track.heading_deg is not None
                       and track.zones.get(z.name, Membership()).inside
                       and _angle_between(track.heading_deg, z.heading_deg) > r.wrong_way_deg]
            since = track.hold("wrong_way", bool(against), now, grace_s)
            if since is not None and now - since >= r.wrong_way_after_s:
                held.append(Condition(
                    "wrong_way", subject, since, "critical",
                    f"{label} {track.track_id} driving the wrong way in {against[0].name}", [track.track_id],
                    against[0].name, {"heading_deg": round(track.heading_deg, 1), "allowed_deg": against[0].heading_deg},
                ))
            fast = limit is not None and track.speed_kmh is not None and track.speed_kmh > limit * (1 + r.overspeed_margin)
            since = track.hold("overspeed", fast, now, grace_s)
            if since is not None and now - since >= r.overspeed_after_s:
                held.append(Condition(
                    "overspeed", subject, since, "warning" if track.speed_kmh > 1.3 * limit else "info",
                    f"{label} {track.track_id} at {track.speed_kmh:.0f} km/h (limit {limit:.0f})", [track.track_id],
                    None, {"speed_kmh": track.speed_kmh, "limit_kmh": limit},
                ))
        for zone in zones:
            inside_now = [t for t in self.tracks.values() if t.zones.get(zone.name, Membership()).inside
                          and t.label()[0] not in NOT_VEHICLES]
            # Speeds of the tracks seen on this frame only: the others' speeds are not known now. In km/h on the
            # calibrated road; a zone whose middle lies outside it has none, and is judged in pixels/s.
            seen = [t for t in inside_now if t.last_at == now]
            if plane is not None and plane.covers(*_middle(zone.points)):
                speeds = [t.speed_kmh for t in seen if t.speed_kmh is not None]
                threshold = r.congestion_kmh
            else:
                speeds = [t.px_speed for t in seen if t.px_speed is not None]
                threshold = r.congestion_px_s
            queued = len(inside_now) >= r.congestion_vehicles and bool(speeds) and sum(speeds) / len(speeds) < threshold
            # A frame with no speeds (the detector saw nothing on it) lapses the queue, within the grace.
            since = held_since(self.zone_since, zone.name, queued, now, grace_s)
            if since is not None and now - since >= r.congestion_after_s:
                held.append(Condition(
                    "congestion", f"zone-{zone.name}", since, "warning",
                    f"queue in {zone.name}: {len(inside_now)} vehicles", sorted(t.track_id for t in inside_now),
                    zone.name, {"vehicles": float(len(inside_now)), "mean_speed": round(sum(speeds) / len(speeds), 2)},
                ))
        return held

    # -- snapshot ---------------------------------------------------------------------------------

    def state(self) -> AnalyticsState:
        return AnalyticsState(
            camera_id=self.camera_id,
            last_seq=self.last_seq,
            last_at=self.last_at,
            intervals=list(self.pace.steps),
            tracks=[
                TrackMemory(
                    track_id=t.track_id, last_seq=t.last_seq, last_at=t.last_at, votes=dict(t.votes),
                    label_cls=t.label_cls,
                    lines=[LineMemory(line=n, side=s.side, x=s.x, y=s.y, counted=s.counted, pending=s.pending)
                           for n, s in t.lines.items()],
                    zones=[ZoneMemory(zone=n, inside=m.inside, streak=m.streak, entered_at=m.entered_at,
                                      speed_sum=m.speed_sum, speed_n=m.speed_n) for n, m in t.zones.items()],
                    path=t.path, since=t.since,
                )
                for t in sorted(self.tracks.values(), key=lambda t: t.track_id)
            ],
            zone_since=self.zone_since,
            geometry=self.geometry,
            alerts=self.alert_book.active,
            quiet_until=self.alert_book.quiet_until,
        )


def _digest(definition: str) -> str:
    """A line's or zone's definition (its JSON) as kept in the state: its digest. The state had kept the JSON of
    every one, written twice a second: 59 of a camera's 157 KB with 50 lines and 64 zones."""
    return hashlib.blake2b(definition.encode(), digest_size=8).hexdigest()


def _as_digests(geometry: dict[str, str]) -> dict[str, str]:
    """A state's geometry with the definitions a state of before kept whole (JSON) as their digests: an upgrade
    keeps every track's memory of the lines and zones that stayed the same."""
    digests = {}
    for key, value in geometry.items():
        definition, at, version = value.rpartition("@")  # (definitions have no "@": JSON of names without one)
        definition = definition if at else value
        if definition.startswith("{"):
            definition = _digest(definition)
        digests[key] = f"{definition}@{version}" if at else definition
    return digests


def _versioned(definition: str, version: int) -> str:
    """A zone's definition with the adding it is of; version 0 (zones from before versions) keeps the memory
    that actors of before kept under the bare definition, so an upgrade does not re-enter every track."""
    return f"{definition}@{version}" if version else definition
