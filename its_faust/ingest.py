"""Camera ingest: read a source, check and JPEG-encode frames, produce them to ``frames``.

Frames are keyed by camera id (one camera's frames stay in order on one
partition) and numbered with a per-camera ``seq``. ``seq`` starts at the Unix
time in milliseconds when ingest starts and grows by one per frame read and kept by
the rate asked for (a gap in them is a frame dropped or rejected), so a
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
import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import cv2
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError, RequestTimedOutError

from its_faust.codecs import encode
from its_faust.daemon_thread import DaemonThread
from its_faust.frame_quality import FrameQualityChecker, StillSceneSampler
from its_faust.sources import Backoff, FrameReader, SourceError, SourceSpec
from its_faust.throttle import Throttle
from its_faust.topic_names import CAMERA_EVENTS, FRAMES, MAX_RECORD_BYTES
from schemas import CameraEvent, CameraEventKind, FrameRecord
from schemas.base import scene_clock

log = logging.getLogger(__name__)
LAST_FLUSH_S = 10.0  # how long a camera that stops waits for the broker to take its last records
# A live camera with this long of its frames waiting for the broker drops its next ones (see _Deliveries), at least
# this many waiting; and the broker having taken none of a camera's waiting frames this long is said.
LIVE_WAITING_S = 2.0
LIVE_WAITING_MIN = 10
STALLED_AFTER_S = 5.0
STOP_CHECK_S = 1.0  # a file's frame the broker does not take is offered again this often, the camera's stop looked at


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
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can return, not raise, when cancelled as the
            # credit comes (see api/topic_ring.py), and a stopping camera would wait on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.expire_s):
                    await self._freed.wait()

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
    frames_skipped: int = 0  # left out by frame-rate control (a faster source, a file sampled)
    frames_dropped: int = 0  # a live camera's, while the pipeline was behind (its window full) or the broker took
    # none (unreachable, hung): lost to the counts
    frames_sampled: int = 0  # sent while the picture was frozen (frame_quality.StillSceneSampler); in frames_sent
    last_seq: int | None = None
    sent_seqs: list[int] = field(default_factory=list)  # only with keep_seqs (bounded runs): grows per frame
    send_errors: int = 0  # frames the broker refused
    unconfirmed: int = 0  # frames whose delivery timed out: the broker may have them
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    stopped_early: bool = False  # stopped (Ctrl-C, SIGTERM, the owner's stop) before the source ended
    gave_up: str | None = None  # a live source lost and given up on (its reconnects all failed): why
    ended_short: str | None = None  # a file that ended before the frames it says it has (truncated, damaged)
    rejections: dict[str, int] = field(default_factory=dict)
    frame_size: tuple[int, int] | None = None  # (width, height) of the last frame sent


class ProgressLog:
    """A line every ``every_s`` while a camera sends: frames sent since the last and their rate, rejected, in all.
    A long or looping ``ingest`` said nothing between "started" and "finished" (a CLI review)."""

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.every_s, self.clock = every_s, clock
        self._since, self._sent, self._rejected = clock(), 0, 0

    def __call__(self, stats: IngestStats) -> None:
        now = self.clock()
        if now - self._since < self.every_s:
            return
        sent, rejected = stats.frames_sent - self._sent, stats.frames_rejected - self._rejected
        log.info("camera %s: %d frames sent in the last %.0f s (%.1f fps), %d rejected; %d sent in all",
                 stats.camera_id, sent, now - self._since, sent / (now - self._since), rejected, stats.frames_sent)
        self._since, self._sent, self._rejected = now, stats.frames_sent, stats.frames_rejected


def make_producer(bootstrap: str, **options) -> AIOKafkaProducer:
    """A camera's producer; ``options``: more of aiokafka's (a test's shorter ``request_timeout_ms``)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=2,
        max_request_size=MAX_RECORD_BYTES,
        client_id="its-faust-ingest",
        **options,
    )


