"""Line counting: once per track and line, with direction and class, robust to jitter, loss and redelivery."""

from __future__ import annotations

import pytest

from its_faust.codecs import decode, encode
from its_faust.settings import AnalyticsSettings
from schemas.analytics import Crossing
from schemas.control import CameraConfig
from schemas.geometry import CountingLine
from schemas.tracks import TrackedObject, TrackRecord
from tables.camera_analytics import AnalyticsState, CameraAnalytics
from tables.count_tables import once

# Horizontal line drawn left to right: moving down the frame is "in".
LINE = CountingLine(name="stop", x1=100, y1=200, x2=500, y2=200)
# The tests of a line's geometry follow tracks of a few frames: they count from a track's first frame.
EVERY_TRACK = AnalyticsSettings(line_min_track_frames=1)


def config(*lines, count="both"):
    return CameraConfig(camera_id="cam", version=1, last_command_id="c", updated_at=0,
                        lines=[line.model_copy(update={"count": count}) for line in lines])


def obj(track_id, cx, cy, label="car", cls=2):
    return TrackedObject(track_id=track_id, x1=cx - 20, y1=cy - 10, x2=cx + 20, y2=cy + 10, conf=0.9, cls=cls, label=label)


def frame(seq, *objects):
    return TrackRecord(camera_id="cam", seq=seq, captured_at=seq / 30, width=640, height=360, detected_at=0,
                       tracked_at=0, tracker_frame=seq + 1, model="m", detections=len(objects), worker="w",
                       objects=list(objects))


def run(path_by_frame, cfg=None, actor=None):
    """``path_by_frame``: one list of objects per frame (None = the track is not seen)."""
    actor = actor or CameraAnalytics("cam", rules=EVERY_TRACK)
    out = []
    for seq, objects in enumerate(path_by_frame):
        out += actor.update(frame(seq, *[o for o in objects if o is not None]), cfg or config(LINE)).crossings
    return out, actor


def test_a_track_crossing_down_counts_once_as_in_and_up_as_out():
    down, _ = run([[obj(1, 300, y)] for y in range(150, 260, 10)])
    up, _ = run([[obj(2, 300, y)] for y in range(260, 150, -10)])
    assert [(c.direction, c.track_id, c.line, c.label) for c in down] == [("in", 1, "stop", "car")]
    assert [c.direction for c in up] == ["out"]


def test_jitter_on_the_line_counts_once():
    # Approaches, then wobbles +-1.5 px around the line (inside the dead band) and
    # back and forth across it, then leaves downwards: one crossing.
    ys = [150, 170, 190, 198.5, 201.5, 198.5, 201.5, 199, 205, 195, 206, 230, 260]
    crossings, _ = run([[obj(1, 300, y)] for y in ys])
    assert [c.direction for c in crossings] == ["in"]


def test_a_track_lost_on_the_line_and_found_beyond_it_still_counts():
    path = [[obj(1, 300, y)] for y in (150, 170, 190)] + [[None]] * 8 + [[obj(1, 300, 240)]]
    crossings, _ = run(path)
    assert [(c.direction, c.seq) for c in crossings] == [("in", 11)]


def test_crossing_the_lines_extension_outside_the_segment_does_not_count():
    crossings, _ = run([[obj(1, 600, y)] for y in range(150, 260, 10)])  # x=600: right of the segment's end
    assert crossings == []


def test_counting_one_direction_only():
    paths = [[obj(1, 200, y), obj(2, 400, 400 - y)] for y in range(150, 260, 10)]
    crossings, _ = run(paths, config(LINE, count="in"))
    assert [(c.direction, c.track_id) for c in crossings] == [("in", 1)]


def test_class_is_the_tracks_most_frequent_label():
    labels = ["truck", "car", "car", "car", "truck", "car", "car", "car", "car", "car", "car"]
    path = [[obj(1, 300, y, label=lab, cls=2 if lab == "car" else 7)] for y, lab in zip(range(150, 260, 10), labels)]
    (crossing,) = run(path)[0]
    assert (crossing.label, crossing.cls) == ("car", 2)


