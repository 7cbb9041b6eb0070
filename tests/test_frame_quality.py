import numpy as np

from its_faust.frame_quality import FrameQualityChecker, StillSceneSampler


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


def test_a_blurred_frozen_scene_is_flagged_blurred_so_no_sample_of_it_reaches_the_detector(clip_frames):
    """Ingest sends some frozen frames on (StillSceneSampler), never blurred ones: blur must win."""
    import cv2

    blurred = cv2.GaussianBlur(clip_frames[0], (51, 51), 20)
    checker = FrameQualityChecker(frozen_after=3, blur_var=50)
    verdicts = [checker.check(blurred) for _ in range(6)]
    assert all(v.startswith("blurred") for v in verdicts), verdicts
    sharp_but_still = FrameQualityChecker(frozen_after=3, blur_var=50)
    assert [sharp_but_still.check(clip_frames[0]) for _ in range(5)][3:] == ["frozen: unchanged for 3 frames", "frozen: unchanged for 4 frames"]


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
    sampler, t0, due = StillSceneSampler(0.2), 1.7e9, []
    for n in range(61):  # 2 s at 30 fps; a file's scene time is a Unix time plus n / fps, in floats
        at = t0 + n / 30
        if sampler.due(at):
            sampler.sent(at)
            due.append(n)
    assert due == list(range(0, 61, 6))  # every 0.2 s exactly, though the differences fall short by ulps
    assert not StillSceneSampler(0.0).due(t0)  # 0: none sampled


def test_still_scene_samples_keep_a_grid_so_a_late_one_does_not_delay_the_next():
    sampler, sent = StillSceneSampler(0.25), []
    for n in range(11):  # 5 fps: frames 0.2 s apart
        at = 100.0 + n * 0.2
        if sampler.due(at):
            sampler.sent(at)
            sent.append(round(at - 100.0, 1))
    # Steps at 0.25, 0.5, 0.75, 1.0, ...: each gets the first frame at or after it (0.4 s, then 0.2 s apart),
    # not "0.25 s after the last sample" (which would be every 0.4 s: 3 a second).
    assert sent == [0.0, 0.4, 0.6, 0.8, 1.0, 1.4, 1.6, 1.8, 2.0]
