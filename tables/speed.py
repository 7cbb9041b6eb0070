"""Speed from a camera's calibration: image points -> road plane (metres) -> velocity fit over a short window.

The homography maps a vehicle's ground point (the bottom centre of its box) to
road-plane metres. Speed is the slope of a least-squares line through the
track's road positions over the last ``window_s`` seconds of scene time, which
smooths box jitter without lagging as much as a moving average of
frame-to-frame speeds. Without calibration there is no speed at all.
"""

from __future__ import annotations

import cv2
import numpy as np

from schemas.analytics import MAX_SPEED_KMH, SpeedStats
from schemas.geometry import Calibration
from tables.zones import inside

# Fewer samples than this, or a shorter span, gives no speed yet.
MIN_SAMPLES = 4
MIN_SPAN_S = 0.25


def speed_stats(speeds: list[float]) -> SpeedStats | None:
    """Mean and 85th percentile of vehicles' speeds (None for none). Speeds past MAX_SPEED_KMH, taken into a
    table before they were left out, are left out here."""
    speeds = [kmh for kmh in speeds if kmh <= MAX_SPEED_KMH]
    if not speeds:
        return None
    return SpeedStats(n=len(speeds), mean_kmh=round(float(np.mean(speeds)), 2),
                      p85_kmh=round(float(np.percentile(speeds, 85)), 2))


class RoadPlane:
    """The image-to-road homography of one calibration."""

    def __init__(self, calibration: Calibration):
        src = np.asarray(calibration.image_points, dtype=np.float64)
        dst = np.asarray(calibration.road_points, dtype=np.float64)
        # Fitted from the road points' centre, moved back in float64: OpenCV takes float32, which holds a survey's
        # coordinates (UTM northings of 5e6 m) to half a metre only.
        centre = dst.mean(axis=0)
        fitted = cv2.getPerspectiveTransform(src.astype(np.float32), (dst - centre).astype(np.float32)).astype(np.float64)
        self.matrix = np.array([[1.0, 0.0, centre[0]], [0.0, 1.0, centre[1]], [0.0, 0.0, 1.0]]) @ fitted
        self.image_area = [tuple(p) for p in calibration.image_points]

    def covers(self, x: float, y: float) -> bool:
        """Inside the calibrated quadrilateral. Beyond it the homography extrapolates (the far distance, the other
        carriageway: a trial saw 200 km/h there), so no speed is measured outside it."""
        return inside(self.image_area, (x, y))

    def to_road(self, x: float, y: float) -> tuple[float, float]:
        u, v, w = self.matrix @ np.array([x, y, 1.0])
        return float(u / w), float(v / w)


def fitted_velocity(samples: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """``samples``: (t, x, y) in time order. Least-squares velocity (units per second); None if too little data."""
    if len(samples) < MIN_SAMPLES:
        return None
    data = np.asarray(samples, dtype=np.float64)
    t = data[:, 0] - data[0, 0]
    if t[-1] < MIN_SPAN_S:
        return None
    tc = t - t.mean()
    denom = float(tc @ tc)
    return float(tc @ (data[:, 1] - data[:, 1].mean())) / denom, float(tc @ (data[:, 2] - data[:, 2].mean())) / denom


def fitted_speed_kmh(road_samples: list[tuple[float, float, float]]) -> float | None:
    """``road_samples``: (t, x_m, y_m). Speed in km/h, or None: for too few samples, and for a speed past
    MAX_SPEED_KMH, which is no vehicle's (a track that jumped to another vehicle, a box that grew at the calibrated
    area's far edge): it would take its line's mean and p85 with it, and raise an overspeed alert on nothing."""
    v = fitted_velocity(road_samples)
    if v is None:
        return None
    kmh = float(np.hypot(*v) * 3.6)
    return kmh if kmh <= MAX_SPEED_KMH else None


def trim(samples: list[tuple[float, float, float]], now: float, window_s: float) -> list[tuple[float, float, float]]:
    """Keep the samples of the last ``window_s`` seconds."""
    return [s for s in samples if 0 <= now - s[0] <= window_s]  # none from after now: the camera's clock went back
