"""Speed from calibration, zone occupancy/dwell, and incidents -> one alert, then one clear."""

from __future__ import annotations

import numpy as np
import pytest

from its_faust.frame_quality import StillSceneSampler
from its_faust.settings import AnalyticsSettings, IngestSettings
from schemas.control import CameraConfig
from schemas.geometry import Calibration, Zone
from schemas.tracks import TrackedObject, TrackRecord
from tables.camera_analytics import CameraAnalytics, Moment
from tables.speed import RoadPlane

FPS = 30.0
# A road 7 m wide and 40 m long seen in perspective: near edge wide at the bottom, far edge narrow.
CALIBRATION = Calibration(
    image_points=[(100, 350), (540, 350), (400, 100), (240, 100)],
    road_points=[(0, 0), (7, 0), (7, 40), (0, 40)],
)


def box(track_id, gx, gy, label="car", cls=2, w=40, h=30):
    """A box whose bottom centre (ground point) is (gx, gy)."""
    return TrackedObject(track_id=track_id, x1=gx - w / 2, y1=gy - h, x2=gx + w / 2, y2=gy, conf=0.9, cls=cls, label=label)


def frame(seq, objects):
    return TrackRecord(camera_id="cam", seq=seq, captured_at=1000 + seq / FPS, width=640, height=360, detected_at=0,
                       tracked_at=0, tracker_frame=seq + 1, model="m", detections=len(objects), worker="w",
                       objects=objects)


def config(zones=(), calibration=None, limit=None):
    return CameraConfig(camera_id="cam", version=1, last_command_id="c", updated_at=0, zones=list(zones),
                        calibration=calibration, speed_limit_kmh=limit)


def play(frames_objects, cfg, actor=None, start=0):
    actor = actor or CameraAnalytics("cam", rules=AnalyticsSettings())
    outs = [actor.update(frame(start + i, objs), cfg) for i, objs in enumerate(frames_objects)]
    return actor, outs


def image_of(road_xy):
    inverse = np.linalg.inv(RoadPlane(CALIBRATION).matrix)
    u, v, w = inverse @ np.array([road_xy[0], road_xy[1], 1.0])
    return u / w, v / w


def drive(track_id, kmh, seconds, start_m=2.0, lane_x=3.5):
    """Frames of one vehicle driving up the calibrated road at a constant speed."""
    metres_per_frame = kmh / 3.6 / FPS
    return [[box(track_id, *image_of((lane_x, start_m + i * metres_per_frame)))] for i in range(int(seconds * FPS))]


@pytest.mark.parametrize("kmh", [30.0, 50.0, 110.0])
def test_speed_of_a_synthetic_track_through_a_known_homography_is_within_2_percent(kmh):
    actor, _ = play(drive(1, kmh, 1.2), config(calibration=CALIBRATION))
    assert actor.tracks[1].speed_kmh == pytest.approx(kmh, rel=0.02)


def test_a_speed_no_vehicle_drives_is_not_measured_and_not_taken_from_a_topic():
    """Past 400 km/h it is a track that jumped to another vehicle: left out, not counted into a line's mean and
    p85, and raising no overspeed alert. A forged crossing at 1e308 km/h took them with it (a topic fuzz trial)."""
    from schemas.analytics import Crossing

    actor, _ = play(drive(1, 395.0, 0.3, start_m=1.0), config(calibration=CALIBRATION))  # (the road is 40 m long)
    assert actor.tracks[1].speed_kmh == pytest.approx(395.0, rel=0.02)
    actor, _ = play(drive(1, 450.0, 0.3, start_m=1.0), config(calibration=CALIBRATION))
    assert actor.tracks[1].speed_kmh is None  # (so no overspeed either)
    crossing = dict(camera_id="cam", seq=1, captured_at=1.0, line="l1", direction="out", track_id=9, label="car", cls=2)
    assert Crossing(**crossing, speed_kmh=399.5).speed_kmh == 399.5
    # Read as no speed, not refused: a crossing written before the bound keeps its vehicle's count (a review).
    assert Crossing(**crossing, speed_kmh=1e308).speed_kmh is None
    # And one a window took before is left out of its figures (it made them unbuildable: every crossing of the key
    # dead-lettered until the window ended).
    from tables.speed import speed_stats

    assert speed_stats([450.0, 50.0]).mean_kmh == 50.0 and speed_stats([450.0]) is None


def test_a_calibration_in_a_surveys_coordinates_measures_the_same_speeds():
    """Road points as UTM gives them (northings of 5e6 m) lost the metres to OpenCV's float32 homography."""
    survey = Calibration(image_points=CALIBRATION.image_points,
                         road_points=[(500000.0 + x, 5400000.0 + y) for x, y in CALIBRATION.road_points])
    actor, _ = play(drive(1, 50.0, 1.2), config(calibration=survey))
    assert actor.tracks[1].speed_kmh == pytest.approx(50.0, rel=0.02)


def test_speed_is_smoothed_over_box_jitter():
    rng = np.random.default_rng(7)
    frames = [[box(1, o.x1 + 20 + rng.normal(0, 0.7), o.y2 + rng.normal(0, 0.7))] for (o,) in drive(1, 60, 1.5)]
    actor, _ = play(frames, config(calibration=CALIBRATION))
    assert actor.tracks[1].speed_kmh == pytest.approx(60, rel=0.05)


