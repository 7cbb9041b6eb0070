"""One camera's analytics actor: what it remembers of each track, and what a new frame of tracks yields.

Pure and deterministic (no Faust, no clock): the same state and the same track
record always give the same events, which is what makes a redelivered frame
harmless. The whole memory round-trips through :class:`AnalyticsState`, the
record kept per camera in the ``camera-analytics`` table.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from schemas.analytics import Crossing
from schemas.base import CAMERA_ID_PATTERN, Record
from schemas.control import CameraConfig
from schemas.tracks import TrackRecord
from tables.line_counting import LineSide

# Tracks unseen for this long (capture time) are forgotten; ByteTrack gives up on them sooner.
FORGET_AFTER_S = 10.0
# Dead band around a counting line, in pixels: jitter inside it never counts.
LINE_MARGIN_PX = 2.0


class LineMemory(Record):
    line: str
    side: int
    x: float
    y: float
    counted: bool


class TrackMemory(Record):
    track_id: int
    last_seq: int
    last_at: float
    votes: dict[str, int] = Field(description="label -> frames seen as that label")
    label_cls: dict[str, int]
    lines: list[LineMemory] = Field(default_factory=list)


class AnalyticsState(Record):
    schema_: Literal["its.analytics-state"] = Field("its.analytics-state", alias="schema")
    v: Literal[1] = 1
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    last_seq: int = -1
    tracks: list[TrackMemory] = Field(default_factory=list)


@dataclass
class _Track:
    track_id: int
    last_seq: int = 0
    last_at: float = 0.0
    votes: Counter = field(default_factory=Counter)
    label_cls: dict[str, int] = field(default_factory=dict)
    lines: dict[str, LineSide] = field(default_factory=dict)

    def label(self) -> tuple[str, int]:
        # Most frequent label; ties go to the alphabetically first, so replays agree.
        best = min(self.votes.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        return best, self.label_cls[best]


class CameraAnalytics:
    def __init__(self, camera_id: str, state: AnalyticsState | None = None):
        self.camera_id = camera_id
        self.last_seq = -1
        self.tracks: dict[int, _Track] = {}
        if state is not None:
            self.last_seq = state.last_seq
            for m in state.tracks:
                self.tracks[m.track_id] = _Track(
                    m.track_id, m.last_seq, m.last_at, Counter(m.votes), dict(m.label_cls),
                    {l.line: LineSide(l.side, l.x, l.y, l.counted) for l in m.lines},
                )

    def update(self, record: TrackRecord, config: CameraConfig | None) -> list[Crossing]:
        """Apply one frame's tracks (the caller has checked ``record.seq > last_seq``)."""
        lines = [] if config is None or config.removed else config.lines
        crossings: list[Crossing] = []
        for obj in sorted(record.objects, key=lambda o: o.track_id):
            track = self.tracks.get(obj.track_id) or self.tracks.setdefault(obj.track_id, _Track(obj.track_id))
            track.last_seq, track.last_at = record.seq, record.captured_at
            track.votes[obj.label] += 1
            track.label_cls[obj.label] = obj.cls
            centre = ((obj.x1 + obj.x2) / 2, (obj.y1 + obj.y2) / 2)
            for line in lines:
                direction = track.lines.setdefault(line.name, LineSide()).observe(line, centre, LINE_MARGIN_PX)
                if direction and line.count in ("both", direction):
                    label, cls = track.label()
                    crossings.append(
                        Crossing(
                            camera_id=record.camera_id, seq=record.seq, captured_at=record.captured_at,
                            line=line.name, direction=direction, track_id=obj.track_id, label=label, cls=cls,
                        )
                    )
        names = {line.name for line in lines}
        for track in self.tracks.values():  # removed lines are forgotten; re-added ones start afresh
            for name in [n for n in track.lines if n not in names]:
                del track.lines[name]
        self.tracks = {
            tid: t for tid, t in self.tracks.items() if record.captured_at - t.last_at <= FORGET_AFTER_S
        }
        self.last_seq = record.seq
        return crossings

    def state(self) -> AnalyticsState:
        return AnalyticsState(
            camera_id=self.camera_id,
            last_seq=self.last_seq,
            tracks=[
                TrackMemory(
                    track_id=t.track_id, last_seq=t.last_seq, last_at=t.last_at, votes=dict(t.votes),
                    label_cls=t.label_cls,
                    lines=[LineMemory(line=n, side=s.side, x=s.x, y=s.y, counted=s.counted) for n, s in t.lines.items()],
                )
                for t in sorted(self.tracks.values(), key=lambda t: t.track_id)
            ],
        )
