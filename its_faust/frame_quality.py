"""Frame quality checks: frames that would only waste the detector are flagged, not sent.

Checks run on a small greyscale thumbnail, so they cost about a tenth of a millisecond
per frame (bilinear decimation: an area-averaged thumbnail cost four times as much, a third
of the camera's per-frame CPU beside video decoding and JPEG encoding).
"""

from __future__ import annotations

import cv2
import numpy as np

_THUMB = (160, 90)


class FrameQualityChecker:
    def __init__(self, blank_std: float = 4.0, frozen_mad: float = 0.5, frozen_after: int = 15, blur_var: float = 0.0):
        self.blank_std = blank_std
        self.frozen_mad = frozen_mad
        self.frozen_after = frozen_after
        self.blur_var = blur_var  # 0 disables the blur check: sharpness varies too much by scene for one default
        self._previous: np.ndarray | None = None
        self._unchanged = 0

    @classmethod
    def from_settings(cls, ingest_settings) -> "FrameQualityChecker":
        return cls(ingest_settings.blank_std, ingest_settings.frozen_mad, ingest_settings.frozen_after, ingest_settings.blur_var)

    def check(self, frame: np.ndarray | None) -> str | None:
        """The reason to reject this frame, or None when it is fit for the detector."""
        if frame is None or frame.ndim != 3 or frame.shape[2] != 3 or frame.size == 0:
            return "unreadable: not a 3-channel image"
        thumb = cv2.cvtColor(cv2.resize(frame, _THUMB, interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2GRAY)
        previous, self._previous = self._previous, thumb
        std = float(cv2.meanStdDev(thumb)[1][0, 0])
        if std < self.blank_std:
            return f"blank: grey-level std {std:.1f} < {self.blank_std}"
        if previous is not None and cv2.norm(thumb, previous, cv2.NORM_L1) / thumb.size < self.frozen_mad:
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
