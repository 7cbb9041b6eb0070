"""Camera ingest: read a source, check and JPEG-encode frames, produce them to ``frames``.

Frames are keyed by camera id (one camera's frames stay in order on one
partition) and numbered with a per-camera ``seq``. ``seq`` starts at the Unix
time in milliseconds when ingest starts and grows by one per frame read, so a
restarted camera continues above every seq it sent before (at under 1,000 fps)
and the idempotent actors downstream never mistake new frames for redeliveries.

Pacing: a :class:`FlowWindow` alone (as fast as the pipeline takes frames), a
target fps (frames above it are dropped for live sources, waited for with files),
or the source's own fps for files. A window together with a frame rate makes a
live feed: when the pipeline is behind, the newest frames are dropped rather
than queued, so latency stays bounded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import cv2
from aiokafka import AIOKafkaProducer

from its_faust.codecs import encode
from its_faust.frame_quality import FrameQualityChecker, StillSceneSampler
from its_faust.sources import Backoff, FrameReader, SourceError, SourceSpec
from its_faust.throttle import Throttle
from its_faust.topic_names import CAMERA_EVENTS, FRAMES, MAX_RECORD_BYTES
from schemas import CameraEvent, CameraEventKind, FrameRecord
from schemas.base import scene_clock

log = logging.getLogger(__name__)
LAST_FLUSH_S = 10.0  # how long a camera that stops waits for the broker to take its last records


# A live feed's credit comes back with its frame's track record; a frame that never gets one (shed
# as stale, dead-lettered) gives its credit back after this long, or the feed would stall for good.
LIVE_CREDIT_EXPIRE_S = 10.0


class FlowWindow:
    """Credit-based backpressure: at most ``size`` frames sent and not yet tracked.

    With ``expire_s``, a credit not given back within that time is reclaimed: a frame
    that was dead-lettered (or lost) must not hold a live feed's window shut for ever.
    """

    def __init__(self, size: int, expire_s: float | None = None):
        self.size = size
        self.expire_s = expire_s
        self._taken: collections.deque[float] = collections.deque()  # when each credit was taken, oldest first
        self._freed = asyncio.Event()

    def _reclaim(self) -> None:
        if self.expire_s is not None:
            oldest_allowed = time.monotonic() - self.expire_s
            while self._taken and self._taken[0] < oldest_allowed:
                self._taken.popleft()

    async def acquire(self) -> None:
        while not self.try_acquire():
            self._freed.clear()
            try:
                await asyncio.wait_for(self._freed.wait(), self.expire_s)
            except asyncio.TimeoutError:
                pass

    def try_acquire(self) -> bool:
        """Take a credit if one is free now (a live feed drops the frame otherwise)."""
        self._reclaim()
        if len(self._taken) >= self.size:
            return False
        self._taken.append(time.monotonic())
        return True

    def release(self) -> None:
        if self._taken:
            self._taken.popleft()
        self._freed.set()


@dataclass
class IngestStats:
    camera_id: str
    frames_read: int = 0
    frames_sent: int = 0
    frames_rejected: int = 0
    frames_skipped: int = 0  # dropped by frame-rate control
    frames_sampled: int = 0  # sent while the picture was frozen (frame_quality.StillSceneSampler); in frames_sent
    last_seq: int | None = None
    sent_seqs: list[int] = field(default_factory=list)  # only with keep_seqs (bounded runs): grows per frame
    send_errors: int = 0
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    stopped_early: bool = False  # stopped (Ctrl-C, SIGTERM, the owner's stop) before the source ended
    rejections: dict[str, int] = field(default_factory=dict)


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=2,
        max_request_size=MAX_RECORD_BYTES,
        client_id="its-faust-ingest",
    )


async def _first_open(open_reader, spec: SourceSpec, backoff: Backoff, report, flush_events,
                      stop: asyncio.Event | None) -> FrameReader | None:
    """The source's reader. A network camera that is down at start (rebooting, not up yet when the
    service starts) is tried again like one lost later: reported on camera-events, the same
    ``backoff``. A file or webcam that does not open is an error at once. None when ``stop`` came first."""
    waits = backoff.waits()
    attempt = 0
    while True:
        attempt += 1
        try:
            reader = await asyncio.to_thread(open_reader)
        except SourceError as exc:
            if not spec.network:
                raise
            if attempt == 1:
                report("stream_lost", f"{spec.uri} does not open at start ({exc}); trying again with backoff")
            delay = next(waits, None)
            if delay is None:
                report("gave_up", f"{spec.uri} unreachable after {attempt} attempts")
                await flush_events()
                raise SourceError(f"{exc} (gave up after {attempt} attempts)") from None
            await flush_events()
            log.warning("%s does not open (attempt %d); next try in %.1f s", spec.uri, attempt, delay)
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return None
            continue
        if attempt > 1:
            report("reconnected", f"{spec.uri} open after {attempt} attempts")
        return reader


async def ingest(
    source: str,
    camera_id: str,
    producer: AIOKafkaProducer,
    settings,
    *,
    fps: float | None = None,
    window: FlowWindow | None = None,
    max_frames: int | None = None,
    loop_source: bool = False,
    stop: asyncio.Event | None = None,
    stop_reason: str = "stopped",  # what ``stop`` means; Ctrl-C and cancelling are "stopped"
    live_feed: bool = False,
    as_live_source: bool = False,
    keep_seqs: bool = False,
    on_sent: Callable[[IngestStats], None] | None = None,
) -> IngestStats:
    """Send ``source``'s frames as camera ``camera_id`` until it ends, ``max_frames`` or ``stop``
    (``stop_reason`` says why in the camera's ``finished`` event).

    ``live_feed`` replays a file at its own frame rate like a camera would deliver it.
    ``as_live_source``: a file's frames go out as a live camera's, without a scene time, so the
    detection stage sheds those it reaches too late (:mod:`its_faust.stale_frames`) instead of
    queueing them for as long as the pipeline is slower than the file.
    """
    spec = SourceSpec.parse(source)
    frames_topic, events_topic = settings.topic(FRAMES), settings.topic(CAMERA_EVENTS)
    key = camera_id.encode()
    seq = int(time.time() * 1000)  # see the module docstring
    stats = IngestStats(camera_id)
    loop = asyncio.get_running_loop()
    pending_events: list[CameraEvent] = []

    def report(kind: str, reason: str, event_seq: int | None = None) -> None:
        pending_events.append(
            CameraEvent(camera_id=camera_id, kind=CameraEventKind(kind), at=time.time(), seq=event_seq, reason=reason, frames_sent=stats.frames_sent)
        )

    async def flush_events() -> None:
        while pending_events:
            event = pending_events.pop(0)
            log.info("camera %s: %s (%s)", camera_id, event.kind.value, event.reason)  # frame_rejected: rate-limited
            await producer.send(events_topic, key=key, value=encode(event))

    s = settings.ingest
    backoff = Backoff.from_settings(s)
    open_reader = partial(FrameReader, spec, backoff=backoff, on_event=lambda kind, reason: loop.call_soon_threadsafe(report, kind, reason))
    reader = await _first_open(open_reader, spec, backoff, report, flush_events, stop)
    if reader is None:  # stopped while the camera was still down
        report("finished", "stopped: 0 frames sent (the source never opened)")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(flush_events(), LAST_FLUSH_S)
        stats.finished_at = time.time()
        return stats
    quality = FrameQualityChecker.from_settings(s)
    still_scene = StillSceneSampler(s.frozen_keepalive_s)
    # Per kind, in scene time, and not reset by a good frame: a camera flipping between blank and fine, or a
    # quiet road frozen between passing cars, is reported once per interval, not once per flip.
    flag_reports: Throttle[str] = Throttle(s.rejection_report_s)
    # Files are paced at their own fps unless a window (alone) or a target fps says otherwise.
    target_fps = fps or (None if ((window and not live_feed) or spec.live) else reader.fps)
    drop_when_busy = window is not None and (live_feed or spec.live)
    interval = 1.0 / target_fps if target_fps else 0.0
    encode_params = [cv2.IMWRITE_JPEG_QUALITY, s.jpeg_quality]
    frames = iter(reader)

    # A frame the loop may still drop (a live camera faster than the target rate, a live feed while the
    # pipeline is behind) is JPEG-encoded only once it is kept: an encode is 0.7 ms of a core at 640x360
    # and ~10 at 1080p, so a 30 fps camera paced to 10 fps wasted two encodes in three. A file paced by
    # the pipeline (or at its own rate) drops nothing: read, check and encode in one trip to the thread.
    may_drop = drop_when_busy or bool(spec.live and interval)

    def next_frame(encode_now: bool):
        """Read and check one frame, and encode it when ``encode_now`` (in a thread: OpenCV releases the GIL).

        Returns (captured_at, scene_time, image, JPEG or None, problem, for the detector); None at the end.
        """
        nonlocal frames
        item = next(frames, None)
        if item is None and loop_source and not spec.live:
            reader.rewind()
            frames = iter(reader)
            item = next(frames, None)
        if item is None:
            return None
        image, captured_at, scene_time = item
        problem = quality.check(image)
        # A frozen frame due as the still scene's sample goes to the detector too; the loop counts it.
        to_detector = not problem or (problem.startswith("frozen") and still_scene.due(scene_clock(captured_at, scene_time)))
        jpeg = encode_jpeg(image) if to_detector and encode_now else None
        return captured_at, scene_time, image, jpeg, problem, to_detector

    def encode_jpeg(image) -> bytes | None:
        ok, jpeg = cv2.imencode(".jpg", image, encode_params)
        return jpeg.tobytes() if ok else None

    def on_delivery(delivery: asyncio.Future) -> None:
        if not delivery.cancelled() and delivery.exception() is not None:
            stats.send_errors += 1
            log.error("camera %s: a frame was not delivered: %s", camera_id, delivery.exception())

    rate = f"{reader.fps:.3g}" if reader.fps else "?"  # 29.97, not 29.97002997002997
    sending = f", sent at {target_fps:.3g} fps" if target_fps and f"{target_fps:.3g}" != rate else ""
    report("started", f"{spec.uri} ({reader.width}x{reader.height} @ {rate} fps{sending})", seq)  # seq: the run's first
    next_slot = time.monotonic()
    stats.stopped_early = True  # until the loop below ends by itself (Ctrl-C, SIGTERM, the owner's stop end it early)
    try:
        while not (stop and stop.is_set()):
            await flush_events()  # first: the drop paths below skip the rest of the loop
            if max_frames is not None and stats.frames_sent >= max_frames:
                break
            holds_credit = False
            if window and not drop_when_busy:
                await window.acquire()  # paced by the pipeline: wait for room before reading
                holds_credit = True
            item = await asyncio.to_thread(next_frame, not may_drop)
            if item is None:
                if holds_credit:
                    window.release()
                break
            captured_at, scene_time, image, jpeg, problem, to_detector = item
            stats.frames_read += 1
            frame_seq, seq = seq, seq + 1
            if interval:
                now = time.monotonic()
                if spec.live and now < next_slot:  # frame-rate control: drop what comes early
                    stats.frames_skipped += 1
                    if holds_credit:
                        window.release()
                    continue
                if now < next_slot:
                    await asyncio.sleep(next_slot - now)
                next_slot = max(next_slot + interval, time.monotonic() - interval)
            if drop_when_busy:
                if not window.try_acquire():  # the pipeline is behind: drop this frame, not queue it
                    stats.frames_skipped += 1
                    continue
                holds_credit = True
            if to_detector and may_drop:  # kept: now it is worth encoding
                jpeg = await asyncio.to_thread(encode_jpeg, image)
            if to_detector and jpeg is None:
                problem, to_detector = "unreadable: JPEG encode failed", False
            at = scene_clock(captured_at, scene_time)
            if problem:
                kind = problem.split(":", 1)[0]
                flagged = flag_reports.hit(kind, at)  # sampled or not, a frozen frame is flagged
                if flagged is not None:
                    if kind == "frozen" and s.frozen_keepalive_s:
                        problem += f" (one frame per {s.frozen_keepalive_s:g} s still goes to the detector)"
                    since = f"; {flagged} frames flagged {kind} since the last report" if flagged > 1 else ""
                    report("frame_rejected", problem + since, frame_seq)
                if kind == "frozen" and to_detector:
                    problem = None  # a still scene is sampled, not left unwatched (frame_quality.StillSceneSampler)
                    stats.frames_sampled += 1
            for other_kind, count, _ in flag_reports.overdue(at):  # the end of a run, once its interval passed
                report("frame_rejected", f"{other_kind}: {count} more frames flagged since the last report")
            if problem:
                stats.frames_rejected += 1
                stats.rejections[kind] = stats.rejections.get(kind, 0) + 1
                if holds_credit:
                    window.release()
            else:
                still_scene.sent(at)
                record = FrameRecord(
                    camera_id=camera_id,
                    seq=frame_seq,
                    captured_at=captured_at,
                    scene_time=None if as_live_source else scene_time,
                    width=image.shape[1],
                    height=image.shape[0],
                    source_fps=reader.fps,
                    jpeg=jpeg,
                )
                delivery = await producer.send(frames_topic, key=key, value=encode(record))
                delivery.add_done_callback(on_delivery)
                stats.frames_sent += 1
                stats.last_seq = frame_seq
                if keep_seqs:
                    stats.sent_seqs.append(frame_seq)
                if on_sent:
                    on_sent(stats)
        stats.stopped_early = bool(stop and stop.is_set())
    finally:
        reader.close()
        sampled = f" ({stats.frames_sampled} of a frozen picture)" if stats.frames_sampled else ""
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(stats.rejections.items()))
        rejected = f"{stats.frames_rejected} rejected" + (f" ({kinds})" if kinds else "")
        stopped = f"{stop_reason}: " if stop and stop.is_set() else "stopped: " if stats.stopped_early else ""
        report("finished", f"{stopped}{stats.frames_sent} frames sent{sampled}, {rejected}", stats.last_seq)

        async def last_words() -> None:
            await flush_events()
            await producer.flush()

        try:  # bounded: against a broker that is gone (stopped under us) these would wait forever
            await asyncio.wait_for(last_words(), LAST_FLUSH_S)
        except asyncio.TimeoutError:
            log.warning("camera %s: the broker took no record for %.0f s; its last frames and events may be lost",
                        camera_id, LAST_FLUSH_S)
        stats.finished_at = time.time()
    return stats
