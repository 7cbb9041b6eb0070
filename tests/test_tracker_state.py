"""The camera actor's tracker state survives the table codec bit for bit."""

import pytest

from its_faust.codecs import decode, encode
from tables.camera_tracker import CameraTracker, TrackerState
from schemas import CameraEventKind


@pytest.fixture(scope="module")
def clip_detections(detector, clip_frames):
    return [r.boxes for f in range(0, len(clip_frames), 8) for r in detector.detect(clip_frames[f : f + 8])]


def run(tracker, detections, start):
    return [tracker.update(seq, boxes, (360, 640)) for seq, boxes in enumerate(detections, start)]


@pytest.mark.parametrize("cut", [1, 60, 200])
def test_restored_tracker_continues_identically(settings, clip_detections, cut):
    original = CameraTracker("cam-1", settings.tracker)
    run(original, clip_detections[:cut], 0)
    restored = CameraTracker("cam-1", settings.tracker, decode(TrackerState, encode(original.state())))
    assert restored.last_seq == cut - 1 and restored.frame_id == cut
    assert run(restored, clip_detections[cut:], cut) == run(original, clip_detections[cut:], cut)


def test_track_ids_continue_after_restore(settings, clip_detections):
    tracker = CameraTracker("cam-1", settings.tracker)
    before = {o.track_id for frame in run(tracker, clip_detections[:100], 0) for o in frame}
    state = tracker.state()
    after = {o.track_id for frame in run(CameraTracker("cam-1", settings.tracker, state), clip_detections[100:], 100) for o in frame}
    assert state.next_track_id > max(before)
    known = {t.track_id for t in state.tracked + state.lost}  # includes tracks not yet confirmed
    new_ids = after - known
    assert new_ids and min(new_ids) >= state.next_track_id  # no id handed out twice
    assert before & after  # vehicles still in view keep their ids


def test_cameras_have_independent_id_counters(settings, clip_detections):
    a, b = CameraTracker("a", settings.tracker), CameraTracker("b", settings.tracker)
    ids_a = {o.track_id for o in run(a, clip_detections[:5], 0)[-1]}
    ids_b = {o.track_id for o in run(b, clip_detections[:5], 0)[-1]}
    assert ids_a == ids_b and min(ids_a) == 1


def test_empty_state_is_a_fresh_tracker(settings):
    state = decode(TrackerState, encode(CameraTracker("cam-1", settings.tracker).state()))
    assert state.last_seq == -1 and state.tracked == [] and state.next_track_id == 1


def test_a_gap_in_time_starts_the_tracks_afresh_and_ids_count_on(settings, clip_detections):
    """After a stream loss or shed frames, old tracks must not be matched to what is in view now."""
    steady, gapped = CameraTracker("cam-1", settings.tracker), CameraTracker("cam-1", settings.tracker)
    at = [i / 30 for i in range(60)]
    for tracker in (steady, gapped):
        for seq, boxes in enumerate(clip_detections[:30]):
            tracker.update(seq, boxes, (360, 640), at[seq])
    before = {o.track_id for o in gapped.update(30, clip_detections[30], (360, 640), at[30])}
    steady_next = {o.track_id for o in steady.update(30, clip_detections[30], (360, 640), at[30])}
    assert before == steady_next and before
    # The same scene comes again 2 s + 1 frame later: within the limit tracks go on, beyond it they do not.
    near = {o.track_id for o in steady.update(31, clip_detections[31], (360, 640), at[30] + settings.tracker.max_gap_s)}
    assert near & before
    next_id = gapped.state().next_track_id
    far = gapped.update(31, clip_detections[31], (360, 640), at[30] + settings.tracker.max_gap_s + 0.5)
    state = gapped.state()
    assert state.tracked == [] or min(t.track_id for t in state.tracked) >= next_id  # no old track survives
    assert not {o.track_id for o in far} & before
    later = {o.track_id for seq in range(32, 36) for o in gapped.update(seq, clip_detections[seq], (360, 640), at[30] + 3 + seq / 30)}
    assert later and min(later) >= next_id  # new ids, above every id handed out before the gap
    restored = CameraTracker("cam-1", settings.tracker, decode(TrackerState, encode(gapped.state())))
    assert restored.last_at == gapped.last_at  # the clock survives a move too


