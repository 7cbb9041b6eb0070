"""Shared test set-up: assets from the mirror, offline Ultralytics, a detector loaded once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("ITS_FAUST_ASSET_DIR", str(REPO.parent / "shared"))
os.environ["YOLO_OFFLINE"] = "1"
os.environ.setdefault("ITS_FAUST_PROFILE", "local")

CLIP = "dual_carriageway_abhishek.mp4"


@pytest.fixture(scope="session")
def settings():
    from its_faust.settings import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def clip_path(settings) -> Path:
    from its_faust.assets import resolve_asset

    return resolve_asset(CLIP, settings.asset_dir, download=False)


@pytest.fixture(scope="session")
def weights_path(settings) -> Path:
    from its_faust.assets import resolve_asset

    return resolve_asset(settings.model.weights, settings.asset_dir, download=False)


@pytest.fixture(scope="session")
def clip_frames(clip_path):
    import cv2

    capture = cv2.VideoCapture(str(clip_path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="session")
def detector(settings):
    from its_faust.detector import Detector

    return Detector.from_settings(settings)