class _CameraEvents:
    """The camera's events, in order: the send loop's sent between frames (nothing waits on a send in the middle
    of one); the source's reader's (stream lost, reconnected, gave up) at once, since while the reader tries to
    reconnect the send loop waits on it, and the camera would look fine for as long as it is down."""

    def __init__(self, camera_id: str, producer: AIOKafkaProducer, topic: str, stats: IngestStats):
        self.camera_id, self.producer, self.topic, self.stats = camera_id, producer, topic, stats
        self._pending: list[CameraEvent] = []
        self._sending = asyncio.Lock()  # one flush at a time: events leave in the order they were reported
        self._background: asyncio.Task | None = None

    def report(self, kind: str, reason: str, seq: int | None = None) -> None:
        self._pending.append(CameraEvent(camera_id=self.camera_id, kind=CameraEventKind(kind), at=time.time(), seq=seq,
                                         reason=reason, frames_sent=self.stats.frames_sent))

    def report_now(self, kind: str, reason: str) -> None:
        """A report of the reader's (called in the event loop), sent without waiting for the send loop."""
        self.report(kind, reason)
        if self._background is None or self._background.done():
            self._background = asyncio.ensure_future(self._flush_in_background())

    async def _flush_in_background(self) -> None:
        try:
            await self.flush()
        except Exception as exc:  # the send loop's next flush tries again; nothing awaits this task
            log.warning("camera %s: its events were not sent yet (%r)", self.camera_id, exc)

    async def flush(self) -> None:
        async with self._sending:
            while self._pending:
                event = self._pending[0]
                log.info("camera %s: %s (%s)", self.camera_id, event.kind.value, event.reason)  # frame_rejected: rate-limited
                await self.producer.send(self.topic, key=self.camera_id.encode(), value=encode(event))
                self._pending.pop(0)


async def _first_open(calls: DaemonThread, open_reader, spec: SourceSpec, backoff: Backoff, events: _CameraEvents,
                      stop: asyncio.Event | None) -> FrameReader | None:
    """The source's reader. A network camera that is down at start (rebooting, not up yet when the
    service starts) is tried again like one lost later: reported on camera-events, the same
    ``backoff``. A file or webcam that does not open is an error at once. None when ``stop`` came first."""
    waits = backoff.waits()
    attempt = 0
    while True:
        attempt += 1
        try:
            reader = await calls.run(open_reader, orphan=FrameReader.close)
        except SourceError as exc:
            if not spec.network:
                raise
            if attempt == 1:
                events.report("stream_lost", f"{spec.uri} does not open at start ({exc}); trying again with backoff")
            delay = next(waits, None)
            if delay is None:
                events.report("gave_up", f"{spec.uri} unreachable: {attempt} attempts to open it failed")
                await events.flush()
                raise SourceError(f"{exc} (gave up: {attempt} attempts to open it failed)") from None
            await events.flush()
            log.warning("%s does not open (attempt %d); next try in %.1f s", spec.uri, attempt, delay)
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
                if stop.is_set():
                    return None
            continue
        if attempt > 1:
            events.report("reconnected", f"{spec.uri} open after {attempt} attempts")
        return reader


@dataclass
class _Frame:
    captured_at: float
    scene_time: float | None
    image: object  # BGR pixels
    jpeg: bytes | None  # None until encoded (or when the encode failed)
    problem: str | None  # "kind: detail" of a flagged frame (frame_quality)
    to_detector: bool  # unflagged, or the still scene's sample of a frozen picture

    @property
    def at(self) -> float:
        return scene_clock(self.captured_at, self.scene_time)


LOOPED_PICTURE_FPS = 1.0