def test_memory_round_trips_and_a_restored_actor_continues_identically():
    path = [[obj(1, 300, y), obj(2, 200, 400 - y)] for y in range(150, 260, 10)]
    whole, _ = run(path)
    first, actor = run(path[:5])
    restored = CameraAnalytics("cam", decode(AnalyticsState, encode(actor.state())), rules=EVERY_TRACK)
    assert restored.state() == actor.state()
    rest = []
    for seq in range(5, len(path)):
        rest += restored.update(frame(seq, *path[seq]), config(LINE)).crossings
    assert first + rest == whole and len(whole) == 2


def test_no_configuration_or_removed_camera_counts_nothing_and_does_not_fail():
    actor = CameraAnalytics("cam", rules=EVERY_TRACK)
    removed = config(LINE).model_copy(update={"removed": True, "lines": []})
    assert actor.update(frame(0, obj(1, 300, 150)), None).crossings == []
    assert actor.update(frame(1, obj(1, 300, 250)), removed).crossings == []


def test_forgotten_tracks_are_dropped_from_memory():
    actor = CameraAnalytics("cam", rules=EVERY_TRACK)
    actor.update(frame(0, obj(1, 300, 150)), config(LINE))
    actor.update(frame(30 * 11, obj(2, 300, 150)), config(LINE))  # 11 s later
    assert set(actor.tracks) == {2}


def test_count_tables_apply_each_crossing_once_in_order():
    def crossing(seq, track_id):
        return Crossing(camera_id="cam", seq=seq, captured_at=seq / 30, line="stop", direction="in",
                        track_id=track_id, label="car", cls=2)

    value, counted = {}, []
    for c in [crossing(10, 3), crossing(10, 5), crossing(10, 5), crossing(10, 3), crossing(12, 1), crossing(11, 9)]:
        new = once(value, c.seq, f"t{c.track_id}")
        if new is not None:
            value = new
            counted.append((c.seq, c.track_id))
    assert counted == [(10, 3), (10, 5), (12, 1)] and value == {"seq": 12, "done": ["t1"]}


def test_a_window_table_counts_each_crossing_once_and_keeps_only_the_two_windows_added_to_last():
    """Faust's windowed tables kept a key per window for ever (their expiry missed the changelog); a key now
    holds one watermark and two windows. A redelivery is caught whichever window it falls in, and a scene
    clock that went back counts on in the older window."""
    from collections import defaultdict

    from tables.count_tables import _apply_in_window

    table = defaultdict(dict)
    key = "cam|stop@1|in|car"

    def count(at: float, seq: int, track_id: int) -> tuple[float, int | None]:
        start, value, _ = _apply_in_window(table, 60.0, key, at, seq, f"t{track_id}", lambda v: {**v, "n": v.get("n", 0) + 1})
        return start, None if value is None else value["n"]

    assert [count(10.0, 1, 1), count(20.0, 2, 2), count(50.0, 3, 3)] == [(0.0, 1), (0.0, 2), (0.0, 3)]
    assert count(70.0, 4, 4) == (60.0, 1)
    assert count(50.0, 3, 3) == (0.0, 3)  # redelivered into the window before: counted already
    assert count(130.0, 5, 5) == (120.0, 1) and sorted(table[key]["windows"]) == ["120", "60"]
    assert [count(10.0, 1, 1), count(50.0, 3, 3)] == [(0.0, None), (0.0, None)]  # redelivered: not counted again
    assert sorted(table[key]["windows"]) == ["120", "60"]
    # The camera restarted with its scene clock behind: later seqs in an older window count there, from 0.
    assert [count(15.0, 9, 9), count(16.0, 10, 10)] == [(0.0, 1), (0.0, 2)]
    assert list(table[key]["windows"]) == ["120", "0"]
    for minute in range(3, 1000):
        count(minute * 60.0 + 1, 10 + minute, minute)
    assert sorted(table[key]["windows"]) == ["59880", "59940"]


