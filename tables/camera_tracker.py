"""One camera's ByteTrack tracker, and its state as a record that a table can hold.

The tracker is the one Ultralytics ships (``BYTETracker``); this module only
snapshots and restores it, so that the camera actor can move to another worker
(or survive a restart) and continue with the same tracks and the same id counter.
A snapshot restores to a tracker that gives bit-identical results to the original.
After a gap in scene time of more than ``tracker.max_gap_s`` (a stream loss, shed
frames), or three of its usual intervals for a camera whose frames come slower, or a
camera clock that went back over ``max_gap_s``, the camera's tracks start afresh, its
ids counting on (:mod:`tables.frame_gaps` says which it was).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from pydantic import Field
from ultralytics.engine.results import Boxes
from ultralytics.trackers.byte_tracker import BYTETracker, STrack
from ultralytics.utils import IterableSimpleNamespace

from schemas import Box, TrackedObject
from schemas.base import CAMERA_ID_PATTERN, LastSeqStored, TableState
from tables.frame_gaps import Gap, arrival_gap
from tables.pace import Pace

GAP_IN_INTERVALS = 3.0  # a camera with a pace (tables.pace) restarts its tracks past this many of its intervals

log = logging.getLogger(__name__)


class TrackSnapshot(TableState):
    track_id: int
    state: int
    is_activated: bool
    score: float
    cls: float
    idx: int
    frame_id: int
    start_frame: int
    tracklet_len: int
    tlwh: list[float] = Field(min_length=4, max_length=4)
    mean: list[float] | None = Field(None, min_length=8, max_length=8)
    covariance: list[float] | None = Field(None, min_length=64, max_length=64)


class TrackerState(TableState):
    """What the ``camera-tracker`` table holds for one camera."""

    schema_: Literal["its.tracker-state"] = Field("its.tracker-state", alias="schema")
    v: Literal[1] = 1
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    last_seq: LastSeqStored = Field(-1, description="Highest frame seq applied; lower or equal seqs are redeliveries")
    frame_id: int = 0
    next_track_id: int = 1
    tracked: list[TrackSnapshot] = []
    lost: list[TrackSnapshot] = []
    # Ultralytics drops lost tracks whose id was removed in the previous frame; only ids matter there.
    removed_ids: list[int] = []
    last_at: float | None = Field(None, description="Scene time of the last frame applied")
    intervals: list[float] = Field([], description="Scene seconds between the last few frames applied with consecutive "
                                   "seqs (the camera's pace: tables.pace)")


class _IdCounter:
    """Replaces BYTETracker's ``iter(range(1, ...))`` id source with one whose position can be saved."""

    def __init__(self, start: int = 1):
        self.next_value = start

    def __next__(self) -> int:
        value = self.next_value
        self.next_value += 1
        return value

    def __iter__(self):
        return self


def _snapshot(track: STrack) -> TrackSnapshot:
    return TrackSnapshot(
        track_id=int(track.track_id),
        state=int(track.state),
        is_activated=bool(track.is_activated),
        score=float(track.score),
        cls=float(track.cls),
        idx=int(track.idx),
        frame_id=int(track.frame_id),
        start_frame=int(track.start_frame),
        tracklet_len=int(track.tracklet_len),
        tlwh=[float(v) for v in track._tlwh],
        mean=None if track.mean is None else [float(v) for v in track.mean],
        covariance=None if track.covariance is None else [float(v) for v in np.ravel(track.covariance)],
    )


def _restore(snap: TrackSnapshot, tracker: BYTETracker) -> STrack:
    x, y, w, h = snap.tlwh
    track = STrack(np.array([x + w / 2, y + h / 2, w, h, snap.idx], dtype=np.float32), np.float32(snap.score), np.float32(snap.cls))
    track._tlwh = np.asarray(snap.tlwh, dtype=np.float32)
    track.kalman_filter = tracker.kalman_filter
    track.mean = None if snap.mean is None else np.asarray(snap.mean, dtype=np.float64)
    track.covariance = None if snap.covariance is None else np.asarray(snap.covariance, dtype=np.float64).reshape(8, 8)
    track.track_id = snap.track_id
    track.state = snap.state
    track.is_activated = snap.is_activated
    track.idx = snap.idx
    track.frame_id = snap.frame_id
    track.start_frame = snap.start_frame
    track.tracklet_len = snap.tracklet_len
    track.next_id = tracker._ids.__next__
    return track