class _CheckedFrames:
    """The source's frames, each read and checked in one trip to a thread (OpenCV releases the GIL), and
    JPEG-encoded there when asked; a looped file starts again at its end."""

    def __init__(self, reader: FrameReader, settings, loop_source: bool):
        self.reader, self.loop_source = reader, loop_source
        self.quality = FrameQualityChecker.from_settings(settings)
        self.still_scene = StillSceneSampler(settings.frozen_keepalive_s)
        self._encode_params = [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]
        self._frames = iter(reader)
        self.cannot_loop: str | None = None

    def next(self, encode_now: bool) -> _Frame | None:
        """The next frame, checked (None at the end); its JPEG too when ``encode_now``."""
        item = next(self._frames, None)
        if item is None and self.loop_source and not self.reader.spec.live:
            try:
                self.reader.rewind()
            except SourceError as exc:  # deleted or replaced since: its end, said
                self.cannot_loop = str(exc)
                return None
            self._frames = iter(self.reader)
            item = next(self._frames, None)
        if item is None:
            return None
        image, captured_at, scene_time = item
        problem = self.quality.check(image)
        # A frozen frame due as the still scene's sample goes to the detector too; the loop counts it.
        to_detector = not problem or (problem.startswith("frozen")
                                      and self.still_scene.due(scene_clock(captured_at, scene_time)))
        jpeg = self.encode(image) if to_detector and encode_now else None
        return _Frame(captured_at, scene_time, image, jpeg, problem, to_detector)

    def encode(self, image) -> bytes | None:
        ok, jpeg = cv2.imencode(".jpg", image, self._encode_params)
        return jpeg.tobytes() if ok else None

    def ended_short(self) -> str | None:
        """Said of a file that ended well before the frame count its header gives (truncated, damaged): it
        read as a whole one, ending early with no word. A looped file that could not be opened again, too."""
        if self.cannot_loop:
            return f"could not play it again ({self.cannot_loop})"
        reader = self.reader
        # 10% short at least: a count estimated from duration x fps (webm, variable frame rates) is that far off
        if (reader.spec.live or self.loop_source or not reader.frame_count
                or reader.frames_read >= min(reader.frame_count - 2, 0.9 * reader.frame_count)):
            return None
        return f"the file ended after {reader.frames_read} of the {reader.frame_count} frames it says it has"


class _Pacer:
    """At most one frame per ``interval`` seconds (0: no pacing): a live source's early frames are dropped, a
    file's waited for. A file sent as a live camera at a rate under its own (``sampled``: half its frame period)
    is sampled on its own clock, as a camera at that rate would have filmed its scene: a 30 fps file at --fps 10
    sends one frame in three, in real time. It sent every frame at 10 a second, in slow motion, each stamped as
    it was sent: speeds came out three times too slow, dwell times three times too long."""

    def __init__(self, interval: float, live: bool, sampled: float | None = None):
        self.interval, self.live, self.sampled = interval, live, sampled
        self._next_slot = time.monotonic()
        self._next_position: float | None = None  # the file's own clock
        self._last_position: float | None = None

    async def keep(self, position: float | None = None) -> bool:
        """False: drop the frame just read (it came early, or falls between the samples of a file); True once its
        slot has come. ``position``: the frame's time on the file's own clock (its scene time)."""
        if not self.interval:
            return True
        if self.sampled is not None and position is not None:
            if self._last_position is not None and position < self._last_position:
                self._next_position = None  # played again from its start (--loop)
            self._last_position = position
            if self._next_position is not None and position + self.sampled < self._next_position:
                return False
            self._next_position = max(position, self._next_position or position) + self.interval
        now = time.monotonic()
        if self.live and now < self._next_slot:
            return False
        if now < self._next_slot:
            await asyncio.sleep(self._next_slot - now)
        self._next_slot = max(self._next_slot + self.interval, time.monotonic() - self.interval)
        return True


