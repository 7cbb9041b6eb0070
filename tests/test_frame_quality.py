import numpy as np

from its_faust.frame_quality import FrameQualityChecker, RejectionRuns, StillSceneSampler


def test_good_frames_pass(clip_frames):
    checker = FrameQualityChecker()
    assert [checker.check(f) for f in clip_frames[:30]] == [None] * 30


def test_blank_frame_is_flagged():
    assert FrameQualityChecker().check(np.full((360, 640, 3), 17, np.uint8)).startswith("blank")


def test_unreadable_frame_is_flagged():
    checker = FrameQualityChecker()
    assert checker.check(None).startswith("unreadable")
    assert checker.check(np.zeros((10, 10), np.uint8)).startswith("unreadable")


def test_frozen_stream_is_flagged_after_n_identical_frames(clip_frames):
    checker = FrameQualityChecker(frozen_after=5)
    verdicts = [checker.check(clip_frames[0]) for _ in range(8)]
    assert verdicts[:5] == [None] * 5
    assert all(v and v.startswith("frozen") for v in verdicts[5:])
    assert checker.check(clip_frames[40]) is None  # motion again resets it


def test_blur_check_is_opt_in(clip_frames):
    import cv2

    blurred = cv2.GaussianBlur(clip_frames[0], (51, 51), 20)
    assert FrameQualityChecker().check(blurred) is None
    assert FrameQualityChecker(blur_var=50).check(blurred).startswith("blurred")


def test_slow_traffic_at_a_quiet_intersection_is_not_a_frozen_stream(settings):
    """The intersection clip has stretches where only a car or two creep: those frames are real.

    A mean-difference test on an area-averaged thumbnail took that motion for a frozen
    stream and rejected 59 of its frames.
    """
    import cv2

    from its_faust.assets import resolve_asset

    capture = cv2.VideoCapture(str(resolve_asset("intersection_cctv_borislavy.mp4", settings.asset_dir, download=False)))
    frames_in_file = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    checker, verdicts = FrameQualityChecker(), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        verdicts.append(checker.check(frame))
    assert len(verdicts) >= frames_in_file - 2 > 800
    assert [v for v in verdicts if v] == []


def test_a_stuck_camera_that_re_encodes_its_last_image_is_frozen(clip_frames):
    """Not bit-identical frames: each a new JPEG of the same picture (what an encoder sends when its input stuck)."""
    import cv2

    checker = FrameQualityChecker(frozen_after=4)
    verdicts = [
        checker.check(cv2.imdecode(cv2.imencode(".jpg", clip_frames[0], [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR))
        for q in (80, 82, 84, 86, 88, 90)
    ]
    assert verdicts[:4] == [None] * 4
    assert all(v and v.startswith("frozen") for v in verdicts[4:])


def test_noise_on_a_dark_or_capped_camera_is_still_blank():
    rng = np.random.default_rng(0)
    for shape in ((360, 640, 3), (1080, 1920, 3)):
        for noise in (3, 15):
            frame = np.clip(20 + rng.normal(0, noise, shape), 0, 255).astype(np.uint8)
            assert FrameQualityChecker().check(frame).startswith("blank"), (shape, noise)


def test_still_scene_sampler_lets_one_frozen_frame_through_per_interval():
    sampler = StillSceneSampler(1.0)
    assert sampler.due(100.0)  # nothing sent yet
    sampler.sent(100.0)
    t, due = 100.0, []
    for _ in range(60):  # 2 s at 30 fps, the clock a sum of 1/30 steps (30 of them fall just short of 1.0)
        t += 1 / 30
        if sampler.due(t):
            sampler.sent(t)
            due.append(round(t - 100.0, 3))
    assert due == [1.0, 2.0]
    assert not StillSceneSampler(0.0).due(100.0)  # 0: none sampled


def test_rejection_runs_report_a_run_once_per_interval_and_a_new_kind_at_once():
    runs = RejectionRuns(60.0)
    verdicts = [runs.rejected("blank", t) for t in (0.0, 0.04, 59.9, 60.0, 60.04)]
    assert verdicts == [True, False, False, True, False] and runs.count == 5
    assert runs.rejected("frozen", 60.08) and runs.count == 1  # another kind: a new run
    runs.passed()
    assert runs.rejected("frozen", 60.12)  # after a good frame: a new run
