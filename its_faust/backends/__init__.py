"""Detector backends: one small class per runtime, all with the same call.

A backend takes a float32 batch ``(B, 3, H, W)`` in [0, 1] and returns the raw
YOLO head output ``(B, 4 + classes, anchors)``; letterboxing, NMS and scaling
back to the frame live in :mod:`its_faust.detector`, shared by all backends.
"""

from __future__ import annotations

from its_faust.backends.base import DetectorBackend, load_backend

__all__ = ["DetectorBackend", "load_backend"]