class _Deliveries:
    """What the broker has taken of a camera's frames, told when it stops taking them and when it takes them again.

    While the broker takes none (unreachable, restarting), sent frames wait in the producer and reach the workers
    late: a live camera's were shed there as a minute old, and the camera said nothing of its own (a trial, an
    embedded broker restarted). A live camera with over ``LIVE_WAITING_S`` of its frames waiting drops its next
    frames instead (counted as dropped), as it does while the pipeline is behind."""

    def __init__(self, camera_id: str, stats: IngestStats, *, live: bool, fps: float | None, camera: bool = False):
        """``live``: its frames are dropped when late; ``camera``: a real camera's (its frames go by as it waits, where
        a file sent as live resumes where it was)."""
        self.camera_id, self.stats = camera_id, stats
        self.waiting = 0
        self.camera = camera
        self.fps = fps or 10.0
        self.limit = max(LIVE_WAITING_MIN, math.ceil(self.fps * LIVE_WAITING_S)) if live else None
        self.last_taken = time.monotonic()
        self.stalled_since: float | None = None
        self.dropped_since_stall = 0

    def sent(self, delivery: asyncio.Future) -> None:
        self.waiting += 1
        delivery.add_done_callback(self._done)

    def _done(self, delivery: asyncio.Future) -> None:
        self.waiting -= 1
        if delivery.cancelled():
            return
        error = delivery.exception()
        if isinstance(error, (RequestTimedOutError, KafkaTimeoutError)):
            # The broker did not answer in time, which does not say it has not stored the frame: after a hang, every
            # frame so "not delivered" was on the topic (a trial).
            self.stats.unconfirmed += 1
            log.warning("camera %s: a frame's delivery was not confirmed: the broker did not answer in time (it may "
                        "have it all the same): %r", self.camera_id, error)
            return
        if error is not None:
            self.stats.send_errors += 1
            log.error("camera %s: a frame was not delivered: %s", self.camera_id, error)
            return
        now = time.monotonic()
        if self.stalled_since is not None:
            log.warning("camera %s: the broker takes its frames again, after %.0f s%s", self.camera_id,
                        now - self.stalled_since,
                        f" ({self.dropped_since_stall} live frames dropped meanwhile)" if self.dropped_since_stall else "")
            self.stalled_since, self.dropped_since_stall = None, 0
        self.last_taken = now

    def not_queued(self, waited_s: float) -> None:
        """A live frame the producer did not take in ``waited_s`` (see :func:`_queue_frame`): dropped; a camera's, with
        the frames it filmed meanwhile (counted as one, a 90 s hang of a 5 fps camera read 43 frames dropped of some
        450). A file sent as live resumes where it was: its one frame."""
        self._dropped(max(1, round(waited_s * self.fps)) if self.camera else 1)

    def _dropped(self, frames: int) -> None:
        if self.stalled_since is None:
            self.dropped_since_stall = 0  # a count from before, never told, is not this stall's
        self.stats.frames_dropped += frames
        self.dropped_since_stall += frames

    def stalled(self) -> None:
        """Says once when the broker has taken none of the camera's frames for ``STALLED_AFTER_S``."""
        now = time.monotonic()
        if self.stalled_since is None and now - self.last_taken > STALLED_AFTER_S:
            self.stalled_since = self.last_taken
            log.warning("camera %s: the broker has taken none of its frames for %.0f s (%d waiting): is it reachable, "
                        "and not hung or overloaded? %s", self.camera_id, now - self.last_taken, self.waiting,
                        f"Live frames are dropped past {LIVE_WAITING_S:g} s of them waiting" if self.limit
                        else "A file's frames wait for it")

    def to_drop(self) -> bool:
        """Whether the next frame is to be dropped (a live camera's, past its limit of frames waiting): counted."""
        if self.waiting:
            self.stalled()
        if self.limit is not None and self.waiting >= self.limit:
            self._dropped(1)
            return True
        return False


