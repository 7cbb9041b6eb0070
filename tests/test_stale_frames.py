"""Which frames are shed as stale, and the reports that say so (the rule itself; the agent is in integration)."""

from __future__ import annotations

from its_faust.stale_frames import StaleFrames
from schemas import CameraEventKind, FrameRecord

NOW = 1_800_000_000.0


def frame(seq: int, age_s: float, camera: str = "cam-1", scene_time: float | None = None, now: float = NOW) -> FrameRecord:
    return FrameRecord(camera_id=camera, seq=seq, captured_at=now - age_s, scene_time=scene_time, width=4, height=4, jpeg=b"x")


def test_only_live_frames_over_the_limit_are_stale():
    stale = StaleFrames(max_age_s=3.0)
    assert stale.to_shed(frame(1, 3.5), NOW) == "stale"
    assert stale.to_shed(frame(2, 2.5), NOW) is None
    assert stale.to_shed(frame(3, 60.0, scene_time=12.0), NOW) is None  # a file's frame: files are processed whole
    assert StaleFrames(max_age_s=0).to_shed(frame(4, 600.0), NOW) is None  # 0 = never shed


def test_reports_add_up_to_every_frame_shed_at_most_one_per_period():
    stale = StaleFrames(max_age_s=3.0, report_every_s=10.0)
    first = stale.shed(frame(1, 5.0), NOW)
    assert first.kind == CameraEventKind.frames_shed and first.frames_shed == 1 and first.seq == 1
    assert "5.0 s old" in first.reason and "3 s limit" in first.reason
    assert [stale.shed(frame(s, 4.0), NOW + s / 10) for s in range(2, 6)] == [None] * 4  # within the period
    periodic = stale.shed(frame(6, 4.0), NOW + 10.0)
    assert periodic.frames_shed == 5 and periodic.seq == 6
    assert stale.shed(frame(7, 4.0), NOW + 11.0) is None
    assert stale.fresh(frame(8, 0.1), NOW + 12.0) is None  # fresh again, but the period has not passed
    last = stale.fresh(frame(9, 0.1), NOW + 21.0)  # none shed for a whole period, and the period passed
    assert last.frames_shed == 1 and last.seq == 7 and "fresh again" in last.reason
    assert first.frames_shed + periodic.frames_shed + last.frames_shed == 7  # every frame shed (seqs 1-7)
    assert stale.fresh(frame(10, 0.1), NOW + 31.0) is None  # nothing left to report
    again = stale.shed(frame(11, 9.0), NOW + 32.0)
    assert again is not None and again.frames_shed == 1  # a new burst is reported at once


def test_a_camera_hovering_at_the_limit_is_reported_once_per_period():
    stale = StaleFrames(max_age_s=3.0, report_every_s=10.0)
    reports = []
    for i in range(200):  # 20 s of frames alternating just over and just under the limit
        now = NOW + i / 10
        f = frame(i, 3.1 if i % 2 else 2.9, now=now)
        reports.append(stale.shed(f, now) if stale.to_shed(f, now) else stale.fresh(f, now))
    sent = [r for r in reports if r is not None]
    assert len(sent) == 2  # at 0.1 s (the first) and 10.1 s: not one per switch
    assert [r.frames_shed for r in sent] == [1, 50]  # of 100 shed: 49 still to report
    assert sum(e.frames_shed for e in stale.overdue(NOW + 40.0)) == 49


def test_a_camera_still_shedding_now_and_then_is_not_called_fresh_again_between_its_reports():
    """The report a detected frame brings while frames are still being shed is a periodic one: frames are fresh
    again only after a whole period without a shed one (it said "fresh again" every 10 s, then shed again at once)."""
    stale = StaleFrames(max_age_s=3.0, report_every_s=10.0)
    assert stale.shed(frame(1, 3.5), NOW) is not None
    assert stale.shed(frame(2, 3.5), NOW + 5.0) is None
    assert stale.fresh(frame(3, 1.0), NOW + 10.5) is None  # one was shed 5.5 s ago: not fresh for a period yet
    periodic = stale.shed(frame(4, 3.5), NOW + 11.0)
    assert periodic.frames_shed == 2 and "fresh again" not in periodic.reason
    fresh_frames = [stale.fresh(frame(5 + i, 1.0), NOW + 11.04 + i * 0.04) for i in range(300)]  # 12 s at 25 fps
    last = [e for e in fresh_frames if e is not None]
    assert len(last) == 1 and last[0].frames_shed == 0, last
    assert last[0].reason == "frames are fresh again: none shed for 10 s"


def test_cameras_are_reported_apart():
    stale = StaleFrames(max_age_s=1.0)
    assert stale.shed(frame(1, 2.0, camera="a"), NOW).camera_id == "a"
    assert stale.shed(frame(1, 2.0, camera="b"), NOW).camera_id == "b"
    assert stale.fresh(frame(2, 0.0, camera="a"), NOW + 11).frames_shed == 0  # a's one frame was reported already
    assert stale.shed(frame(2, 2.0, camera="b"), NOW) is None
    assert stale.fresh(frame(3, 0.0, camera="b"), NOW + 11).frames_shed == 1


