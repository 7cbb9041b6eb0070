import numpy as np

from its_faust.frame_quality import FrameQualityChecker


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

    An area-averaged thumbnail blurred that motion below the frozen threshold and
    rejected 59 of its frames as a frozen stream.
    """
    import cv2

    from its_faust.assets import resolve_asset

    capture = cv2.VideoCapture(str(resolve_asset("intersection_cctv_borislavy.mp4", settings.asset_dir, download=False)))
    checker, verdicts = FrameQualityChecker(), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        verdicts.append(checker.check(frame))
    assert len(verdicts) == 909
    assert [v for v in verdicts if v] == []


def test_a_still_scene_with_sensor_noise_is_neither_frozen_nor_blank_and_a_noisy_blank_is_blank(clip_frames):
    rng = np.random.default_rng(0)

    def noisy(image, std):
        return np.clip(image + rng.normal(0, std, image.shape), 0, 255).astype(np.uint8)

    checker = FrameQualityChecker(frozen_after=3)
    still = clip_frames[0].astype(np.float32)
    assert [checker.check(noisy(still, 2)) for _ in range(8)] == [None] * 8
    assert FrameQualityChecker().check(noisy(np.full((360, 640, 3), 100.0), 3)).startswith("blank")