class _FlagReports:
    """Flagged frames reported as ``frame_rejected`` events: per kind, in scene time, the first at once and then
    one per ``rejection_report_s`` with a count (:mod:`its_faust.throttle`), not reset by a good frame: a camera
    flipping between blank and fine, or a quiet road frozen between passing cars, is told once per interval,
    not once per flip."""

    def __init__(self, events: _CameraEvents, settings):
        self.events, self.keepalive_s = events, settings.frozen_keepalive_s
        self._throttle: Throttle[str] = Throttle(settings.rejection_report_s)

    def flagged(self, frame: _Frame, seq: int) -> None:
        kind = frame.problem.split(":", 1)[0]
        told = self._throttle.hit(kind, frame.at)  # sampled or not, a frozen frame is flagged
        if told is None:
            return
        problem = frame.problem
        if kind == "frozen" and self.keepalive_s:
            problem += f" (one frame per {self.keepalive_s:g} s still goes to the detector)"
        since = f"; {told} frames flagged {kind} since the last report" if told > 1 else ""
        self.events.report("frame_rejected", problem + since, seq)

    def overdue(self, at: float) -> None:
        """The counts of kinds no longer flagged once their interval has passed: the end of a run is told too."""
        for kind, count, _ in self._throttle.overdue(at):
            self.events.report("frame_rejected", f"{kind}: {count} more frames flagged since the last report")


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
    stats: IngestStats | None = None,
) -> IngestStats:
    """Send ``source``'s frames as camera ``camera_id`` until it ends, ``max_frames`` or ``stop``
    (``stop_reason`` says why in the camera's ``finished`` event). ``stats``: the totals to keep, given
    by a caller that wants them though this is cancelled (Ctrl-C).

    ``live_feed`` replays a file at its own frame rate like a camera would deliver it.
    ``as_live_source``: a file's frames go out as a live camera's, without a scene time, so the
    detection stage sheds those it reaches too late (:mod:`its_faust.stale_frames`) instead of
    queueing them for as long as the pipeline is slower than the file.
    """
    spec = SourceSpec.parse(source)
    frames_topic, key = settings.topic(FRAMES), camera_id.encode()
    seq = int(time.time() * 1000)  # see the module docstring
    stats = stats or IngestStats(camera_id)
    events = _CameraEvents(camera_id, producer, settings.topic(CAMERA_EVENTS), stats)
    s = settings.ingest
    backoff = Backoff.from_settings(s)
    loop = asyncio.get_running_loop()
    open_reader = partial(FrameReader, spec, backoff=backoff,
                          on_event=lambda kind, reason: loop.call_soon_threadsafe(events.report_now, kind, reason))
    calls = DaemonThread(f"camera {camera_id}")
    try:
        reader = await _first_open(calls, open_reader, spec, backoff, events, stop)
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM while the camera was still down: said, as a stop is
        await _never_opened(events, stats, calls)
        raise
    except BaseException:
        calls.close()
        raise
    if reader is None:  # stopped while the camera was still down
        await _never_opened(events, stats, calls)
        return stats
    frames = _CheckedFrames(reader, s, loop_source)
    flags = _FlagReports(events, s)
    # Files are paced at their own fps unless a window (alone) or a target fps says otherwise. A looped file with
    # no rate of its own (a picture) goes at LOOPED_PICTURE_FPS: unpaced, it took a core, every frame rejected as frozen.
    own_fps = reader.fps or (LOOPED_PICTURE_FPS if loop_source else None)
    target_fps = fps or (None if ((window and not live_feed) or spec.live) else own_fps)
    drop_when_busy = window is not None and (live_feed or spec.live)
    interval = 1.0 / target_fps if target_fps else 0.0
    # A frame the loop may still drop (a live camera faster than the target rate, a live feed while the
    # pipeline is behind) is JPEG-encoded only once it is kept: an encode is 0.7 ms of a core at 640x360
    # and ~10 at 1080p, so a 30 fps camera paced to 10 fps wasted two encodes in three. A file paced by
    # the pipeline (or at its own rate) drops nothing: read, check and encode in one trip to the thread.
    # A file sent as a live camera at a rate under its own is sampled on its own clock (see _Pacer), within half a
    # frame. Sent as a file, every frame goes, each with its scene time: analytics run on that, at any pace.
    sampled = 0.5 / own_fps if fps and as_live_source and not spec.live and own_fps and fps < own_fps else None
    may_drop = drop_when_busy or bool(spec.live and interval) or sampled is not None

    # A camera's frames (or a file's played as one): one too late is dropped, not waited for.
    live = spec.live or as_live_source or live_feed
    deliveries = _Deliveries(camera_id, stats, live=live, fps=target_fps or own_fps, camera=spec.live)

    rate = f"{reader.fps:.3g}" if reader.fps else "?"  # 29.97, not 29.97002997002997
    sending = f", sent at {target_fps:.3g} fps" if target_fps and f"{target_fps:.3g}" != rate else ""
    events.report("started", f"{spec.uri} ({reader.width}x{reader.height} @ {rate} fps{sending})", seq)  # the run's first seq
    pacer = _Pacer(interval, spec.live, sampled)
    # ``stop`` while a network camera is down: its reader, retrying in its thread, would keep the loop below
    # waiting on it until its tries ran out (minutes); closed, it stops retrying at once.
    closer = asyncio.ensure_future(_close_when(stop, reader)) if stop is not None else None
    stats.stopped_early = True  # until the loop below ends by itself (Ctrl-C, SIGTERM, the owner's stop end it early)
    try:
        while not (stop and stop.is_set()):
            await events.flush()  # first: the drop paths below skip the rest of the loop
            if max_frames is not None and stats.frames_sent >= max_frames:
                break
            holds_credit = False
            if window and not drop_when_busy:
                await window.acquire()  # paced by the pipeline: wait for room before reading
                holds_credit = True
            frame = await calls.run(frames.next, not may_drop)
            if frame is None:
                if holds_credit:
                    window.release()
                stats.gave_up = reader.gave_up
                # Not when stopped: the stop closes the reader (see _close_when), and a run stopped with Ctrl-C read
                # "the file ended after 141 of the 480 frames it says it has", a damaged file's words.
                stats.ended_short = None if stop and stop.is_set() else frames.ended_short()
                break
            stats.frames_read += 1
            if not await pacer.keep(frame.scene_time):  # frame-rate control: a live source's early frame, a file's sample
                stats.frames_skipped += 1
                if holds_credit:
                    window.release()
                continue
            # Numbered once kept: a frame left out by the rate asked for is no loss, and the seqs of a camera sampled
            # every 4 s follow one another (its pace is learned from such: tables.pace). A frame dropped or rejected
            # from here on leaves a gap in them.
            frame_seq, seq = seq, seq + 1
            if deliveries.to_drop():  # the broker takes none of them now: a live frame would only wait (counted there)
                if holds_credit:
                    window.release()
                continue
            if drop_when_busy:
                if not window.try_acquire():  # the pipeline is behind: drop this frame, not queue it
                    stats.frames_dropped += 1
                    continue
                holds_credit = True
            if frame.to_detector and may_drop:  # kept: now it is worth encoding
                frame.jpeg = await calls.run(frames.encode, frame.image)
            if frame.to_detector and frame.jpeg is None:
                frame.problem, frame.to_detector = "unreadable: JPEG encode failed", False
            problem = frame.problem
            if problem:
                flags.flagged(frame, frame_seq)
                if problem.startswith("frozen") and frame.to_detector:
                    problem = None  # a still scene is sampled, not left unwatched (frame_quality.StillSceneSampler)
                    stats.frames_sampled += 1
            flags.overdue(frame.at)
            if problem:
                kind = problem.split(":", 1)[0]
                stats.frames_rejected += 1
                stats.rejections[kind] = stats.rejections.get(kind, 0) + 1
                if holds_credit:
                    window.release()
                continue
            frames.still_scene.sent(frame.at)
            record = FrameRecord(
                camera_id=camera_id,
                seq=frame_seq,
                # A file sent as a live camera is captured as it is sent: read, then held for its slot by --fps,
                # it went out one interval old, and below 1/3 fps every frame was shed as too old.
                captured_at=time.time() if as_live_source and not spec.live else frame.captured_at,
                scene_time=None if as_live_source else frame.scene_time,
                width=frame.image.shape[1],
                height=frame.image.shape[0],
                source_fps=reader.fps,
                jpeg=frame.jpeg,
            )
            delivery = await _queue_frame(producer, frames_topic, key, encode(record), deliveries, stop)
            if delivery is None:  # live, and the broker takes none now (counted there); or stopped meanwhile
                if holds_credit:
                    window.release()
                continue
            deliveries.sent(delivery)
            stats.frames_sent += 1
            stats.last_seq = frame_seq
            stats.frame_size = (record.width, record.height)
            if keep_seqs:
                stats.sent_seqs.append(frame_seq)
            if on_sent:
                on_sent(stats)
        stats.stopped_early = bool(stop and stop.is_set())
    finally:
        if closer is not None:
            closer.cancel()
        reader.close()
        calls.close()
        await _finish(events, producer, stats, stop, stop_reason)
    return stats