def test_records_sent_again_for_redelivered_events_are_the_records_sent_before(monkeypatch):
    """After a crash the count and zone-stats agents read events again that their tables had taken; each sent its
    record again with the figures as they were by then, under its own seq: a zone's stats at one seq said 5 exits
    the second time, 3 the first."""
    from collections import defaultdict

    from schemas.analytics import ZoneEvent
    from tables import count_tables

    for name in ("line_minute", "line_quarter", "line_total", "zone_minute", "zone_quarter", "zone_total"):
        monkeypatch.setattr(count_tables, name, defaultdict(dict))

    def crossing(seq, track_id):
        return Crossing(camera_id="cam", seq=seq, captured_at=1000 + seq, line="stop", direction="in",
                        track_id=track_id, label="car", cls=2)

    def zone_event(seq, kind, track_id):
        return ZoneEvent(camera_id="cam", seq=seq, captured_at=1000 + seq, zone="box", kind=kind, track_id=track_id,
                         label="car", occupancy=1 if kind == "enter" else 0, dwell_s=None if kind == "enter" else 2.0)

    # Seqs 30 and 50 in the minute from 1020 (scene seconds), 90 and 91 in the next; one frame has two crossings.
    crossings = [crossing(30, 1), crossing(50, 2), crossing(50, 3), crossing(90, 4), crossing(91, 5)]
    first = [count_tables.count_crossing(c) for c in crossings]
    assert [(u.total, u.minute.start, u.minute.count) for u in first] == [
        (1, 1020, 1), (2, 1020, 2), (3, 1020, 3), (4, 1080, 1), (5, 1080, 2)]
    again = [count_tables.count_crossing(c) for c in crossings]  # read again after a crash, in order
    # Each minute's last crossing sends its record again, word for word: the minute from 1020 ends at 3, though
    # the key has gone on to the next; those its minute took more after send nothing.
    assert again == [None, None, first[2], None, first[4]]
    # A crash that kept the total's and the quarter's writes of the last two and lost the minute's: the first of
    # them again sends nothing (its figures would mix 2 in the minute with 3 in all), the last its own record.
    import copy

    minute_before = copy.deepcopy(dict(count_tables.line_minute))
    more = [crossing(100, 6), crossing(101, 7), crossing(102, 8)]
    sent = [count_tables.count_crossing(c) for c in more]
    count_tables.line_minute.clear()
    count_tables.line_minute.update(copy.deepcopy(minute_before))
    count_tables.count_crossing(more[0])  # (the minute's own, its last before the crash: taken again)
    assert [count_tables.count_crossing(c) for c in more[1:]] == [None, sent[2]]
    events = [zone_event(1, "enter", 7), zone_event(4, "exit", 7), zone_event(5, "enter", 8)]
    stats = [count_tables.zone_stats(e) for e in events]
    assert [count_tables.zone_stats(e) for e in events] == [None, None, stats[2]]
    assert (stats[1].entries, stats[1].exits, stats[2].entries, stats[2].exits) == (1, 1, 2, 1)


def test_a_line_redefined_under_the_same_name_starts_afresh():
    actor = CameraAnalytics("cam", rules=EVERY_TRACK)
    moved = LINE.model_copy(update={"y1": 300, "y2": 300})
    crossings = []
    for seq, y in enumerate(range(150, 360, 10)):
        line = LINE if y < 260 else moved  # the operator moves the line after the car crossed it once
        crossings += actor.update(frame(seq, obj(1, 300, y)), config(line)).crossings
    assert [(c.direction, c.seq) for c in crossings] == [("in", 6), ("in", 16)]


def test_a_crossing_against_a_one_way_line_does_not_use_up_the_count():
    # Backs up over an in-only line, then drives over it: counted once, as in.
    ys = list(range(250, 150, -10)) + list(range(150, 260, 10))
    crossings, _ = run([[obj(1, 300, y)] for y in ys], config(LINE, count="in"))
    assert [c.direction for c in crossings] == ["in"]