def test_a_clock_set_back_restarts_the_tracks_and_the_camera_is_told_so(settings, clip_detections):
    """Frames an hour older than the last (a camera clock set right): ByteTrack would have joined the tracks across
    the step, with no word of it anywhere (from a time trial). Within the limit, a clock's jitter goes on."""
    from its_faust.track_restarts import TrackRestarts

    tracker, restarts = CameraTracker("cam-1", settings.tracker), TrackRestarts(every_s=60.0)
    for seq in range(30):
        tracker.update(seq, clip_detections[seq], (360, 640), 5000 + seq / 30)
    before = {o.track_id for o in tracker.update(30, clip_detections[30], (360, 640), 5001.0)}
    jitter = {o.track_id for o in tracker.update(31, clip_detections[31], (360, 640), 5001.0 - settings.tracker.max_gap_s)}
    assert tracker.afresh is None and jitter & before
    after = tracker.update(32, clip_detections[32], (360, 640), 1400.0)
    gap, dropped = tracker.afresh
    assert round(gap.scene_s) == -(5001 - settings.tracker.max_gap_s - 1400) and dropped > 0
    assert not {o.track_id for o in after} & before
    event = restarts.report(tracker, 100.0)
    assert f"its clock went back {-gap.scene_s:.1f} s" in event.reason and "set back" in event.reason


def test_a_live_cameras_clock_set_forward_is_told_from_a_silence(settings, clip_detections):
    """An hour on the camera's clock between two live frames that reached the worker 0.1 s apart: its clock moved
    (it read "3600.0 s since its last frame (the camera stopped and started again ...)", from a time trial). The
    same hour with the frames an hour apart here too is a silence."""
    from its_faust.track_restarts import TrackRestarts

    # (lag: from capture to arrival. Over the track stage's shedding limit, 6 s, the frames may have come from a
    # backlog, silence and all: a camera clock ahead, never shed, or shedding turned off.)
    for arrived_apart, lag, said in [(0.1, 0.2, "its clock went forward 3600.0 s (its frames came 0.1 s apart)"),
                                     (3599.0, 0.2, "3600.0 s since its last frame"),
                                     (None, 0.2, "3600.0 s since its last frame"),
                                     (0.1, 10.0, "3600.0 s since its last frame")]:
        tracker, restarts = CameraTracker("cam-1", settings.tracker), TrackRestarts(every_s=60.0)
        for seq in range(10):
            tracker.update(seq, clip_detections[seq], (360, 640), 5000 + seq / 30, None if arrived_apart is None else 5000 + seq / 30 + lag)
        arrived = None if arrived_apart is None else 5000 + 9 / 30 + lag + arrived_apart
        tracker.update(10, clip_detections[10], (360, 640), 5000 + 9 / 30 + 3600, arrived)
        reason = restarts.report(tracker, 100.0).reason
        assert reason.startswith(said), reason
        assert ("clock was set forward" in reason) == (said.startswith("its clock went forward"))
    # A file's scene time going back (its next run, opened before the last one's scene time) is no clock's doing.
    tracker = CameraTracker("cam-1", settings.tracker)
    tracker.update(0, clip_detections[0], (360, 640), 5000.0, 9000.0, live=False)
    tracker.update(1, clip_detections[1], (360, 640), 4990.0, 9000.1, live=False)
    reason = TrackRestarts().report(tracker, 100.0).reason
    assert reason.startswith("its scene time went back 10.0 s (a new run of a file") and "clock" not in reason, reason


def test_a_camera_whose_tracks_a_gap_restarted_is_told_at_most_once_a_minute(settings, clip_detections):
    from its_faust.track_restarts import TrackRestarts

    tracker, restarts = CameraTracker("cam-1", settings.tracker), TrackRestarts(every_s=60.0)
    for seq in range(30):
        tracker.update(seq, clip_detections[seq], (360, 640), seq / 30)
        assert tracker.afresh is None and restarts.report(tracker, seq) is None
    tracker.update(30, clip_detections[30], (360, 640), 14.0)  # 13 s later: a worker was lost, frames shed
    gap, dropped = tracker.afresh
    assert round(gap.scene_s, 1) == 13.0 and dropped > 0
    event = restarts.report(tracker, 100.0)
    assert event.kind == CameraEventKind.tracks_restarted and event.camera_id == "cam-1" and event.seq == 30
    assert f"{dropped} tracks dropped" in event.reason and "13.0 s since its last frame" in event.reason
    tracker.update(31, clip_detections[31], (360, 640), 14.03)
    assert tracker.afresh is None  # the frame after: nothing new
    tracker.update(32, clip_detections[32], (360, 640), 20.0)
    assert tracker.afresh and restarts.report(tracker, 130.0) is None  # within the minute: not again
    tracker.update(33, clip_detections[33], (360, 640), 30.0)
    event = restarts.report(tracker, 161.0)
    assert event.reason.endswith("new ids; 1 restart before this one not told since the last report"), event.reason
    assert "not told" not in restarts.report(tracker, 300.0).reason  # none held back since