async def _queue_frame(producer: AIOKafkaProducer, topic: str, key: bytes, value: bytes, deliveries: _Deliveries,
                       stop: asyncio.Event | None = None) -> asyncio.Future | None:
    """The frame handed to the producer: its delivery; None for a live frame it did not take within LIVE_WAITING_S,
    or once ``stop`` is set.

    A frame is bigger than the producer's batches, so each is a batch of its own, taken only once the one before
    it has gone out. While the broker did not answer (hung, cut off), the camera so waited in its send, said
    nothing and dropped nothing, and after 40 s the producer's timeout ended it for good (a trial: a broker stopped
    for 90 s; its camera never came back). A live frame now waits at most LIVE_WAITING_S, as one waiting in the
    producer does (:class:`_Deliveries`), and is dropped; a file's waits on, as the file's next frames would, the
    stall told after STALLED_AFTER_S, until the broker takes it or the camera is stopped (a send cut short queues
    nothing: it is sent again whole)."""
    live = deliveries.limit is not None
    started = time.monotonic()
    while not (stop and stop.is_set()):
        try:
            async with asyncio.timeout(LIVE_WAITING_S if live else STOP_CHECK_S):
                return await producer.send(topic, key=key, value=value)
        except (TimeoutError, KafkaTimeoutError):
            deliveries.stalled()
            if live:
                deliveries.not_queued(time.monotonic() - started)
                return None
    return None