def test_no_speed_is_measured_outside_the_calibrated_area():
    # The same drive beside the calibrated road (the homography would extrapolate there), then beyond its far end.
    actor, _ = play(drive(1, 50, 1.2, lane_x=-6.0), config(calibration=CALIBRATION, limit=30))
    assert actor.tracks[1].speed_kmh is None
    actor, outs = play(drive(2, 200, 1.2, start_m=38.0), config(calibration=CALIBRATION, limit=30))
    assert actor.tracks[2].speed_kmh is None and not [a for o in outs for a in o.alerts]
    # Back inside, from its own samples there only.
    actor, _ = play(drive(3, 50, 1.2), config(calibration=CALIBRATION))
    assert actor.tracks[3].speed_kmh == pytest.approx(50, rel=0.02)


def test_a_speed_measured_on_the_calibrated_road_is_not_carried_past_its_end():
    """Its speed from the samples inside stays the track's while it drives on past the calibrated area: it
    must not (an overspeed there would go on being judged on it)."""
    plane, actor, cfg = RoadPlane(CALIBRATION), CameraAnalytics("cam", rules=AnalyticsSettings()), config(calibration=CALIBRATION)
    inside_speeds, outside_speeds = [], []
    for i, objects in enumerate(drive(1, 50, 3.0, start_m=20.0)):  # 20 m to about 60 m: past the far end at 40 m
        actor.update(frame(i, objects), cfg)
        ground = ((objects[0].x1 + objects[0].x2) / 2, objects[0].y2)
        (inside_speeds if plane.covers(*ground) else outside_speeds).append(actor.tracks[1].speed_kmh)
    assert len(outside_speeds) > 10 and outside_speeds == [None] * len(outside_speeds)
    assert inside_speeds[-1] == pytest.approx(50, rel=0.02)


def test_samples_from_after_now_are_not_kept_for_a_speed():
    """A clock set back left samples dated after the frame: the fit saw a negative time span and gave no speed."""
    from tables.speed import trim

    assert trim([(9.0, 0, 0), (10.0, 0, 0), (10.5, 0, 0), (12.0, 0, 0)], now=10.5, window_s=1.0) == [(10.0, 0, 0), (10.5, 0, 0)]


def test_without_calibration_no_speed_is_claimed():
    actor, outs = play(drive(1, 50, 1.2), config())
    assert actor.tracks[1].speed_kmh is None and actor.tracks[1].px_speed > 0


ZONE = Zone(name="box", points=[(200, 100), (400, 100), (400, 300), (200, 300)])


def test_zone_entry_exit_dwell_and_occupancy():
    # Track 1 walks down through the zone at 5 px/frame; track 2 sits inside the whole time.
    frames = [[box(1, 300, 50 + 5 * i), box(2, 250, 200)] for i in range(60)]
    _, outs = play(frames, config(zones=[ZONE]))
    events = [e for o in outs for e in o.zone_events]
    assert [(e.kind, e.track_id) for e in events] == [("enter", 2), ("enter", 1), ("exit", 1)]
    enter1, exit1 = events[1], events[2]
    assert enter1.occupancy == 2 and exit1.occupancy == 1
    # Ground point y = 50 + 5i enters at y > 100 (i = 11, +2 frames to confirm), leaves at y > 300 (i = 51, +2).
    assert exit1.dwell_s == pytest.approx((53 - 13) / FPS, abs=1e-3)


def test_a_track_remembers_only_the_zones_it_is_in_or_entering():
    """Every track kept a memory of every zone, written to the table twice a second: a junction with 64 zones held
    11.6 KB a track (a heavy-configuration trial). The events are those of test_zone_entry_exit_dwell_and_occupancy."""
    others = [Zone(name=f"far{i}", points=[(500 + i, 300), (520 + i, 300), (520 + i, 320)]) for i in range(63)]
    frames = [[box(1, 300, 50 + 5 * i), box(2, 250, 200)] for i in range(60)]
    actor, outs = play(frames[:30], config(zones=[ZONE, *others]))
    assert {t.track_id: set(t.zones) for t in actor.tracks.values()} == {1: {ZONE.name}, 2: {ZONE.name}}
    actor, more = play(frames[30:], config(zones=[ZONE, *others]), actor, start=30)
    events = [e for o in outs + more for e in o.zone_events]
    assert [(e.kind, e.track_id) for e in events] == [("enter", 2), ("enter", 1), ("exit", 1)]
    assert events[2].dwell_s == pytest.approx((53 - 13) / FPS, abs=1e-3)
    assert {t.track_id: set(t.zones) for t in actor.tracks.values()} == {1: set(), 2: {ZONE.name}}  # 1 has left
    assert [len(t.zones) for t in actor.state().tracks] == [0, 1]


def test_a_zone_added_again_is_entered_afresh_and_its_events_say_which_adding_they_are_of():
    """Removed and added again between two frames (the same polygon): its memberships from before are not
    its own, so a track still inside enters it again, under the new version."""
    first = config(zones=[ZONE]).model_copy(update={"zone_versions": {ZONE.name: 2}})
    again = first.model_copy(update={"version": 4, "zone_versions": {ZONE.name: 4}})
    parked = [[box(1, 250, 200)]] * 20
    actor, outs = play(parked, first)
    _, outs_again = play(parked, again, actor=actor, start=20)
    events = [e for o in outs + outs_again for e in o.zone_events]
    assert [(e.kind, e.zone_version) for e in events] == [("enter", 2), ("enter", 4)]
    # A zone from before versions (none in the configuration) stays what it was: no re-entry.
    actor, outs = play(parked * 2, config(zones=[ZONE]))
    assert [(e.kind, e.zone_version) for o in outs for e in o.zone_events] == [("enter", 0)]


def road_zone(name, near_m, far_m):
    """A zone across the calibrated road from ``near_m`` to ``far_m`` metres up it."""
    return Zone(name=name, points=[image_of(p) for p in ((0, near_m), (7, near_m), (7, far_m), (0, far_m))])