def test_what_is_left_of_a_camera_that_stopped_is_reported_once_a_period_passed_dated_by_its_last_shed_frame():
    """A camera whose frames stop while being shed sends no frame to bring the last report: the timer's look does."""
    stale = StaleFrames(max_age_s=3.0, report_every_s=10.0)
    assert stale.shed(frame(1, 5.0), NOW) is not None  # the first at once
    for s in range(2, 41):
        assert stale.shed(frame(s, 5.0), NOW + s / 10) is None
    assert stale.overdue(NOW + 10.0) == []  # the last was shed 6 s ago
    stale.shed(frame(99, 5.0, camera="other"), NOW + 10.0)  # reported at once: nothing left
    [last] = stale.overdue(NOW + 14.5)
    assert last.camera_id == "cam-1" and last.frames_shed == 39 and last.seq == 40
    assert last.at == NOW + 4.0 and "none shed in the 10 s since" in last.reason  # the minute they were shed in
    assert stale.overdue(NOW + 60.0) == []
    assert stale._cameras == {}  # "other", all reported and silent for 3 periods since, is not held for ever either
    assert stale.shed(frame(41, 5.0), NOW + 61.0).frames_shed == 1  # a new burst is reported at once


def test_the_track_stage_sheds_live_detections_too_and_says_where():
    """Detect took every frame fresh enough, and tracking fell behind for ever on a machine whose cores could not
    keep up with both (119 s after 18 minutes of a soak run): tracking sheds what is older than its limit."""
    from its_faust.settings import TrackerSettings
    from schemas import Box, DetectionRecord, ModelInfo

    stale = StaleFrames(TrackerSettings().live_max_age_s, stage="track", behind="tracking is behind: cores")

    def detection(seq, age_s, scene_time=None):
        return DetectionRecord(camera_id="cam-1", seq=seq, captured_at=NOW - age_s, scene_time=scene_time, width=640,
                               height=360, detected_at=NOW, model=ModelInfo(name="m", version="1", backend="onnxruntime"),
                               inference_ms=1.0, batch_size=1, boxes=[Box(x1=0, y1=0, x2=1, y2=1, conf=0.9, cls=2, label="car")])
    assert stale.to_shed(detection(1, 5.0), NOW) is None  # within the 6 s: tracked
    assert stale.to_shed(detection(2, 7.0), NOW) == "stale"
    assert stale.to_shed(detection(3, 70.0, scene_time=NOW - 70.0), NOW) is None  # a file's: never
    report = stale.shed(detection(2, 7.0), NOW)
    assert report.frames_shed == 1 and "over the 6 s limit (tracking is behind: cores" in report.reason


def test_a_copy_of_a_frame_shed_already_is_not_counted_again():
    """A stalled worker's backlog came again in part: tracked and shed frames added up to more than were sent."""
    stale = StaleFrames(max_age_s=3.0, report_every_s=10.0)
    assert stale.shed(frame(1, 5.0), NOW).frames_shed == 1
    assert stale.shed(frame(2, 5.0), NOW + 1) is None
    assert stale.shed(frame(2, 6.0), NOW + 2) is None and stale.shed(frame(1, 7.0), NOW + 2) is None  # copies
    [last] = stale.overdue(NOW + 20)
    assert last.frames_shed == 1  # seq 2 alone since the first report


def test_a_live_camera_whose_frames_are_dated_ahead_is_told_its_clock_is_ahead_at_most_once_a_period():
    """From a time trial: a camera a day ahead was never shed, its latency read 0 and it counted into tomorrow's
    windows, with nothing to say why."""
    from its_faust.clock_ahead import ClockAhead

    clock = ClockAhead(tolerance_s=2.0, every_s=600.0)
    assert clock.check(frame(1, -1.5), NOW) is None  # within what NTP'd hosts' clocks differ by
    assert clock.check(frame(2, 3.0), NOW) is None  # an old frame: the shedding's concern
    assert clock.check(frame(3, -86_400.0, scene_time=12.0), NOW) is None  # a file's: read ahead on purpose
    first = clock.check(frame(4, -3600.0), NOW)
    assert first.kind == CameraEventKind.clock_ahead and first.camera_id == "cam-1" and first.seq == 4
    assert "3600.0 s ahead of this worker's clock" in first.reason and "none is shed" in first.reason
    assert [clock.check(frame(s, -3600.0), NOW + s) for s in range(5, 9)] == [None] * 4  # within the period
    assert clock.check(frame(9, -3600.0, camera="cam-2"), NOW + 9) is not None  # each camera its own
    later = clock.check(frame(10, -3600.0), NOW + 600.0)
    assert later is not None and later.seq == 10  # a period on: told again