def test_a_box_wobbling_back_over_a_one_way_line_after_crossing_it_the_other_way_is_not_counted():
    """A car driving out over an in-only line, its box's centre 3 px past the line and then back 3 px: counted in."""
    ys = [230, 222, 214, 206, 197, 203, 190, 180, 170]
    wobbling, _ = run([[obj(1, 300, y)] for y in ys], config(LINE, count="in"))
    assert wobbling == []
    # Clearly past (a quarter of the box across the line: 5 px here), then driving in: counted, as before.
    backed = [230, 210, 190, 180, 190, 210, 230]
    assert [c.direction for c in run([[obj(2, 300, y)] for y in backed], config(LINE, count="in"))[0]] == ["in"]
    # A line counting both ways confirms each crossing at the dead band, as before.
    assert [c.direction for c in run([[obj(3, 300, y)] for y in ys])[0]] == ["out"]


def test_a_young_tracks_crossing_counts_once_it_has_been_seen_long_enough_and_a_short_track_never():
    """A truck's trailer tracked on its own for 9 frames crossed the line on the dual-carriageway clip: counted
    twice. A crossing counts once its track has been seen in ``line_min_track_frames`` frames, on that frame."""
    rules = AnalyticsSettings(line_min_track_frames=10)
    # Crosses on its 4th frame (seq 3) and is seen 6 more: the track's 10th frame is seq 9.
    short = [[obj(1, 300, y)] for y in (170, 180, 190, 210, 220, 230, 240, 250, 260)]
    crossings, actor = run(short, actor=CameraAnalytics("cam", rules=rules))
    assert crossings == []
    crossings, _ = run(short + [[obj(1, 300, 270)]], actor=CameraAnalytics("cam", rules=rules))
    assert [(c.direction, c.seq, c.track_id) for c in crossings] == [("in", 9, 1)]
    # Lost for a few frames and found again, it still confirms, once; the count is not made twice.
    gapped = short[:5] + [[None]] * 3 + short[5:] + [[obj(1, 300, y)] for y in (270, 280, 290)]
    assert [(c.direction, c.seq) for c in run(gapped, actor=CameraAnalytics("cam", rules=rules))[0]] == [("in", 12)]
    # A track already old enough when it crosses counts on the crossing's frame, as before.
    old = [[obj(2, 300, y)] for y in range(100, 300, 10)]
    assert [c.seq for c in run(old, actor=CameraAnalytics("cam", rules=rules))[0]] == [11]  # y 210: past the dead band


def test_a_crossing_waiting_for_its_track_to_age_survives_a_move_to_another_worker():
    rules = AnalyticsSettings(line_min_track_frames=10)
    path = [[obj(1, 300, y)] for y in range(170, 270, 10)]
    first, actor = run(path[:5], actor=CameraAnalytics("cam", rules=rules))
    assert first == [] and actor.state().tracks[0].lines[0].pending == "in"
    restored = CameraAnalytics("cam", decode(AnalyticsState, encode(actor.state())), rules=rules)
    rest = []
    for seq, objects in enumerate(path[5:], start=5):
        rest += restored.update(frame(seq, *objects), config(LINE)).crossings
    assert [(c.direction, c.seq) for c in rest] == [("in", 9)]


def test_replay_tells_a_cameras_runs_apart_by_the_gaps_between_them():
    """Seqs start at the Unix time in ms, so a camera's runs follow each other in one seq order; a gap
    of over 30 s in capture time starts a new stretch, which `replay --latest` or --from-seq picks."""
    from its_faust.replay import _described, stretches

    first = [frame(seq) for seq in range(0, 90)]  # 3 s at 30 fps
    second = [frame(seq).model_copy(update={"seq": 5_000_000 + seq, "captured_at": 4_000 + seq / 30})
              for seq in range(0, 60)]
    parts = stretches(first + second)
    assert [len(p) for p in parts] == [90, 60]
    assert _described(parts[1]) == {"first_seq": 5_000_000, "last_seq": 5_000_059, "frames": 60,
                                    "started": "1970-01-01T01:06:40+00:00"}
    paused = first[:30] + [r.model_copy(update={"captured_at": r.captured_at + 29}) for r in first[30:]]
    assert len(stretches(paused)) == 1  # a camera off for under 30 s: one stretch
    assert stretches([]) == []
    # A camera sending a frame every 40 s, frames in a row: one stretch once its pace is known (it was cut into a
    # stretch a frame), and cut again at a silence of over three of its intervals.
    slow = [frame(seq).model_copy(update={"captured_at": 1000 + 40.0 * seq}) for seq in range(20)]
    slow += [frame(seq).model_copy(update={"captured_at": 1000 + 40.0 * seq + 600}) for seq in range(20, 30)]
    assert [len(p) for p in stretches(slow)] == [1, 1, 18, 10]  # (its first steps, before its pace is known)


