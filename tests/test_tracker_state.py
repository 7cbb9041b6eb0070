"""The camera actor's tracker state survives the table codec bit for bit."""

import pytest

from its_faust.codecs import decode, encode
from tables.camera_tracker import CameraTracker, TrackerState


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
