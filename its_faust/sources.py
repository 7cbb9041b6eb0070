"""Camera sources read with OpenCV: video files, RTSP/HTTP streams and webcams.

A file ends; a live source that stops delivering frames is reopened with
exponential backoff, and each loss and reconnection is reported to the caller.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """The source cannot be opened (bad path, unreachable stream, no such webcam)."""


@dataclass(frozen=True)
class SourceSpec:
    uri: str
    live: bool
    capture_arg: str | int

    @property
    def network(self) -> bool:
        """A stream over the network (RTSP, HTTP): one that is down may come up; a file or a webcam index will not."""
        return self.live and isinstance(self.capture_arg, str)

    @classmethod
    def parse(cls, uri: str) -> "SourceSpec":
        """``path/to/file.mp4`` | ``rtsp://...`` | ``http(s)://...`` | ``webcam:0`` or ``0``."""
        if uri.isdigit() or uri.startswith("webcam:"):
            return cls(uri, True, int(uri.split(":", 1)[-1] or 0))
        if "://" in uri and not uri.startswith("file://"):
            return cls(uri, True, uri)
        path = Path(uri.removeprefix("file://")).expanduser()
        if path.is_dir():
            raise SourceError(f"cannot open video {uri}: it is a directory")
        if not path.is_file():
            raise SourceError(f"cannot open video {uri}: no such file")
        if not os.access(path, os.R_OK):
            raise SourceError(f"cannot open video {uri}: permission denied")
        return cls(uri, False, str(path))


def open_capture(spec: SourceSpec, timeout_s: float | None = None) -> cv2.VideoCapture:
    """``timeout_s``: how long a network stream may take to open, and then to deliver each frame, before it
    counts as down (FFmpeg's own default is 30 s)."""
    index = spec.capture_arg
    if isinstance(index, int) and index >= 0 and sys.platform == "linux" and not Path(f"/dev/video{index}").exists():
        # Said here: OpenCV would try each of its back-ends and print a screenful of warnings first.
        raise SourceError(f"cannot open video {spec.uri}: no camera at /dev/video{index}")
    if spec.network and timeout_s:
        ms = int(timeout_s * 1000)
        capture = cv2.VideoCapture(spec.capture_arg, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    else:
        capture = cv2.VideoCapture(spec.capture_arg)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"cannot open video {spec.uri}{_why_not(spec)}")
    return capture


def _why_not(spec: SourceSpec) -> str:
    """What can be said of a file OpenCV could not open (FFmpeg's own words are kept off the terminal)."""
    path = Path(spec.uri) if not spec.live else None
    if path is None or not path.is_file():
        return ""
    size = path.stat().st_size
    if size == 0:
        return ": the file is empty"
    return f": not a video or picture OpenCV can read ({size} bytes: truncated, damaged, or another format?)"


@dataclass(frozen=True)
class Backoff:
    """How a camera that is down is tried again: waits from ``initial_s``, doubled after each failed
    try up to ``max_s``, at most ``attempts`` tries again (0: for ever) after the one that failed
    (the read that lost the stream, or the first open). One policy for a stream lost while reading
    (:class:`FrameReader`) and a network camera down at start (``ingest``)."""

    initial_s: float = 0.5
    max_s: float = 30.0
    attempts: int = 0
    timeout_s: float | None = None  # a network stream's open and read timeout (open_capture)

    @classmethod
    def from_settings(cls, ingest_settings) -> "Backoff":
        s = ingest_settings
        return cls(s.reconnect_initial_s, s.reconnect_max_s, s.reconnect_attempts, s.stream_timeout_s)

    def waits(self) -> Iterator[float]:
        """The wait before each try; ends when the tries are used up."""
        delay, tries = self.initial_s, 0
        while not self.attempts or tries < self.attempts:
            tries += 1
            yield delay
            delay = min(delay * 2, self.max_s)