def test_the_state_keeps_digests_of_lines_and_zones_and_a_state_of_before_keeps_its_memories():
    """The state kept every line's and zone's JSON, written twice a second (59 of 157 KB with 50 lines and 64 zones,
    a heavy-configuration trial); a state written before, with the JSON, must not re-enter its tracks."""
    from schemas.geometry import CountingLine
    from tables.camera_analytics import AnalyticsState

    cfg = config(zones=[ZONE]).model_copy(update={"lines": [CountingLine(name="l", x1=0, y1=400, x2=640, y2=400)],
                                                  "line_versions": {"l": 3}, "zone_versions": {"box": 2}})
    frames = [[box(1, 300, 50 + 5 * i), box(2, 250, 200)] for i in range(60)]
    actor, outs = play(frames[:30], cfg)
    state = actor.state()
    assert all(len(v) < 30 for v in state.geometry.values()), state.geometry  # digests, not definitions
    assert state.geometry["zone:box"].endswith("@2") and state.geometry["line:l"].endswith("@3")
    as_before = state.model_copy(update={"geometry": {"line:l": f"{cfg.lines[0].model_dump_json()}@3",
                                                      "zone:box": f"{ZONE.model_dump_json()}@2"}})
    restored = CameraAnalytics("cam", rules=AnalyticsSettings(), state=AnalyticsState.model_validate(as_before.model_dump()))
    _, more = play(frames[30:], cfg, restored, start=30)
    events = [e for o in outs + more for e in o.zone_events]
    assert [(e.kind, e.track_id) for e in events] == [("enter", 2), ("enter", 1), ("exit", 1)]  # no re-entry
    assert restored.state().geometry == state.geometry


def test_a_zone_exit_gives_the_mean_speed_inside_it_and_each_entry_its_own():
    cfg = config(zones=[road_zone("middle", 10.0, 25.0)], calibration=CALIBRATION)
    through = drive(1, 50, 2.5, start_m=2.0)  # 2 m to about 37 m
    actor, outs = play(through, cfg)
    (enter, leave) = [e for o in outs for e in o.zone_events]
    assert (enter.kind, leave.kind) == ("enter", "exit") and leave.mean_speed_kmh == pytest.approx(50, rel=0.02)
    # Out of view for 2 s past the zone, then back before it at 30 km/h: the second stay's mean is its own.
    back = [[box(1, *image_of((3.5, 6.0 + i * 30 / 3.6 / FPS)))] for i in range(int(3.0 * FPS))]
    _, more = play([[]] * int(2 * FPS) + back, cfg, actor=actor, start=len(through))
    again = [e for o in more for e in o.zone_events if e.kind == "exit"]
    assert again and again[-1].mean_speed_kmh == pytest.approx(30, rel=0.03)


def test_a_zone_stay_saved_and_restored_midway_gives_the_same_exit():
    from its_faust.codecs import decode, encode
    from tables.camera_analytics import AnalyticsState

    cfg = config(zones=[road_zone("middle", 8.0, 30.0)], calibration=CALIBRATION)
    # Speeding up from 30 to 80 km/h: the stay's mean depends on every sample it took, before the cut too.
    a = (80 - 30) / 3.6 / 2.5
    frames = [[box(1, *image_of((3.5, 2.0 + 30 / 3.6 * t + a * t * t / 2)))] for t in (i / FPS for i in range(int(2.5 * FPS)))]
    _, whole = play(frames, cfg)
    cut = int(1.2 * FPS)  # about 14 m: inside the zone
    actor, first = play(frames[:cut], cfg)
    assert actor.occupancy("middle") == 1
    restored = CameraAnalytics("cam", decode(AnalyticsState, encode(actor.state())), AnalyticsSettings())
    _, rest = play(frames[cut:], cfg, actor=restored, start=cut)
    assert [o.zone_events for o in first + rest] == [o.zone_events for o in whole]


def test_zone_edge_flicker_does_not_enter():
    frames = [[box(1, 300, 99 if i % 2 else 101)] for i in range(30)]
    _, outs = play(frames, config(zones=[ZONE]))
    assert [e for o in outs for e in o.zone_events] == []


def test_a_track_that_vanishes_leaves_the_zone():
    frames = [[box(1, 300, 200)]] * 15 + [[]] * 40
    _, outs = play(frames, config(zones=[ZONE]))
    events = [e for o in outs for e in o.zone_events]
    assert [e.kind for e in events] == ["enter", "exit"] and events[1].occupancy == 0


def test_a_track_seen_for_a_few_frames_does_not_enter():
    """A second, brief track on one vehicle (a truck's cab and trailer, say) lives a few frames: it is not an entry.
    Such tracks made a band on the demo clip count 17 entries where 11 vehicles passed."""
    frames = [[box(1, 300, 200), box(2, 300, 200)]] * 9 + [[box(1, 300, 200)]] * 20
    _, outs = play(frames, config(zones=[ZONE]))
    events = [e for o in outs for e in o.zone_events]
    assert [(e.kind, e.track_id) for e in events] == [("enter", 1)]  # at the 12th frame: 10 seen, 3 inside
    assert events[0].seq == 11


def alerts(outs):
    return [(a.kind, a.state) for o in outs for a in o.alerts]


LANE = Zone(name="lane1", points=[(0, 0), (640, 0), (640, 360), (0, 360)], kind="lane", heading_deg=90)


