"""Stage 1: frames -> detections.

Frames are taken in batches across cameras (at most ``model.batch_size`` frames, or
what arrived within ``model.batch_wait_ms``) and each batch is one inference call in a
worker thread. Up to ``model.parallel`` calls run at once, so the next frames are
decoded and inferred while earlier ones finish (on a CPU each call is one
single-threaded ONNX Runtime run; on a GPU the device runs one call at a time while
the next batch is being decoded). Results leave in the order the frames came, so a
camera's frames never overtake each other, and a frame's offset is acknowledged only
after the broker holds its detection record (:mod:`its_faust.delivery`). A live frame that arrives
too old to matter is shed before decoding and reported (:mod:`its_faust.stale_frames`).
A removed camera's frames are dead-lettered (its configuration, in the ``camera-config`` table,
is on this worker with the camera's frames): nothing of it should be counted or kept any more,
and the dead letter tells a producer that still sends them why.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from faust.types import EventT

from its_faust import topics
from its_faust.app import app, settings
from its_faust.background import tied_to_current_task
from its_faust.clock_ahead import ClockAhead
from its_faust.codecs import SchemaError, decode_keyed, encode
from its_faust.delivery import Acknowledger
from its_faust.detector import Detector, UnreadableImage, decode_jpeg
from its_faust.fair_share import FairShare
from its_faust.in_order import InOrderJobs
from its_faust.intake import Intake
from its_faust.stale_frames import StaleFrames
from its_faust.throttle import Throttle
from schemas import DetectionRecord, FrameRecord, ModelInfo
from schemas.control import CameraConfig
from tables.config_table import current_config

log = logging.getLogger(__name__)

_PARALLEL, _ = settings.model.inference_parallelism()
_executor = ThreadPoolExecutor(max_workers=_PARALLEL, thread_name_prefix="detect")
_detector: Detector | None = None
_detector_lock = threading.Lock()
_stale = StaleFrames(settings.model.live_frame_max_age_s, fair_share=FairShare())  # every live camera its share
_clock_ahead = ClockAhead()  # live cameras whose frames are dated ahead of this worker's clock
# A removed camera's frames sent until its removal (or this long after: its producer stopping, ingest within a
# second or two) are what the removal left over; those sent later are a producer's that was not told. (Sent by the
# producer's clock, removed by the commanding host's: a producer this far behind has its later frames dropped
# too, said once a minute in the log rather than dead-lettered.)
LEFT_OVER_AFTER_REMOVAL_S = 5.0
_left_over: Throttle[str] = Throttle(60.0, keep=1000)  # said once a minute per camera at most


def get_detector() -> Detector:
    """The worker's one detector, built on first use; the start-up task and the first batch may race here."""
    global _detector
    with _detector_lock:
        if _detector is None:
            detector = Detector.from_settings(settings)
            detector.warmup()
            _detector = detector
    return _detector


def loaded_model() -> ModelInfo | None:
    """The model of the detector, if it is built (for the worker's status reports; never builds it)."""
    return _detector.model_info if _detector is not None else None


def _detect(frames: list[FrameRecord]) -> list:
    """One inference call on a batch; per frame its detections, or the error for a frame that does not decode
    (or that the model failed on alone)."""
    images: list = []
    for frame in frames:
        try:
            images.append(decode_jpeg(frame.jpeg, (frame.width, frame.height)))
        except UnreadableImage as exc:
            images.append(exc)
    good = [i for i, im in enumerate(images) if not isinstance(im, Exception)]
    by_index = dict(zip(good, _infer([images[i] for i in good]))) if good else {}
    return [by_index.get(i, images[i]) for i in range(len(frames))]


def _infer(images: list) -> list:
    """The detections of each image; when the batch's call fails, each image's alone, or its error: the
    frames of the other cameras in a batch are not lost with one that the model cannot take."""
    detector = get_detector()
    try:
        return detector.detect(images)
    except Exception as exc:
        if len(images) == 1:
            return [exc]  # (the batch's frames that did not decode keep their own reasons)
        log.warning("detect: a batch of %d failed (%r): detecting its frames one at a time", len(images), exc)
    results: list = []
    for image in images:
        try:
            results.append(detector.detect([image])[0])
        except Exception as exc:
            results.append(exc)
    return results


@app.task
async def _load_detector() -> None:
    """Load (and, the first time, export) the model in a thread at worker start, not on the first batch."""
    await asyncio.get_running_loop().run_in_executor(_executor, get_detector)