class FrameReader:
    """Iterates ``(frame, capture_time)``; reconnects live sources, ends files."""

    def __init__(
        self,
        spec: SourceSpec,
        *,
        backoff: Backoff = Backoff(),
        on_event: Callable[[str, str], None] = lambda kind, reason: None,
        sleep: Callable[[float], None] | None = None,
    ):
        self.spec = spec
        self.backoff = backoff
        self.on_event = on_event
        self._closing = threading.Event()
        self.sleep = sleep or self._closing.wait  # a reconnect's back-off ends early when the reader is closed
        self.gave_up: str | None = None  # why a live source was given up: its reconnects all failed
        self.capture = open_capture(spec, backoff.timeout_s)
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if not spec.live and count > 0 else None
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        self._closed = False
        # close() comes from the event loop while a read may be running in a worker thread; FFmpeg aborts
        # the whole process (an assertion in its frame threads) when a capture is released mid-read.
        self._capture_lock = threading.Lock()
        self._capture_busy = False
        # The scene clock of a file: playback start + frame index / fps (live sources have none).
        self._scene_t0 = time.time()
        self._index = 0
        self._last_scene: float | None = None

    @property
    def frames_read(self) -> int:
        """Frames of a file read since it started (or was last rewound)."""
        return self._index

    def close(self) -> None:
        """Stop reading; a read in flight in another thread releases the capture when it returns."""
        with self._capture_lock:
            self._closed = True
            self._closing.set()
            if self._capture_busy:
                return
            capture = self.capture  # not one a reconnect puts in place after this (it releases that one)
        capture.release()

    @contextmanager
    def _using_capture(self) -> Iterator[bool]:
        """Yields False once closed; while it is held, close() leaves the capture to it."""
        with self._capture_lock:
            usable = not self._closed
            self._capture_busy = usable
        if not usable:
            yield False
            return
        try:
            yield True
        finally:
            with self._capture_lock:
                self._capture_busy = False
                if self._closed:
                    self.capture.release()

    def rewind(self) -> None:
        """Play a file again from its start; its scene clock goes on forward from where it was.

        The file is opened again: OpenCV cannot seek back in every file (a one-frame video, a picture), and
        ``--loop`` on such a file ended after its one frame, as if that were all."""
        with self._using_capture() as usable:
            if usable:
                self.capture.release()
                self.capture = open_capture(self.spec, self.backoff.timeout_s)
        step = 1.0 / self.fps if self.fps else 0.0
        self._scene_t0 = max(time.time(), (self._last_scene or 0.0) + step)
        self._index = 0

    def __iter__(self) -> Iterator[tuple[np.ndarray, float, float | None]]:
        """(frame, read time, scene time or None for live sources)."""
        while not self._closed:
            with self._using_capture() as usable:
                ok, frame = self.capture.read() if usable else (False, None)
            if self._closed:
                return
            if ok:
                read_at, scene = time.time(), None
                if not self.spec.live:
                    # A file without a frame rate has no clock of its own: its frames take their read
                    # time, which analytics would use anyway, and stay marked as a file's (never shed).
                    scene = self._scene_t0 + self._index / self.fps if self.fps else read_at
                    self._last_scene = scene
                    self._index += 1
                yield frame, read_at, scene
                continue
            if not self.spec.live:
                return
            if not self._reconnect():
                return

    def _reconnect(self) -> bool:
        with self._using_capture() as usable:
            if usable:
                self.capture.release()
        self.on_event("stream_lost", f"{self.spec.uri} stopped delivering frames")
        waits = self.backoff.waits()
        attempt, delay = 0, next(waits, None)
        while delay is not None:
            self.sleep(delay)
            if self._closed:  # woken by close(): no connect attempt (an unreachable host blocks for its timeout)
                return False
            attempt += 1
            try:
                capture = open_capture(self.spec, self.backoff.timeout_s)
            except SourceError as exc:
                delay = next(waits, None)
                then = f"next try in {delay:.1f} s" if delay is not None else "no tries left"
                log.warning("reconnect %d to %s failed: %s; %s", attempt, self.spec.uri, exc, then)
                continue
            with self._capture_lock:
                self.capture = capture
                if self._closed:  # closed while it connected: nobody reads it now
                    capture.release()
                    return False
            self.on_event("reconnected", f"{self.spec.uri} back after {attempt} attempt(s)")
            return True
        if not self._closed:
            self.gave_up = f"{self.spec.uri} lost: {attempt} attempts to reconnect failed"
            self.on_event("gave_up", self.gave_up)
        return False