def test_stopped_vehicle_raises_one_alert_then_one_clear():
    approach = [[box(1, 300, 50 + 4 * i)] for i in range(30)]           # moving down, 120 px/s
    stopped = [[box(1, 300, 166)]] * int(14 * FPS)                       # stands still 14 s
    leaves = [[box(1, 300, 166 + 4 * i)] for i in range(1, 40)]
    gone = [[]] * int(5 * FPS)
    _, outs = play(approach + stopped + leaves + gone, config(zones=[LANE]))
    assert alerts(outs) == [("stopped_vehicle", "raised"), ("stopped_vehicle", "cleared")]
    raised = next(a for o in outs for a in o.alerts if a.state == "raised")
    assert raised.track_ids == [1] and raised.zone == "lane1" and raised.severity == "warning"
    assert raised.captured_at - raised.started_at >= 10.0 and raised.snapshot.seq == raised.seq
    cleared = next(a for o in outs for a in o.alerts if a.state == "cleared")
    assert cleared.message == "cleared (seen moving): car 1 stopped in lane lane1"  # it drove on, in view
    # As run's and replay's summaries give it: which vehicle, where, what was measured, not the message alone.
    from its_faust.results import alert_summary

    summed = alert_summary(raised, 1000.0)
    assert (summed["track_ids"], summed["zone"], summed["details"]["stopped_s"]) == ([1], "lane1", 10.0)
    assert summed["since_start_s"] == round(raised.captured_at - 1000.0, 2)
    # The raised one says which configuration it was raised under (the API tells a removed camera's alerts by it).
    assert raised.config_version == 1 and cleared.config_version == 0
    # Not kept in the actor's stored state: a worker rolled back to before the field could not read it, and
    # dead-lettered every frame of the camera (an upgrade trial).
    from tables.incidents import ActiveAlert

    assert "config_version" not in ActiveAlert.model_fields


@pytest.mark.parametrize("fps", [5, 10, 25, 30])
@pytest.mark.parametrize("freeze_after_stop_s", [0.5, 12.0])  # before the alert is raised, and after
def test_a_stopped_car_in_a_frozen_picture_keeps_its_alert_through_the_still_scene_samples(fps, freeze_after_stop_s):
    """A still scene goes to the detector only as the samples ingest takes of it (its_faust/frame_quality.py
    StillSceneSampler, default settings); they must come often enough for the car to stay stopped: at one
    a second its speed could not be fitted, and the alert never came (or cleared)."""
    sampler = StillSceneSampler(IngestSettings().frozen_keepalive_s)
    actor, cfg, outs = CameraAnalytics("cam", rules=AnalyticsSettings()), config(zones=[LANE]), []
    for n in range(int(40 * fps)):
        t = n / fps
        y = min(50 + 120 * t, 166)  # down the lane at 120 px/s, then standing
        stopped_since = (166 - 50) / 120
        if t >= stopped_since + freeze_after_stop_s and not sampler.due(1000 + t):
            continue  # frozen, and not a sample: never reaches analytics
        sampler.sent(1000 + t)
        record = TrackRecord(camera_id="cam", seq=n, captured_at=1000 + t, width=640, height=360, detected_at=0,
                             tracked_at=0, tracker_frame=n + 1, model="m", detections=1, worker="w", objects=[box(1, 300, y)])
        outs.append(actor.update(record, cfg))
    assert alerts(outs) == [("stopped_vehicle", "raised")]


def test_wrong_way_raises_one_alert_then_one_clear():
    upwards = [[box(7, 320, 340 - 4 * i)] for i in range(70)]  # heading 270 in a lane whose heading is 90
    _, outs = play(upwards + [[]] * int(6 * FPS), config(zones=[LANE]))
    assert alerts(outs) == [("wrong_way", "raised"), ("wrong_way", "cleared")]
    raised, cleared = [a for o in outs for a in o.alerts]
    assert raised.severity == "critical" and raised.details["heading_deg"] == pytest.approx(270, abs=1)
    # It went out of view: the clear says why (after a rebalance's pause it is tracked afresh, under a new id).
    assert cleared.message == f"cleared (no longer tracked): {raised.message}"


def test_right_way_raises_nothing():
    _, outs = play([[box(7, 320, 20 + 4 * i)] for i in range(70)], config(zones=[LANE]))
    assert alerts(outs) == []


def test_congestion_raises_one_alert_then_one_clear():
    queue = [[box(t, 100 + 90 * t, 200 + 0.02 * i) for t in range(1, 6)] for i in range(int(25 * FPS))]
    flowing = [[box(t, 100 + 90 * t, 200 + 6 * i) for t in range(1, 6)] for i in range(1, 30)]
    area = Zone(name="approach", points=[(0, 100), (640, 100), (640, 300), (0, 300)])
    _, outs = play(queue + flowing + [[]] * int(5 * FPS), config(zones=[area]))
    assert alerts(outs) == [("congestion", "raised"), ("congestion", "cleared")]
    raised = next(a for o in outs for a in o.alerts)
    assert raised.subject == "zone-approach" and raised.track_ids == [1, 2, 3, 4, 5]


def test_a_frame_the_detector_saw_nothing_on_does_not_end_a_queue():
    """One empty frame cleared the congestion alert; the same queue was raised again as a new incident later."""
    standing = [box(t, 100 + 90 * t, 200) for t in range(1, 6)]
    blank_at = int(22 * FPS)  # the alert raised at ~20 s
    frames = [[] if i == blank_at else standing for i in range(int(90 * FPS))]
    _, outs = play(frames, config(zones=[Zone(name="approach", points=[(0, 100), (640, 100), (640, 300), (0, 300)])]))
    assert alerts(outs) == [("congestion", "raised")]