class CameraTracker:
    """ByteTrack for one camera, fed with detection boxes, saved and restored as :class:`TrackerState`."""

    def __init__(self, camera_id: str, tracker_settings, state: TrackerState | None = None):
        self.camera_id = camera_id
        args = IterableSimpleNamespace(tracker_type="bytetrack",
                                       **tracker_settings.model_dump(exclude={"max_gap_s", "live_max_age_s"}))
        self.tracker = BYTETracker(args)
        self.max_gap_s = tracker_settings.max_gap_s
        self.live_max_age_s = tracker_settings.live_max_age_s  # (the track stage sheds older live frames)
        self.afresh: tuple[Gap, int] | None = None  # after the last update, if it started afresh: (why, tracks dropped)
        self.afresh_limit_s = self.max_gap_s  # the limit that gap was over
        self._last_arrived: float | None = None  # when the last frame reached the worker (not kept in the table)
        state = state or TrackerState(camera_id=camera_id)
        self.last_seq = state.last_seq
        self.last_at = state.last_at
        self.pace = Pace(state.intervals)
        self.tracker.frame_id = state.frame_id
        # BYTETracker draws ids from the private ``_ids`` iterator (per tracker since 8.4);
        # a counter we can read back keeps ids unique across moves and restarts.
        self.tracker._ids = _IdCounter(state.next_track_id)
        self.tracker.tracked_stracks = [_restore(s, self.tracker) for s in state.tracked]
        self.tracker.lost_stracks = [_restore(s, self.tracker) for s in state.lost]
        self.tracker.removed_stracks = [self._removed_stub(i) for i in state.removed_ids]

    def _removed_stub(self, track_id: int) -> STrack:
        stub = STrack(np.zeros(5, np.float32), np.float32(0), np.float32(0))
        stub.track_id = track_id
        return stub

    @property
    def frame_id(self) -> int:
        return self.tracker.frame_id

    def update(self, seq: int, boxes: list[Box], shape: tuple[int, int], at: float | None = None,
               arrived: float | None = None, live: bool = True) -> list[TrackedObject]:
        """Apply one frame's detections (``at``: its scene time; ``arrived``: when it reached the worker, wall
        clock; ``live``: a live camera's, not a file's); returns the confirmed tracks after it."""
        self.afresh = None
        if at is not None:
            # A clock that went back as far is a gap too: ByteTrack's motion would join tracks across it.
            # (Back, the fixed limit: the analytics actor closes the camera past it, in step with the tracks.)
            limit = self.gap_limit_s() if self.last_at is not None and at > self.last_at else self.max_gap_s
            if self.last_at is not None and abs(at - self.last_at) > limit:
                apart = arrival_gap(self.last_at, self._last_arrived, arrived, self.live_max_age_s)
                self._start_afresh(Gap(at - self.last_at, apart, live, in_a_row=seq == self.last_seq + 1))
                self.afresh_limit_s = limit
            if self.last_at is not None:
                self.pace.learn(at - self.last_at, consecutive=seq == self.last_seq + 1)
            self.last_at = at
        self._last_arrived = arrived
        data = np.array([[b.x1, b.y1, b.x2, b.y2, b.conf, b.cls] for b in boxes], dtype=np.float32).reshape(-1, 6)
        labels = {b.cls: b.label for b in boxes}
        out = self.tracker.update(Boxes(data, shape))
        self.last_seq = seq
        objects = []
        height, width = shape[:2]
        # The Kalman filter's box may reach past the frame's edges; clipped as Ultralytics' own results are.
        rows = out.reshape(-1, 8)
        rows[:, [0, 2]] = rows[:, [0, 2]].clip(0, width)
        rows[:, [1, 3]] = rows[:, [1, 3]].clip(0, height)
        for x1, y1, x2, y2, track_id, score, cls, _idx in rows.tolist():
            cls = int(cls)
            label = labels.get(cls, str(cls))
            objects.append(
                TrackedObject(track_id=int(track_id), x1=x1, y1=y1, x2=x2, y2=y2, conf=score, cls=cls, label=label)
            )
        return objects

    def _start_afresh(self, gap: Gap) -> None:
        """After a gap, drop every track: ByteTrack would match them (one frame's motion on) to what is there now.

        The frame counter and the id counter go on, so no id is handed out twice.
        """
        dropped = len(self.tracker.tracked_stracks) + len(self.tracker.lost_stracks)
        self.afresh = (gap, dropped)
        self.tracker.tracked_stracks, self.tracker.lost_stracks, self.tracker.removed_stracks = [], [], []
        log.info("track: camera %s: %s, %d tracks dropped; ids go on from %d",
                 self.camera_id, gap.said(), dropped, self.tracker._ids.next_value)

    def state(self) -> TrackerState:
        lost_ids = {t.track_id for t in self.tracker.lost_stracks}
        return TrackerState(
            camera_id=self.camera_id,
            last_seq=self.last_seq,
            frame_id=self.tracker.frame_id,
            next_track_id=self.tracker._ids.next_value,
            tracked=[_snapshot(t) for t in self.tracker.tracked_stracks],
            lost=[_snapshot(t) for t in self.tracker.lost_stracks],
            removed_ids=[t.track_id for t in self.tracker.removed_stracks if t.track_id in lost_ids],
            last_at=self.last_at,
            intervals=list(self.pace.steps),
        )

    def gap_limit_s(self) -> float:
        """A step in scene time past which the tracks restart: ``max_gap_s``, or for a camera whose frames come
        slower and steadily (a time-lapse one, a frame every 4 s), three of its intervals. With the fixed limit such
        a camera's tracks restarted at every frame, and none was ever confirmed (no tracks, no counts: a trial)."""
        return self.pace.at_least(self.max_gap_s, GAP_IN_INTERVALS)


__all__ = ["CameraTracker", "TrackerState", "TrackSnapshot"]
