"""Frame quality checks: frames that would only waste the detector are flagged, not sent.

Checks run on a small greyscale thumbnail (bilinear decimation: about 0.1 ms per frame;
an area-averaged thumbnail of the whole frame cost 0.35-1 ms, a third of the camera's
per-frame CPU beside video decoding and JPEG encoding):

* blank: the grey-level spread of an area-averaged 40x22 copy of the thumbnail is tiny.
  Averaging first keeps sensor noise on a dark or capped camera from passing for content.
* frozen: for ``frozen_after`` frames in a row, almost no thumbnail pixel (at most 0.2%)
  changed by more than ``frozen_delta`` grey levels. A repeated or re-encoded frame changes
  many pixels by little; a car creeping through a quiet scene changes a few by a lot, and
  a mean difference could not tell the two apart (it rejected 59 frames of slow traffic
  in the intersection clip). Pixels cannot tell a stuck stream from a scene where nothing
  at all moves (an empty road at night), so an unchanged picture is still sampled: one
  frame every ``frozen_keepalive_s`` of scene time goes to the detector anyway
  (:class:`StillSceneSampler`), and a car standing on that road stays tracked.
* blurred (opt-in): low Laplacian variance.

Flagged frames are reported at the first of a kind and then at most once every
``rejection_report_s`` per kind, with a count (:class:`its_faust.throttle.Throttle`), not once per frame.
"""

from __future__ import annotations

import cv2
import numpy as np

_THUMB = (160, 90)
_COARSE = (40, 22)
_FROZEN_CHANGED_SHARE = 0.002  # thumbnail pixels allowed to change noticeably in an unchanged frame


class FrameQualityChecker:
    def __init__(self, blank_std: float = 4.0, frozen_delta: int = 12, frozen_after: int = 15, blur_var: float = 0.0):
        self.blank_std = blank_std
        self.frozen_delta = frozen_delta
        self.frozen_after = frozen_after
        self.blur_var = blur_var  # 0 disables the blur check: sharpness varies too much by scene for one default
        self._previous: np.ndarray | None = None
        self._unchanged = 0

    @classmethod
    def from_settings(cls, ingest_settings) -> "FrameQualityChecker":
        s = ingest_settings
        return cls(s.blank_std, s.frozen_delta, s.frozen_after, s.blur_var)

    def check(self, frame: np.ndarray | None) -> str | None:
        """The reason to reject this frame, or None when it is fit for the detector."""
        if frame is None or frame.ndim != 3 or frame.shape[2] != 3 or frame.size == 0:
            return "unreadable: not a 3-channel image"
        thumb = cv2.cvtColor(cv2.resize(frame, _THUMB, interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2GRAY)
        previous, self._previous = self._previous, thumb
        std = float(cv2.meanStdDev(cv2.resize(thumb, _COARSE, interpolation=cv2.INTER_AREA))[1][0, 0])
        if std < self.blank_std:
            return f"blank: grey-level std {std:.1f} < {self.blank_std}"
        if previous is not None and self._changed_pixels(thumb, previous) <= _FROZEN_CHANGED_SHARE * thumb.size:
            self._unchanged += 1
        else:
            self._unchanged = 0
        # Blur before frozen: some frozen frames still go to the detector (StillSceneSampler), a blurred one never.
        if self.blur_var > 0:
            sharpness = float(cv2.Laplacian(thumb, cv2.CV_64F).var())
            if sharpness < self.blur_var:
                return f"blurred: Laplacian variance {sharpness:.1f} < {self.blur_var}"
        if self._unchanged >= self.frozen_after:
            return f"frozen: unchanged for {self._unchanged} frames"
        return None

    def _changed_pixels(self, thumb: np.ndarray, previous: np.ndarray) -> int:
        _, changed = cv2.threshold(cv2.absdiff(thumb, previous), self.frozen_delta, 1, cv2.THRESH_BINARY)
        return cv2.countNonZero(changed)


_EPSILON_S = 1e-6  # scene times are t0 + n/fps in floats: a frame due at exactly N seconds counts as due


class StillSceneSampler:
    """Which frozen (unchanged) frames still go to the detector: the first frame at or after each
    ``every_s`` step of scene time since the last frame that went.

    Without them a still scene goes unwatched: a car that stopped on an empty road at night
    would lose its track (the tracker starts afresh after a gap) and never raise its
    stopped-vehicle alert. The samples must come often enough for analytics too: a speed is
    fitted from 4 positions within ``speed_window_s`` (1 s); at 1 s apart a standing car has
    no speed, stops counting as stopped, and its alert clears. The steps are a fixed grid, so
    a sample that comes a frame late does not push the next one later: each step of the grid
    gets one frame (when the camera has one in it), and any ``speed_window_s`` holds 4
    samples when ``every_s`` is at most a quarter of it (settings check that). At the default
    0.25 s the detector runs on about 4 frames a second of such a scene instead of 25-30.
    ``every_s`` 0 samples none.
    """

    def __init__(self, every_s: float):
        self.every_s = every_s
        self._next_at: float | None = None

    def due(self, at: float) -> bool:
        if self.every_s <= 0:
            return False
        return self._next_at is None or at >= self._next_at - _EPSILON_S

    def sent(self, at: float) -> None:
        """A frame (checked or sampled) went to the detector at scene time ``at``."""
        on_grid = self._next_at is not None and self._next_at - _EPSILON_S <= at < self._next_at + self.every_s
        self._next_at = self._next_at + self.every_s if on_grid else at + self.every_s