def test_a_queue_outside_the_calibrated_road_is_judged_in_pixels():
    """Calibrating a camera turned queue alerts off in every zone outside its four points: no km/h there."""
    far = Zone(name="far", points=[(0, 0), (640, 0), (640, 90), (0, 90)])  # above the calibrated road (y 100-350)
    standing = [[box(t, 60 + 110 * t, 60) for t in range(1, 6)] for _ in range(int(25 * FPS))]
    _, outs = play(standing, config(zones=[far], calibration=CALIBRATION, limit=50))
    assert alerts(outs) == [("congestion", "raised")]


def test_overspeed_raises_one_alert_then_one_clear_and_needs_calibration():
    fast = drive(3, 80, 1.5, start_m=1)
    slow = [[box(3, *image_of((3.5, 1 + 80 / 3.6 * 1.5 + i * 40 / 3.6 / FPS)))] for i in range(1, int(5 * FPS))]
    _, outs = play(fast + slow, config(calibration=CALIBRATION, limit=50))
    assert alerts(outs) == [("overspeed", "raised"), ("overspeed", "cleared")]
    raised = next(a for o in outs for a in o.alerts)
    assert raised.severity == "warning" and raised.details["speed_kmh"] == pytest.approx(80, rel=0.05)
    _, uncalibrated = play(fast + slow, config(limit=50))
    assert alerts(uncalibrated) == []


def test_a_camera_closed_after_its_frames_stopped_clears_its_alerts_and_empties_its_zones():
    wrong = [[box(7, 320, 340 - 4 * i), box(8, 200, 300)] for i in range(70)]  # 7 drives the wrong way; 8 waits
    actor, outs = play(wrong, config(zones=[LANE]))
    assert alerts(outs) == [("wrong_way", "raised")] and actor.occupancy("lane1") >= 2
    moment = Moment("cam", 69, captured_at=2000.0, scene_time=None)
    closed = actor.close(moment, "no frames for 30 s")
    assert [(a.kind, a.state, a.seq) for a in closed.alerts] == [("wrong_way", "cleared", 69)]
    assert closed.alerts[0].message.startswith("cleared (no frames for 30 s): ")
    assert closed.alerts[0].alert_id == next(a for o in outs for a in o.alerts).alert_id
    assert [(e.kind, e.zone, e.track_id) for e in closed.zone_events] == [("exit", "lane1", 7), ("exit", "lane1", 8)]
    assert closed.zone_events[-1].occupancy == 0 and actor.occupancy("lane1") == 0 and actor.tracks == {}
    # They left as of the last frame (when a track out of sight leaves), not at 2000: the zone's minute of then.
    assert {(e.seq, e.at) for e in closed.zone_events} == {(69, actor.last_at + actor.rules.zone_lost_s)}
    assert actor.last_at + actor.rules.zone_lost_s < 2000.0
    again = actor.close(moment, "no frames for 60 s")
    assert again.alerts == [] and again.zone_events == []  # nothing left open


def test_a_camera_back_after_a_silence_nothing_closed_is_closed_first_as_of_then():
    """`run` stops its own worker, so nothing closed the camera when its clip ended: at the next run's first
    frame its last tracks left their zones (counted in that run, their exits stamped then) and its alerts
    stayed active until then. Now that frame closes the camera first: its alerts clear as of 30 s after its last
    frame, its tracks leave their zones as of that frame."""
    from its_faust.codecs import decode, encode
    from tables.camera_analytics import AnalyticsState

    wrong = [[box(7, 320, 340 - 4 * i), box(8, 200, 300)] for i in range(70)]
    actor, outs = play(wrong, config(zones=[LANE]))
    assert alerts(outs) == [("wrong_way", "raised")] and actor.occupancy("lane1") >= 2
    actor = CameraAnalytics("cam", decode(AnalyticsState, encode(actor.state())), AnalyticsSettings())  # as stored
    last_at = frame(69, []).at
    later = frame(70, [box(1, 100, 100)]).model_copy(update={"captured_at": last_at + 300})
    out = actor.update(later, config(zones=[LANE]))
    assert [(a.kind, a.state, a.seq, a.captured_at) for a in out.alerts] == [("wrong_way", "cleared", 69, last_at + 30)]
    assert out.alerts[0].message.startswith("cleared (no frames for 300 s): ")
    assert [(e.kind, e.track_id, e.seq, e.captured_at) for e in out.zone_events] == [
        ("exit", 7, 69, last_at + 1.0), ("exit", 8, 69, last_at + 1.0)]  # as of the last frame, zone_lost_s on
    assert out.zone_events[-1].occupancy == 0 and set(actor.tracks) == {1}
    # A shorter gap is a camera's stream hiccup (or the next run, 20 s on), not a silence: nothing is closed,
    # but the tracks not back after it left their zones during it, as of its start: not events of this frame.
    actor, outs = play(wrong, config(zones=[LANE]))
    out = actor.update(later.model_copy(update={"captured_at": last_at + 20}), config(zones=[LANE]))
    assert out.alerts == []
    assert [(e.kind, e.track_id, e.seq, e.captured_at) for e in out.zone_events] == [
        ("exit", 7, 69, last_at + 1.0), ("exit", 8, 69, last_at + 1.0)]  # zone_lost_s after the last frame


