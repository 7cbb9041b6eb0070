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
  at all moves (an empty road at night): that is reported as frozen too, until something
  moves.
* blurred (opt-in): low Laplacian variance.
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
            if self._unchanged >= self.frozen_after:
                return f"frozen: unchanged for {self._unchanged} frames"
        else:
            self._unchanged = 0
        if self.blur_var > 0:
            sharpness = float(cv2.Laplacian(thumb, cv2.CV_64F).var())
            if sharpness < self.blur_var:
                return f"blurred: Laplacian variance {sharpness:.1f} < {self.blur_var}"
        return None

    def _changed_pixels(self, thumb: np.ndarray, previous: np.ndarray) -> int:
        _, changed = cv2.threshold(cv2.absdiff(thumb, previous), self.frozen_delta, 1, cv2.THRESH_BINARY)
        return cv2.countNonZero(changed)