async def _never_opened(events: _CameraEvents, stats: IngestStats, calls: DaemonThread) -> None:
    calls.close()
    events.report("finished", "stopped: 0 frames sent (the source never opened)")
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(events.flush(), LAST_FLUSH_S)
    stats.finished_at = time.time()


async def _close_when(stop: asyncio.Event, reader: FrameReader) -> None:
    await stop.wait()
    reader.close()


def undelivered(stats: IngestStats) -> str:
    """`` (12 of them not delivered: ...)`` when the broker did not take some of the frames sent, or did not say
    it had; and the live frames dropped; else empty."""
    said = []
    if stats.send_errors:
        said.append(f"{stats.send_errors} of them not delivered: the broker did not take them, see the log")
    if stats.unconfirmed:
        said.append(f"{stats.unconfirmed} of them not confirmed: the broker did not answer in time, it may have them")
    dropped = f", {stats.frames_dropped} dropped (the pipeline or the broker behind)" if stats.frames_dropped else ""
    return (f" ({'; '.join(said)})" if said else "") + dropped


async def _finish(events: _CameraEvents, producer: AIOKafkaProducer, stats: IngestStats, stop: asyncio.Event | None,
                  stop_reason: str) -> None:
    """The camera's ``finished`` event, with its totals and why it stopped; then what it sent, delivered (bounded:
    against a broker that is gone, stopped under us, this would wait for ever)."""
    sampled = f" ({stats.frames_sampled} of a frozen picture)" if stats.frames_sampled else ""
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(stats.rejections.items()))
    rejected = f"{stats.frames_rejected} rejected" + (f" ({kinds})" if kinds else "")
    stopped = f"{stop_reason}: " if stop and stop.is_set() else "stopped: " if stats.stopped_early else ""
    ended = f"gave up ({stats.gave_up}): " if stats.gave_up else f"{stats.ended_short}: " if stats.ended_short else ""
    events.report("finished", f"{stopped}{ended}{stats.frames_sent} frames sent{sampled}{undelivered(stats)}, "
                  f"{rejected}", stats.last_seq)

    async def last_words() -> None:
        await events.flush()
        await producer.flush()

    try:
        await asyncio.wait_for(last_words(), LAST_FLUSH_S)
    except asyncio.TimeoutError:
        log.warning("camera %s: the broker took no record for %.0f s; its last frames and events may be lost",
                    stats.camera_id, LAST_FLUSH_S)
    stats.finished_at = time.time()
