"""Stage 2: detections -> tracks, one ByteTrack actor per camera.

Idempotent by frame seq: a detection whose seq is not above the camera's
``last_seq`` is a redelivery and is skipped (a camera whose frames keep coming far below
it is reported: its producer went back, :mod:`its_faust.seqs_behind`). A camera whose tracks a gap
in its frames restarted is reported too (:mod:`its_faust.track_restarts`). Track records leave with every frame;
the camera's state is written to its table, and the frames acknowledged, at each
flush (:mod:`tables.checkpoints`), once the broker holds the records of those
frames, so a crash can repeat a frame's output (same seq, same content) but never
lose it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from its_faust import topics
from its_faust.app import app, settings
from its_faust.codecs import encode
from its_faust.dead_letters import valid_records
from its_faust.delivery import Acknowledger
from its_faust.seqs_behind import SeqsBehind
from its_faust.stale_frames import StaleFrames
from its_faust.track_restarts import TrackRestarts
from its_faust.worker_status import STOP_REPORT_TIMEOUT_S, WORKER_ID
from schemas import DetectionRecord, TrackRecord
from tables.camera_tracker import CameraTracker
from tables.checkpoints import Checkpoints
from tables.tracker_table import tracker_cache

log = logging.getLogger(__name__)
_behind = SeqsBehind()  # this worker's cameras whose frames keep coming with seqs already passed
_restarts = TrackRestarts()  # this worker's cameras whose tracks a gap restarted
_stale = StaleFrames(settings.tracker.live_max_age_s, stage="track",
                     behind="tracking is behind: a worker lost or joining, the broker away, or this worker's cores not keeping "
                            "up with detection and tracking both")


@app.agent(topics.detections, name="track")
async def track(stream):
    async with (Checkpoints(app, stream, tracker_cache(), "track", interval_s=settings.state_flush_interval_s) as checkpoints,
                Acknowledger(stream, "track") as acks):  # (acknowledges the frames dead-lettered for what they are)
        async for event, det in valid_records(stream, DetectionRecord, acks, ack=False):
            async with checkpoints.step(event) as step:
                try:
                    tracker = step.actor(det.camera_id)
                    if det.seq <= tracker.last_seq:
                        log.debug("track: %s seq %s already applied (last %s), skipped", det.camera_id, det.seq, tracker.last_seq)
                        await topics.send_camera_event(_behind.skipped(det.camera_id, det.seq, tracker.last_seq, time.time()))
                        continue
                    _behind.applied(det.camera_id)
                    now = time.time()
                    why = _stale.to_shed(det, now)
                    if why is not None:  # skipped, it counts as done: tracking catches up with the present
                        await topics.send_camera_event(_stale.shed(det, now, why))
                        continue
                    await topics.send_camera_event(_stale.fresh(det, now))
                    record = _track_one(tracker, det)
                except Exception as exc:  # a bug (or unreadable stored state) must not stop the other cameras
                    log.exception("track: %s seq %s failed", det.camera_id, det.seq)
                    checkpoints.restart_camera(event.key, det.camera_id, _track_one)
                    await step.dead_letter(f"internal error: {exc!r}")
                    continue
                # The message time is the scene's, so windows downstream follow the camera, not the worker clock.
                await step.send(topics.tracks, encode(record), timestamp=det.at)
                step.changed(tracker, det)
                await topics.send_camera_event(_restarts.report(tracker, time.monotonic()))


@app.timer(interval=2.0, name="tracking-shed-reports")
async def _report_overdue() -> None:
    """What is left to report of cameras whose detections were shed and that sent none since, and of restarts
    held back with none told since."""
    for camera_event in _stale.overdue(time.time()) + _restarts.overdue(time.monotonic()):
        await topics.send_camera_event(camera_event)


@app.on_before_shutdown.connect
async def _report_held_back(app, **kwargs) -> None:  # the consumer is stopped; the producer still sends
    """Restarts held back are told before the worker stops: its cameras' next worker knows nothing of them."""
    async def send_all(events) -> None:
        for camera_event in events:
            await topics.send_camera_event(camera_event)
    try:  # bounded: with the broker gone, a send waits for it for ever
        await asyncio.wait_for(send_all(_restarts.held_back(time.monotonic())), STOP_REPORT_TIMEOUT_S)
    except asyncio.TimeoutError:
        log.info("track: the restarts held back were not told within %.0f s (broker away?)", STOP_REPORT_TIMEOUT_S)


def _track_one(tracker: CameraTracker, det: DetectionRecord) -> TrackRecord:
    objects = tracker.update(det.seq, det.boxes, (det.height, det.width), det.at, time.time(), live=det.scene_time is None)
    record = TrackRecord(
        camera_id=det.camera_id,
        seq=det.seq,
        captured_at=det.captured_at,
        scene_time=det.scene_time,
        width=det.width,
        height=det.height,
        detected_at=det.detected_at,
        tracked_at=time.time(),
        tracker_frame=tracker.frame_id,
        model=f"{det.model.name}@{det.model.version}",
        detections=len(det.boxes),
        worker=WORKER_ID,
        objects=objects,
    )
    return record