def test_a_camera_whose_clock_went_back_is_closed_as_of_its_last_frame_and_starts_bare():
    """A camera clock an hour fast, set right: measured on the old clock, the stopped car's alert cleared and was
    never raised again (its cool-down ran for the hour), the tracks of then stayed in their zones for the hour, and
    a dwell came out at -3594 s (from a time trial). Now the camera is closed as of its last frame, and the stretch
    after the step is judged on its own clock."""
    approach = [[box(1, 300, 50 + 4 * i)] for i in range(30)]
    stopped = [[box(1, 300, 166)]] * int(14 * FPS)
    actor, outs = play(approach + stopped, config(zones=[LANE]))
    assert alerts(outs) == [("stopped_vehicle", "raised")] and actor.occupancy("lane1") == 1
    last = len(approach + stopped) - 1
    last_at = frame(last, []).at
    back = [frame(last + 1 + i, [box(2, 300, 166)]).model_copy(update={"captured_at": last_at - 3600 + i / FPS})
            for i in range(int(14 * FPS))]  # the same car still there, under a new id (the tracker restarted too)
    outs = [actor.update(record, config(zones=[LANE])) for record in back]
    first = outs[0]
    assert [(a.kind, a.state, a.seq, a.captured_at) for a in first.alerts] == [("stopped_vehicle", "cleared", last, last_at)]
    assert first.alerts[0].message.startswith("cleared (the camera's clock went back 3600.0 s): ")
    assert [(e.kind, e.track_id) for e in first.zone_events] == [("exit", 1)] and first.zone_events[0].dwell_s > 0
    assert set(actor.tracks) == {2}
    # On the new clock the car is stopped again, long enough: raised again, not held back by an hour's cool-down.
    assert [(a.kind, a.state) for o in outs[1:] for a in o.alerts] == [("stopped_vehicle", "raised")]
    assert all(e.dwell_s is None or e.dwell_s >= 0 for o in outs for e in o.zone_events)
    # A step back within the tracker's gap limit (2 s: it keeps the tracks and their ids) closes nothing: closed
    # at 1.5 s, the car left the zone and entered it again under the same id, and its alert was raised again.
    entries = actor.tracks[2].zones["lane1"].entered_at
    for n, step_back in enumerate([0.5, 1.5]):
        jitter = frame(last + 1000 + n, [box(2, 300, 166)]).model_copy(update={"captured_at": back[-1].captured_at - step_back})
        out = actor.update(jitter, config(zones=[LANE]))
        assert out.alerts == [] and out.zone_events == [] and set(actor.tracks) == {2}
    assert actor.tracks[2].zones["lane1"].inside and actor.tracks[2].zones["lane1"].entered_at == entries


def test_a_file_run_that_starts_before_the_last_ones_scene_time_is_closed_saying_so():
    """A file's scene clock starts when it is opened, and `run` reads it faster than real time: the same camera
    run again soon after starts behind where the last run ended. Closed as for a clock set back, but not blamed
    on a clock."""
    wrong = [[box(7, 320, 340 - 4 * i)] for i in range(70)]
    actor = CameraAnalytics("cam", rules=AnalyticsSettings())
    outs = [actor.update(frame(i, objs).model_copy(update={"scene_time": 2000 + i / FPS}), config(zones=[LANE]))
            for i, objs in enumerate(wrong)]
    assert alerts(outs) == [("wrong_way", "raised")]
    again = frame(70, [box(9, 320, 340)]).model_copy(update={"scene_time": 2000 + 69 / FPS - 40})
    out = actor.update(again, config(zones=[LANE]))
    assert [a.message.split(":")[0] for a in out.alerts] == ["cleared (a new run started 40.0 s before the last one's scene time)"]


def test_a_live_cameras_clock_set_forward_closes_it_saying_so_not_as_a_silence():
    """A camera clock set an hour forward: its alert cleared "(no frames for 3600 s)" on a camera that never
    stopped sending (a time trial). Live frames tracked 0.1 s apart say it was the clock."""
    wrong = [[box(7, 320, 340 - 4 * i)] for i in range(70)]
    for tracked_apart, why in [(0.1, "the camera's clock went forward 3600 s (its frames came 0.1 s apart)"),
                               (3600.0, "no frames for 3600 s")]:
        actor = CameraAnalytics("cam", rules=AnalyticsSettings())
        outs = [actor.update(frame(i, objs).model_copy(update={"tracked_at": frame(i, []).captured_at + 0.2}), config(zones=[LANE]))
                for i, objs in enumerate(wrong)]
        assert alerts(outs) == [("wrong_way", "raised")]
        last = frame(69, [])
        jumped = frame(70, [box(7, 320, 60)]).model_copy(update={"captured_at": last.captured_at + 3600,
                                                                  "tracked_at": last.captured_at + 0.2 + tracked_apart})
        out = actor.update(jumped, config(zones=[LANE]))
        assert [a.message.split(":")[0] for a in out.alerts] == [f"cleared ({why})"]


def test_an_alert_cleared_by_a_close_cools_down_too_and_the_cool_down_is_forgotten_once_over():
    wrong = [[box(7, 320, 340 - 4 * i)] for i in range(70)]
    actor, outs = play(wrong, config(zones=[LANE]))
    assert alerts(outs) == [("wrong_way", "raised")]
    closed_at = frame(69, []).at + 1.0
    assert [a.state for a in actor.close(Moment("cam", 69, captured_at=closed_at, scene_time=None), "gone").alerts] == ["cleared"]
    # The same vehicle back the wrong way within the cool-down: not raised again.
    _, back = play(wrong, config(zones=[LANE]), actor=actor, start=70)
    assert alerts(back) == [] and actor.alert_book.quiet_until
    # Once it is over, nothing of it is kept (one a camera's every alert would otherwise leave behind).
    later = frame(140, []).model_copy(update={"captured_at": closed_at + actor.rules.cooldown_s + 1})
    actor.update(later, config(zones=[LANE]))
    assert actor.alert_book.quiet_until == {}


