"""Stage 1: frames -> detections.

Gathers up to ``model.batch_size`` frames (across cameras) or waits at most
``model.batch_wait_ms``, runs one batched YOLO11 inference in a worker thread
(the event loop keeps fetching meanwhile) and emits one detection record per frame.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from its_faust import topics
from its_faust.app import app, settings
from its_faust.codecs import SchemaError, decode, encode
from its_faust.dead_letters import dead_letter
from its_faust.detector import Detector, UnreadableImage, decode_jpeg
from schemas import DetectionRecord, FrameRecord

log = logging.getLogger(__name__)

_PARALLEL, _ = settings.model.inference_parallelism()
_executor = ThreadPoolExecutor(max_workers=_PARALLEL, thread_name_prefix="detect")
_detector: Detector | None = None


_detector_lock = threading.Lock()


def get_detector() -> Detector:
    """The worker's one detector, built on first use; the start-up task and the first batch may race here."""
    global _detector
    with _detector_lock:
        if _detector is None:
            detector = Detector.from_settings(settings)
            detector.warmup()
            _detector = detector
    return _detector


def _decode_all(frames: list[FrameRecord]) -> list:
    """JPEG bytes -> images, or the error for frames that do not decode."""
    out = []
    for frame in frames:
        try:
            out.append(decode_jpeg(frame.jpeg))
        except UnreadableImage as exc:
            out.append(exc)
    return out


def _detect(frames: list[FrameRecord]):
    images = _decode_all(frames)
    good = [i for i, im in enumerate(images) if not isinstance(im, Exception)]
    results = get_detector().detect([images[i] for i in good]) if good else []
    by_index = dict(zip(good, results))
    return [by_index.get(i, images[i]) for i in range(len(frames))]


async def _detect_parallel(frames: list[FrameRecord]) -> list:
    """Split the batch over the executor's threads (CPU backends), keeping frame order."""
    loop = asyncio.get_running_loop()
    # Never build the detector on the event loop (seconds of ORT set-up would stall heartbeats).
    detector = await loop.run_in_executor(_executor, get_detector)
    parts = _PARALLEL if detector.backend.concurrent else 1
    size = -(-len(frames) // parts)
    chunks = [frames[i : i + size] for i in range(0, len(frames), size)]
    done = await asyncio.gather(*(loop.run_in_executor(_executor, _detect, chunk) for chunk in chunks))
    return [result for chunk in done for result in chunk]


@app.task
async def _load_detector() -> None:
    """Load (and, the first time, export) the model in a thread at worker start, not on the first batch."""
    await asyncio.get_running_loop().run_in_executor(_executor, get_detector)


@app.agent(topics.frames, name="detect")
async def detect(stream):
    wait_s = settings.model.batch_wait_ms / 1000
    async for events in stream.take_events(settings.model.batch_size, within=wait_s):
        frames, frame_events = [], []
        for event in events:
            try:
                frame = decode(FrameRecord, event.value)
            except SchemaError as exc:
                await dead_letter("detect", event, str(exc))
                continue
            if event.key != frame.camera_id.encode():
                await dead_letter("detect", event, f"key {event.key!r} is not the record's camera_id {frame.camera_id!r}")
                continue
            frames.append(frame)
            frame_events.append(event)
        if not frames:
            continue
        started = time.perf_counter()
        try:
            results = await _detect_parallel(frames)
        except Exception as exc:  # keep the batch's input and keep going
            log.exception("detect: batch of %d failed", len(frames))
            for event in frame_events:
                await dead_letter("detect", event, f"internal error: {exc!r}")
            continue
        detector = get_detector()
        now = time.time()
        log.debug("detect: batch of %d in %.1f ms", len(frames), (time.perf_counter() - started) * 1000)
        for frame, event, result in zip(frames, frame_events, results):
            if isinstance(result, Exception):
                await dead_letter("detect", event, str(result))
                continue
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
            # Not awaited: Faust flushes the producer before it commits the frames' offsets,
            # so a crash before delivery means the frames are redelivered, never lost.
            await topics.detections.send(key=event.key, value=encode(record))