def test_restarts_held_back_are_told_once_they_stop_or_the_worker_stops(settings, clip_detections):
    """The restarts after a camera's last report were never told when they stopped, nor when its worker stopped."""
    from its_faust.track_restarts import TrackRestarts

    tracker, restarts = CameraTracker("cam-1", settings.tracker), TrackRestarts(every_s=60.0)
    for seq in range(10):
        tracker.update(seq, clip_detections[seq], (360, 640), seq / 30)
    tracker.update(10, clip_detections[10], (360, 640), 14.0)
    assert restarts.report(tracker, 100.0) is not None
    for seq, at, now in [(11, 14.03, 101.0), (12, 20.0, 102.0), (13, 20.03, 103.0), (14, 30.0, 110.0)]:
        tracker.update(seq, clip_detections[seq], (360, 640), at)
        assert restarts.report(tracker, now) is None  # (each frame is reported on, as the agent does)
    assert restarts.overdue(159.0) == []  # within the period: the next restart may still tell them
    [event] = restarts.overdue(160.0)
    assert event.camera_id == "cam-1" and event.seq == 14 and event.kind == CameraEventKind.tracks_restarted
    assert "9.970 s since its last frame" in event.reason  # the last one held back: 20.03 -> 30.0
    assert event.reason.endswith("the last of 2 restarts not told since the last report"), event.reason
    assert restarts.overdue(1000.0) == [] and restarts.held_back(1000.0) == []  # told once

    tracker.update(15, clip_detections[15], (360, 640), 40.0)
    assert restarts.report(tracker, 1001.0) is not None
    tracker.update(16, clip_detections[16], (360, 640), 50.0)
    assert restarts.report(tracker, 1002.0) is None
    [event] = restarts.held_back(1003.0)  # the worker stops: told before its period is over
    assert event.seq == 16 and event.reason.endswith("the last of 1 restart not told since the last report")
    assert restarts.held_back(1004.0) == []


def test_a_cameras_stored_state_written_by_a_later_version_is_read_without_what_this_one_does_not_know(settings, clip_detections):
    """A worker rolled back reads what a later one wrote in its tables: a field refused in the stored state made
    every frame of the camera dead-lettered (an upgrade trial). Records on topics stay strict."""
    import json

    from its_faust.codecs import SchemaError
    from schemas import FrameRecord
    from tables.camera_analytics import AnalyticsState

    tracker = CameraTracker("cam-1", settings.tracker)
    for seq in range(5):
        tracker.update(seq, clip_detections[seq], (360, 640), seq / 30)
    later = json.loads(encode(tracker.state()))
    later["added_later"] = 1
    later["tracked"][0]["added_later"] = [1, 2]
    state = decode(TrackerState, json.dumps(later).encode())
    assert state == tracker.state()
    analytics = {"camera_id": "cam-1", "last_seq": 4, "added_later": True,
                 "alerts": {"wrong_way:track-1": {"alert_id": "a", "kind": "wrong_way", "subject": "track-1", "severity": "warning",
                                                   "message": "m", "started_at": 1.0, "raised_seq": 3, "config_version": 7}},
                 "tracks": [{"track_id": 1, "last_seq": 4, "last_at": 1.0, "votes": {"car": 4}, "label_cls": {"car": 2},
                             "lines": [{"line": "l", "side": 1, "x": 0, "y": 0, "counted": False, "new": 1}],
                             "zones": [{"zone": "z", "inside": True, "streak": 3, "entered_at": 0.5, "speed_sum": 0,
                                        "speed_n": 0, "new": 1}], "new": 1}]}
    restored = decode(AnalyticsState, json.dumps(analytics).encode())
    assert restored.alerts["wrong_way:track-1"].raised_seq == 3 and restored.tracks[0].zones[0].inside
    frame = {"camera_id": "cam-1", "seq": 1, "captured_at": 1.0, "width": 4, "height": 4, "jpeg": "eA==", "scene_tme": 3.0}
    with pytest.raises(SchemaError, match="scene_tme"):
        decode(FrameRecord, json.dumps(frame).encode())