def test_an_alert_clears_the_grace_after_its_vehicle_was_last_seen_not_on_what_was_known_of_it_then():
    """Only the tracks in a frame can hold a condition: a stopped car hidden behind a lorry is not judged on
    its last speed and place, which would hold its alert until the track left its zones (a second later)."""
    stopped = [[box(1, 300, 50 + 4 * i)] for i in range(30)] + [[box(1, 300, 166)]] * int(12 * FPS)
    _, outs = play(stopped + [[]] * int(6 * FPS), config(zones=[LANE]))
    assert alerts(outs) == [("stopped_vehicle", "raised"), ("stopped_vehicle", "cleared")]
    raised, cleared = [a for o in outs for a in o.alerts]
    last_seen = frame(len(stopped) - 1, []).at
    assert cleared.captured_at - last_seen == pytest.approx(AnalyticsSettings().clear_after_s + 1 / FPS, abs=0.01)
    # Its figures are those of its last frame, not of the moment it was raised.
    assert cleared.details["stopped_s"] > raised.details["stopped_s"]


def test_an_incident_that_returns_during_the_cool_down_is_not_raised_again():
    wrong = [[box(7, 320, 340 - 4 * i)] for i in range(70)]
    pause = [[]] * int(5 * FPS)  # cleared after 3 s, cool-down 60 s
    wrong_again = [[box(7, 320, 340 - 4 * i)] for i in range(70)]
    _, outs = play(wrong + pause + wrong_again + pause, config(zones=[LANE]))
    assert alerts(outs) == [("wrong_way", "raised"), ("wrong_way", "cleared")]


def test_state_round_trip_mid_incident_gives_the_same_events():
    from its_faust.codecs import decode, encode
    from tables.camera_analytics import AnalyticsState

    frames = [[box(1, 300, 50 + 4 * i)] for i in range(30)] + [[box(1, 300, 166)]] * int(14 * FPS) + [[]] * int(5 * FPS)
    cfg = config(zones=[LANE])
    _, whole = play(frames, cfg)
    cut = 300
    actor, first = play(frames[:cut], cfg)
    restored = CameraAnalytics("cam", decode(AnalyticsState, encode(actor.state())), AnalyticsSettings())
    _, rest = play(frames[cut:], cfg, actor=restored, start=cut)
    assert alerts(first + rest) == alerts(whole) == [("stopped_vehicle", "raised"), ("stopped_vehicle", "cleared")]
    assert [o.alerts for o in first + rest] == [o.alerts for o in whole]


def test_a_track_back_in_view_must_be_inside_for_a_few_frames_to_re_enter():
    frames = [[box(1, 300, 200)]] * 15 + [[]] * 40 + [[box(1, 300, 200)], [box(1, 300, 400)], [box(1, 300, 200)]]
    _, outs = play(frames, config(zones=[ZONE]))
    assert [e.kind for o in outs for e in o.zone_events] == ["enter", "exit"]
    # Lost as it was on its way out (two frames outside of the three that confirm an exit): the frames it had
    # outside do not count towards entering again once it is back.
    leaving = [[box(1, 300, 200)]] * 15 + [[box(1, 300, 400)]] * 2 + [[]] * 40 + [[box(1, 300, 200)]]
    _, outs = play(leaving, config(zones=[ZONE]))
    assert [e.kind for o in outs for e in o.zone_events] == ["enter", "exit"]


def test_one_fast_frame_does_not_restart_the_stopped_clock():
    still = [[box(1, 300, 166)]] * int(6 * FPS)
    jolt = [[box(1, 300, 176)], [box(1, 300, 166)]]  # the box jumps 10 px for a frame
    _, outs = play([[box(1, 300, 50 + 4 * i)] for i in range(30)] + still + jolt + still, config(zones=[LANE]))
    raised = [a for o in outs for a in o.alerts if a.state == "raised"]
    assert len(raised) == 1 and raised[0].captured_at - raised[0].started_at == pytest.approx(10, abs=0.2)


def test_an_unconfigured_camera_is_idle_but_not_while_an_alert_waits_to_clear():
    fresh = CameraAnalytics("cam", rules=AnalyticsSettings())
    assert fresh.idle_under(None) and fresh.idle_under(config())
    assert not fresh.idle_under(config(zones=[LANE]))
    assert fresh.idle_under(config(calibration=CALIBRATION))  # a calibration alone gives nothing to emit
    assert not fresh.idle_under(config(calibration=CALIBRATION, limit=50))
    # A wrong-way alert is up when the zone is removed: the actor must keep going until it clears.
    actor, outs = play([[box(7, 320, 340 - 4 * i)] for i in range(70)], config(zones=[LANE]))
    assert alerts(outs) == [("wrong_way", "raised")]
    assert not actor.idle_under(None)
    _, later = play([[]] * int(6 * FPS), None, actor=actor, start=70)
    assert alerts(later) == [("wrong_way", "cleared")] and actor.idle_under(None)
    # It says why: its zone went (it had said "no longer against its heading", as if the car had turned round).
    assert [a.message for o in later for a in o.alerts] == [
        "cleared (its zone was removed): car 7 driving the wrong way in lane1"]


def test_lines_and_zones_removed_keep_the_camera_busy_until_their_memory_is_dropped():
    """Their memory goes at the next frame (``_sync_geometry``): an actor judged idle before that kept it for good."""
    actor, _ = play([[box(1, 300, 200)]] * 20, config(zones=[ZONE]))
    assert actor.geometry and not actor.idle_under(config())
    actor.update(frame(20, [box(1, 300, 200)]), config())
    assert actor.geometry == {} and actor.idle_under(config())


