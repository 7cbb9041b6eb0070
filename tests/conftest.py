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


class MjpegCamera:
    """A live HTTP MJPEG camera on loopback.

    Each connection gets ``frames_per_connection`` frames (``jpegs`` looped; None: until
    stopped) at ``fps`` (None: as fast as the socket takes them), then is dropped.
    """

    def __init__(self, jpegs: list[bytes], frames_per_connection: int | None = None, fps: float | None = None,
                 port: int | None = None):
        import http.server
        import itertools
        import threading
        import time

        from its_faust.broker import free_port

        camera = self
        self.connections = 0
        self.stopped = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                frames = itertools.islice(itertools.cycle(jpegs), frames_per_connection)
                next_at = time.monotonic()
                try:
                    for jpeg in frames:
                        if camera.stopped.is_set():
                            break
                        if fps:
                            time.sleep(max(0.0, next_at - time.monotonic()))
                            next_at += 1 / fps
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                        self.wfile.write(jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the reader went away
                camera.connections += 1

            def log_message(self, *args):
                pass

        self.port = port or free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"

    def stop(self):
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def mjpeg_camera():
    """Start live MJPEG cameras (see :class:`MjpegCamera`); all are stopped after the test."""
    cameras: list[MjpegCamera] = []

    def start(jpegs: list[bytes], **kwargs) -> MjpegCamera:
        cameras.append(MjpegCamera(jpegs, **kwargs))
        return cameras[-1]

    yield start
    for camera in cameras:
        if not camera.stopped.is_set():
            camera.stop()
