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