def test_replay_tells_runs_apart_by_where_they_started_even_when_they_follow_closely():
    """Each run of ingest says its first seq (its ``started`` event): a run started 5 s after the last one
    ended is a stretch of its own; without those starts, only a gap of over 30 s cuts."""
    from its_faust.replay import stretches

    def run_of(started_s: float, frames: int, fps: float = 30.0):
        return [frame(0).model_copy(update={"seq": int(started_s * 1000) + i, "captured_at": started_s + 0.05 + i / fps})
                for i in range(frames)]

    first, second = run_of(1_000.0, 340), run_of(1_016.4, 340)  # the first ends at 1,011.4 s
    assert [len(p) for p in stretches(first + second, run_starts={1_000_000, 1_016_400})] == [340, 340]
    assert [len(p) for p in stretches(first + second)] == [680]  # a producer that does not say: by time alone
    # A start whose frames were never tracked (a run stopped at once) cuts nothing on its own.
    assert [len(p) for p in stretches(first + second, run_starts={1_000_000, 1_012_000, 1_016_400})] == [340, 340]


@pytest.mark.parametrize("ends", [(0, 200, 640, 200), (640, 200, 0, 200), (320, 0, 320, 360), (320, 360, 320, 0),
                                  (100, 50, 500, 350), (500, 350, 100, 50), (100, 350, 500, 50)])
def test_a_lines_travel_names_the_screen_direction_the_counter_counts_as_in_and_out(ends):
    """`run`'s summary says which way "in" moves: a vertical line drawn top to bottom counts leftward traffic
    as in, which was easy to get backwards."""
    line = CountingLine(name="l", x1=ends[0], y1=ends[1], x2=ends[2], y2=ends[3])
    step = {"right": (1, 0), "down-right": (1, 1), "down": (0, 1), "down-left": (-1, 1), "left": (-1, 0),
            "up-left": (-1, -1), "up": (0, -1), "up-right": (1, -1)}
    middle = ((ends[0] + ends[2]) / 2, (ends[1] + ends[3]) / 2)
    for direction, way in line.travel().items():
        dx, dy = step[way]
        path = [[obj(1, middle[0] + dx * d, middle[1] + dy * d)] for d in range(-60, 61, 10)]
        crossed, _ = run(path, config(line))
        assert [c.direction for c in crossed] == [direction], (ends, direction, way)


def test_line_speeds_give_each_direction_its_vehicles_mean_and_85th_percentile():
    from its_faust.results import line_speeds

    def crossing(line, direction, kmh):
        return Crossing(camera_id="cam", seq=1, captured_at=0, line=line, direction=direction, track_id=1, label="car",
                        cls=2, speed_kmh=kmh)

    speeds = line_speeds([crossing("a", "in", 40), crossing("a", "in", 60), crossing("a", "out", None),
                          crossing("b", "out", 50)] + [crossing("a", "in", 50)] * 2)
    assert speeds == {"a": {"in": {"n": 4, "mean_kmh": 50.0, "p85_kmh": 55.5}}, "b": {"out": {"n": 1, "mean_kmh": 50.0, "p85_kmh": 50.0}}}
    assert line_speeds([crossing("a", "in", None)]) == {}  # uncalibrated: no figures, not zeros