def test_a_seq_past_2_to_the_53_in_a_stored_state_is_forgotten(settings, clip_detections):
    """A camera that took a frame with seq 10**30 before seqs were bounded skipped its every later frame, and an
    upgrade kept it so: the camera's last seq is forgotten, a frame the state names is taken as the largest seq."""
    import json

    from schemas.base import MAX_SEQ
    from tables.camera_analytics import AnalyticsState

    tracker = CameraTracker("cam-1", settings.tracker)
    tracker.update(3, clip_detections[3], (360, 640), 0.1)
    stuck = json.loads(encode(tracker.state()))
    stuck["last_seq"] = 10**30
    restored = CameraTracker("cam-1", settings.tracker, decode(TrackerState, json.dumps(stuck).encode()))
    assert restored.last_seq == -1 and restored.update(4, clip_detections[4], (360, 640), 0.13) is not None
    analytics = {"camera_id": "cam-1", "last_seq": 10**30,
                 "alerts": {"wrong_way:track-1": {"alert_id": "a", "kind": "wrong_way", "subject": "track-1", "severity": "warning",
                                                   "message": "m", "started_at": 1.0, "raised_seq": 10**30}},
                 "tracks": [{"track_id": 1, "last_seq": 10**30, "last_at": 1.0, "votes": {"car": 4}, "label_cls": {"car": 2}}]}
    state = decode(AnalyticsState, json.dumps(analytics).encode())
    assert state.last_seq == -1 and state.tracks[0].last_seq == MAX_SEQ
    assert state.alerts["wrong_way:track-1"].raised_seq == MAX_SEQ


def test_track_boxes_lie_within_the_frame(settings):
    """The Kalman filter's boxes reached past the frame (y2 1081.9 on a 1080-pixel frame, from a trial);
    Ultralytics clips its own tracks' boxes, and integrators take 0..width, 0..height as given."""
    from schemas import Box

    tracker = CameraTracker("cam-1", settings.tracker)
    edge = [Box(x1=-3.0, y1=50.0, x2=40.0, y2=95.0, conf=0.9, cls=2, label="car"),
            Box(x1=100.0, y1=-2.0, x2=165.0, y2=30.0, conf=0.9, cls=2, label="car")]
    for seq in range(3):
        objects = tracker.update(seq, edge, (90, 160), seq / 30)
    assert len(objects) == 2
    for o in objects:
        assert 0 <= o.x1 < o.x2 <= 160 and 0 <= o.y1 < o.y2 <= 90, o
    assert {(o.x1, o.y2) for o in objects} >= {(0.0, 90.0)}


def test_a_time_lapse_camera_is_tracked_at_its_own_pace(settings, clip_detections):
    """Frames 4 s apart (a time-lapse file, a snapshot camera): the 2 s gap limit restarted its tracks at every
    frame, so none was ever confirmed: no tracks, no counts (a trial). Its own pace sets the limit once known;
    a gap of many of its intervals still restarts them, and a clock set back is judged by the fixed limit."""
    from its_faust.track_restarts import TrackRestarts

    tracker = CameraTracker("cam-1", settings.tracker)
    restarts = []
    for seq in range(12):  # the clip's first frames, a still-ish scene: its boxes barely move between them
        objects = tracker.update(seq, clip_detections[seq], (360, 640), 4.0 * seq)
        restarts.append(tracker.afresh is not None)
        if seq == 1:  # before its pace is known: said as what it may be (it blamed lost workers and shed frames)
            said = TrackRestarts().report(tracker, 0.0).reason
            assert said.startswith("4.000 s since its last frame (a camera whose frames come this far apart"), said
    assert restarts[1:4] == [True, True, True] and not any(restarts[4:])  # once three intervals are known: its pace
    assert objects and tracker.gap_limit_s() == 12.0
    tracker.update(12, clip_detections[12], (360, 640), 4.0 * 11 + 13.0)  # over three of its intervals
    assert tracker.afresh is not None
    assert "over the 12 s limit" in TrackRestarts().report(tracker, 0.0).reason
    tracker.update(13, clip_detections[13], (360, 640), 4.0 * 11 + 13.0 - 3.0)  # a clock 3 s back
    assert tracker.afresh is not None
    state = decode(TrackerState, encode(tracker.state()))  # the pace moves with the camera
    assert CameraTracker("cam-1", settings.tracker, state).gap_limit_s() == tracker.gap_limit_s()
    # A camera at 30 fps: the fixed limit, whatever its pace.
    fast = CameraTracker("cam-2", settings.tracker)
    for seq in range(10):
        fast.update(seq, clip_detections[seq], (360, 640), seq / 30)
    assert fast.gap_limit_s() == settings.tracker.max_gap_s


def test_an_overloaded_live_camera_keeps_the_fixed_gap_limit(settings, clip_detections):
    """Learned from the frames a behind worker applied, the limit grew to 15 s, and ByteTrack kept tracks across
    jumps of real traffic (a review)."""
    from tables.camera_tracker import CameraTracker

    tracker = CameraTracker("cam-1", settings.tracker)
    restarts = 0
    for i in range(12):  # every 40th frame of an 8 fps camera
        tracker.update(40 * i, clip_detections[i], (360, 640), 5.0 * i)
        restarts += tracker.afresh is not None
    assert tracker.gap_limit_s() == settings.tracker.max_gap_s and restarts == 11