def test_a_time_lapse_cameras_tracks_stay_in_their_zones_between_its_frames():
    """With frames 4 s apart, a track missed in one frame was gone from its zone (unseen over zone_lost_s, 1 s).
    Once the camera's pace is known, one and a half of its intervals is the measure."""
    actor = CameraAnalytics("cam", rules=AnalyticsSettings())
    events = []
    for seq in range(20):
        record = TrackRecord(camera_id="cam", seq=seq, captured_at=1000 + 4.0 * seq, width=640, height=360,
                             detected_at=0, tracked_at=0, tracker_frame=seq + 1, model="m", detections=1, worker="w",
                             objects=[box(1, 250, 200)] if seq % 5 else [])  # missed now and then
        events += [(seq, e.kind) for e in actor.update(record, config(zones=[ZONE])).zone_events]
    assert actor.zone_lost_s() == pytest.approx(6.0)
    # Its misses are single frames: not gone, just not seen once. It enters once seen long enough (with the fixed
    # 1 s, every miss sent it out and started its count of sightings again: it never entered).
    assert [kind for _, kind in events] == ["enter"], events


@pytest.mark.parametrize("step_s", [2.0, 4.0, 40.0])
def test_a_slow_camera_has_speeds_alerts_and_is_not_closed_between_its_frames(step_s):
    """At 0.5 fps or slower a 1 s speed window never held the 4 positions a fit needs: no speeds, and so no
    stopped-vehicle alert for a car parked two minutes in a lane; a camera sending every 40 s was closed at every
    frame (silent over camera_silent_s, 30 s), its car leaving its zone and entering again (a trial of slow cameras)."""
    actor, events, raised = CameraAnalytics("cam", rules=AnalyticsSettings()), [], []
    for seq in range(max(int(600 / step_s), 30)):  # (a zone takes 10 sightings, 3 of them inside)
        t = seq * step_s
        y = min(50 + 60 * t, 166)  # drives down the lane, then stands from about 2 s on
        record = TrackRecord(camera_id="cam", seq=seq, captured_at=1000 + t, width=640, height=360, detected_at=0,
                             tracked_at=0, tracker_frame=seq + 1, model="m", detections=1, worker="w", objects=[box(1, 300, y)])
        out = actor.update(record, config(zones=[LANE]))
        events += [(seq, e.kind) for e in out.zone_events]
        raised += [(seq, a.kind) for a in out.alerts if a.state == "raised"]
    assert actor.silent_s() == pytest.approx(max(30.0, 3 * step_s))
    assert [kind for _, kind in raised] == ["stopped_vehicle"], raised
    assert [kind for _, kind in events] == ["enter"], events  # in once, never out while it stands there


def test_a_slow_cameras_parked_car_keeps_one_alert_through_missed_frames_and_uneven_steps():
    """At a frame every 40 s, a miss (or a window a sample short) lapsed the stopped condition and the 3 s clear
    cleared the alert at once: cleared and raised again anew (a review: 5 runs in 6)."""
    import random

    for run in range(6):
        rng = random.Random(run)
        actor, kinds, t = CameraAnalytics("cam", rules=AnalyticsSettings()), [], 0.0
        for seq in range(60):
            t += 40.0 * rng.uniform(0.95, 1.05)
            seen = [] if seq in (20, 30, 40) else [box(1, 300, 166)]
            record = TrackRecord(camera_id="cam", seq=seq, captured_at=1000 + t, width=640, height=360, detected_at=0,
                                 tracked_at=0, tracker_frame=seq + 1, model="m", detections=len(seen), worker="w",
                                 objects=seen)
            kinds += [(a.kind, a.state) for a in actor.update(record, config(zones=[LANE])).alerts]
        assert kinds == [("stopped_vehicle", "raised")], (run, kinds)


def test_an_unconfigured_slow_camera_has_its_pace_known_when_it_is_configured():
    """Its frames were skipped as idle, so the actor learned no pace while the tracker did: once configured, the
    camera was closed at its every frame (silent over 30 s) until it had learned it again (a review)."""
    actor = CameraAnalytics("cam", rules=AnalyticsSettings())
    for seq in range(6):
        record = TrackRecord(camera_id="cam", seq=seq, captured_at=1000 + 40.0 * seq, width=640, height=360,
                             detected_at=0, tracked_at=0, tracker_frame=seq + 1, model="m", detections=1, worker="w",
                             objects=[box(1, 300, 166)])
        assert actor.idle_under(None)
        actor.idle_frame(record)
    assert actor.silent_s() == 120.0 and actor.last_seq == 5


def test_people_raise_no_vehicle_incident_and_are_no_part_of_a_queue():
    """A pedestrian waiting in a lane, and a rider's own box over a scooter, raised stopped-vehicle alerts (an
    alert-quality trial at the intersection clip); a person walking against a lane's heading is no wrong-way driver."""
    waiting = [[box(1, 300, 166, label="person", cls=0)]] * int(14 * FPS)
    walking = [[box(2, 320, 340 - 4 * i, label="person", cls=0)] for i in range(70)]
    _, outs = play(waiting + walking, config(zones=[LANE]))
    assert alerts(outs) == []
    # Four cars and a crowd standing in an area: no queue, as four cars alone are none.
    area = Zone(name="approach", points=[(0, 100), (640, 100), (640, 300), (0, 300)])
    crowd = [[*(box(t, 100 + 90 * t, 200) for t in range(1, 4)),
              *(box(t, 100 + 20 * t, 250, label="person", cls=0) for t in range(4, 9))]] * int(25 * FPS)
    _, outs = play(crowd, config(zones=[area]))
    assert alerts(outs) == []
    _, outs = play([[*frame, box(9, 600, 200)] for frame in crowd], config(zones=[area]))  # a fourth car: a queue
    assert alerts(outs) == [("congestion", "raised")]