async def _frame_of(acks: Acknowledger, intake: Intake, event: EventT) -> FrameRecord | None:
    """The event's frame; None for what is not one or is a removed camera's (dead-lettered and acknowledged),
    a stale live frame (shed and acknowledged) or a frame whose turn it is not."""
    if not await intake.admit(event):
        return None  # out of order or a copy: released, it comes again (or came already)
    try:
        frame = decode_keyed(FrameRecord, event.key, event.value)
    except SchemaError as exc:
        await acks.dead_letter(event, str(exc))
        acks.done(event)
        return None
    removal = _removal(event.key)
    if removal is not None:
        sent_at = event.message.timestamp or frame.captured_at
        if sent_at <= removal.updated_at + LEFT_OVER_AFTER_REMOVAL_S:
            # Sent as the camera was removed, and on its way: what a removal leaves over, not bad input (every
            # removal of a live camera dead-lettered up to a hundred of them, and fired the dead-letter alarm).
            if _left_over.hit(frame.camera_id, time.monotonic(), "") is not None:
                log.info("detect: camera %r was removed: its frames sent until then are dropped", frame.camera_id)
        else:
            await acks.dead_letter(event, f"camera {frame.camera_id!r} was removed: its frames are not processed "
                                          f"(`its-faust cameras add {frame.camera_id}` takes them again)")
        acks.done(event)
        return None
    now = time.time()
    why = _stale.to_shed(frame, now)
    if why is not None:
        await topics.send_camera_event(_stale.shed(frame, now, why))
        acks.done(event)
        return None
    await topics.send_camera_event(_stale.fresh(frame, now))
    await topics.send_camera_event(_clock_ahead.check(frame, now))
    return frame


def _removal(key: bytes) -> CameraConfig | None:
    """The camera's configuration if it was removed (and not added again), else None."""
    try:
        config = current_config(key)
    except SchemaError as exc:  # a configuration this worker cannot read (a newer version's): not its to judge
        log.debug("detect: camera %r: configuration not readable (%s)", key, exc)
        return None
    return config if config is not None and config.removed else None


@app.timer(interval=2.0, name="shed-frames-reports")
async def _report_overdue() -> None:
    """What is left to report of cameras that stopped shedding and sent no frame since (:mod:`its_faust.stale_frames`)."""
    for camera_event in _stale.overdue(time.time()):
        await topics.send_camera_event(camera_event)


async def _emit_in_order(acks: Acknowledger, jobs: InOrderJobs) -> None:
    """Send each batch's detections as its turn comes; its frames are acknowledged once they are delivered."""
    async for (frames, events), results in jobs.results():
        detector = get_detector()
        now = time.time()
        if isinstance(results, Exception):  # keep the batch's input and keep going
            log.error("detect: batch of %d failed: %r", len(frames), results)
            results = [results] * len(frames)
        for frame, event, result in zip(frames, events, results):
            if event.message.generation_id != app.consumer_generation_id:
                # Read before a rebalance: the new generation reads it again from the committed offset (here or on
                # the partition's new owner), and a late copy from here (a worker that stalled past its session
                # timeout) could land after the new owner's later frames.
                acks.done(event)  # (an old generation's acknowledgement does not count)
                continue
            if isinstance(result, Exception):
                reason = str(result) if isinstance(result, UnreadableImage) else f"internal error: {result!r}"
                await acks.dead_letter(event, reason)
            else:
                record = DetectionRecord(
                    camera_id=frame.camera_id,
                    seq=frame.seq,
                    captured_at=frame.captured_at,
                    scene_time=frame.scene_time,
                    width=frame.width,
                    height=frame.height,
                    detected_at=now,
                    model=detector.model_info,
                    inference_ms=result.inference_ms,
                    batch_size=result.batch_size,
                    boxes=result.boxes,
                )
                await acks.send(event, topics.detections, encode(record))
            acks.done(event)


@app.agent(topics.frames, name="detect")
async def detect(stream):
    loop = asyncio.get_running_loop()
    # Never build the detector on the event loop (seconds of ORT set-up would stall heartbeats).
    detector = await loop.run_in_executor(_executor, get_detector)
    batch_size = settings.model.frames_per_call(detector.backend.device)
    intake = Intake.for_stream(app, "detect", stream)
    # Frames are acknowledged by hand, once their detections (or dead letters) are delivered, or where
    # they are shed (:mod:`its_faust.delivery`). One frame per call (a CPU): the stream is iterated directly, without
    # the timers and background tasks of a batching take (0.3 ms less event-loop CPU per frame,
    # about +2% fps in 4 paired runs on 2 cores); more frames per call: a take that gathers them.
    stream = stream.noack() if batch_size == 1 else stream
    # One call more than there are slots: it waits in the executor's queue, so a slot that finishes
    # starts the next frame at once instead of waiting for the event loop to hand it one (on 2 busy
    # cores that wait left them idle: +2.5% fps, median of 6 paired runs, for one frame of latency).
    jobs: InOrderJobs = InOrderJobs(limit=_PARALLEL + 1)
    async with Acknowledger(stream, "detect") as acks:
        # If the emitter fails (the producer refused a record), the agent must fail with it: its frames
        # stay unacknowledged, Faust restarts the agent, and the new intake re-reads them in order.
        emitter = tied_to_current_task(_emit_in_order(acks, jobs), "detect: sending detections")
        try:
            async for events in _unacked_batches(stream, batch_size):
                frames, kept = [], []
                for event in events:
                    frame = await _frame_of(acks, intake, event)
                    if frame is not None:
                        frames.append(frame)
                        kept.append(event)
                if frames:
                    await jobs.submit(partial(loop.run_in_executor, _executor, _detect, frames), (frames, kept))
        finally:
            emitter.cancel()


async def _unacked_batches(stream, batch_size: int):
    """Lists of frame events, left unacknowledged (see ``detect``)."""
    if batch_size == 1:
        async for event in stream.events():
            yield [event]
    else:
        async for events in stream.noack_take(batch_size, within=settings.model.batch_wait_ms / 1000):
            yield events