def _detected_per_camera(fair: bool, cameras: int = 2, fps: float = 8.0, detect_s: float = 0.125, seconds: float = 120.0,
                         behind_s: tuple[float, ...] = ()):
    """A stage that takes ``detect_s`` a frame (shedding one, 0.5 ms), fed by ``cameras`` live cameras paced alike,
    each 10 ms after the one before, their frames queued in one partition in the order they came; starting 4 s
    behind. ``behind_s``: how far each camera's clock is behind the worker's. Returns the frames detected per
    camera."""
    from its_faust.fair_share import FairShare

    stale = StaleFrames(max_age_s=3.0, fair_share=FairShare() if fair else None)
    times = sorted((NOW + k / fps + c * 0.010, c) for k in range(int(seconds * fps)) for c in range(cameras))
    clock, detected = NOW + 4.0, [0] * cameras
    for n, (sent_at, c) in enumerate(times):
        captured_at = sent_at - (behind_s[c] if c < len(behind_s) else 0.0)  # as its clock dates it
        f = frame(n, 0.0, camera=f"cam-{c}", now=captured_at)
        clock = max(clock, sent_at)  # (a frame not sent yet is waited for)
        why = stale.to_shed(f, clock)
        if why is not None:
            stale.shed(f, clock, why)
            clock += 0.0005
        else:
            stale.fresh(f, clock)
            detected[c] += 1
            clock += detect_s
    return detected


def test_cameras_paced_alike_each_get_a_fair_share_of_detection_when_it_cannot_keep_up():
    """From a trial with 8 cameras at 8 fps on 2 cores: a detection taking as long as two frame periods found the same
    camera just under the age limit every time; one camera got 0.9 frames a second, another 4.2, on the same
    partition, and the starved camera's line counted nothing for 7 minutes."""
    for cameras, detect_s in [(2, 0.125), (3, 0.125), (3, 0.2), (2, 0.1)]:
        by_age_alone = _detected_per_camera(False, cameras, detect_s=detect_s)
        assert min(by_age_alone) < 0.35 * max(by_age_alone), by_age_alone  # the starving, as it was
        fair = _detected_per_camera(True, cameras, detect_s=detect_s)
        assert min(fair) > 0.85 * max(fair), fair
        assert sum(fair) >= 0.98 * sum(by_age_alone), (fair, by_age_alone)  # no detection lost to it


def test_a_camera_giving_way_to_cannot_help_holds_no_other_back():
    """A camera whose clock is further behind than the age limit has every frame go stale, and no giving way can
    help it: the other cameras (2 s behind themselves) gave way to it for ever, 24 frames of 480 detected in a
    minute with the stage idle (a review's simulation). Once it has gone HOPELESS_S with none detected, it holds
    no one back."""
    seconds, fps = 120.0, 8.0
    detected = _detected_per_camera(True, 3, fps, detect_s=0.01, seconds=seconds, behind_s=(4.0, 2.0, 2.0))
    assert detected[0] == 0
    assert min(detected[1:]) >= fps * (seconds - 20.0), detected  # all but the first seconds' (HOPELESS_S, 15 s)


def test_a_camera_that_gets_all_its_frames_holds_no_other_back_and_reports_say_what_gave_way():
    from its_faust.fair_share import FairShare

    share = FairShare()
    for n in range(20):
        share.detected("fast", NOW + n * 0.1)
    share.detected("slow", NOW)  # 1 fps, every frame detected: never deprived
    assert not share.gives_way("fast", NOW + 2.0)
    share.went_stale("slow", NOW + 2.0)  # now one of its frames went stale: the fast one gives way
    assert share.gives_way("fast", NOW + 2.0) and not share.gives_way("slow", NOW + 2.0)
    assert not share.gives_way("fast", NOW + 2.0 + 6.0)  # out of the window: forgotten
    for n in range(1000):  # never behind, never asked: what it holds stays within the window
        share.detected("steady", NOW + 10 + n * 0.04)
    assert len(share._detected["steady"]) <= 5.0 / 0.04 + 1
    stale = StaleFrames(max_age_s=3.0, fair_share=share)
    share.went_stale("slow", NOW + 9.0)
    for n in range(5):
        share.detected("fast", NOW + 8.5 + n * 0.1)
    assert stale.to_shed(frame(1, 1.0, camera="fast", now=NOW + 9.0), NOW + 9.0) is None  # young enough: detected
    assert stale.to_shed(frame(2, 2.0, camera="fast", now=NOW + 9.0), NOW + 9.0) == "gives way"
    report = stale.shed(frame(2, 2.0, camera="fast", now=NOW + 9.0), NOW + 9.0, "gives way")
    assert report.reason.startswith("1 live frame(s) shed, up to 2.0 s old, 1 over 1.5 s old, given way to cameras "
                                    "that got fewer frames"), report.reason  # not said to be over the 3 s limit
    stale.shed(frame(3, 4.0, camera="fast", now=NOW + 9.5), NOW + 9.5)
    later = stale.shed(frame(4, 4.0, camera="fast", now=NOW + 19.0), NOW + 19.0)
    assert later.reason.startswith("2 live frame(s) shed, up to 4.0 s old, over the 3 s limit (detection is behind")
    assert "given way" not in later.reason, later.reason
