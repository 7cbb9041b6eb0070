"""A live frame that reaches detection too old is shed, reported on ``camera-events``, and nothing else is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import cv2

from its_faust.codecs import decode, encode
from its_faust.ingest import ingest, make_producer
from its_faust.results import TrackFeed
from its_faust.topic_reader import TopicReader
from its_faust.topic_names import CAMERA_EVENTS, DEAD_LETTERS, DETECTIONS, FRAMES, TRACKS
from schemas import CameraEvent, CameraEventKind, DetectionRecord, FrameRecord, ModelInfo, TrackRecord

CAMERA = "cam-stale"


async def _send_and_collect(stack, image):
    settings = stack.settings
    key = CAMERA.encode()
    readers = {name: await TopicReader(stack.bootstrap, settings.topic(name), keys=[key]).start()
               for name in (DETECTIONS, CAMERA_EVENTS, DEAD_LETTERS)}
    producer = make_producer(stack.bootstrap)
    await producer.start()
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    limit = settings.model.live_frame_max_age_s

    def frame(seq: int, age_s: float, scene_time: float | None = None) -> bytes:
        return encode(FrameRecord(camera_id=CAMERA, seq=seq, captured_at=time.time() - age_s, scene_time=scene_time,
                                  width=image.shape[1], height=image.shape[0], jpeg=jpeg))

    plan = [frame(1, 0)]  # fresh
    plan += [frame(seq, limit + 30) for seq in range(2, 7)]  # a live backlog, long stale
    plan += [frame(7, 0), frame(8, limit + 30, scene_time=8.0)]  # fresh again; an old frame of a file
    for payload in plan:
        await producer.send_and_wait(settings.topic(FRAMES), payload, key=key)
    got = {name: [] for name in readers}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        {d.seq for d in got[DETECTIONS]} >= {1, 7, 8} and got[CAMERA_EVENTS]
    ):
        for name, record_type in ((DETECTIONS, DetectionRecord), (CAMERA_EVENTS, CameraEvent), (DEAD_LETTERS, None)):
            for message in await readers[name].poll(100):
                got[name].append(decode(record_type, message.value) if record_type else message)
    await asyncio.sleep(1.0)  # anything that would wrongly follow (a shed frame detected after all)
    got[DETECTIONS] += [decode(DetectionRecord, m.value) for m in await readers[DETECTIONS].poll(500)]
    # The camera sends nothing more: what is left to report goes out once a period (10 s) has passed.
    deadline = time.monotonic() + 20
    while sum(e.frames_shed for e in got[CAMERA_EVENTS]) < 5 and time.monotonic() < deadline:
        got[CAMERA_EVENTS] += [decode(CameraEvent, m.value) for m in await readers[CAMERA_EVENTS].poll(200)]
    await producer.stop()
    for reader in readers.values():
        await reader.stop()
    return got


def test_stale_live_frames_are_shed_and_reported(stack, clip_frames):
    got = asyncio.run(_send_and_collect(stack, clip_frames[0]))
    assert sorted(d.seq for d in got[DETECTIONS] if d.camera_id == CAMERA) == [1, 7, 8]
    # (The file's frame, dated in 1970 on the same camera, also restarts its tracks: tracks_restarted.)
    shed = [e for e in got[CAMERA_EVENTS] if e.camera_id == CAMERA and e.kind == CameraEventKind.frames_shed]
    # The first shed frame is reported at once; the other four once none has been shed for 10 s, though the
    # camera sent nothing since (how the counts add up is tested in tests/test_stale_frames.py).
    assert [(e.kind, e.seq, e.frames_shed) for e in shed] == [(CameraEventKind.frames_shed, 2, 1),
                                                              (CameraEventKind.frames_shed, 6, 4)]
    assert "live frame(s) shed" in shed[0].reason and "none shed in the" in shed[1].reason
    assert got[DEAD_LETTERS] == []  # shed is not malformed


def test_stale_live_detections_are_shed_by_tracking_and_reported(stack):
    """Tracking behind for good (the cores cannot keep up with detection and tracking both): a live frame's
    detections older than tracker.live_max_age_s are shed there, so it catches up; a file's never are."""
    settings, camera = stack.settings, "cam-stale-track"
    limit = settings.tracker.live_max_age_s

    def detection(seq: int, age_s: float, scene_time: float | None = None) -> bytes:
        return encode(DetectionRecord(camera_id=camera, seq=seq, captured_at=time.time() - age_s, scene_time=scene_time,
                                      width=640, height=360, detected_at=time.time(), inference_ms=1.0, batch_size=1,
                                      model=ModelInfo(name="m", version="1", backend="onnxruntime"), boxes=[]))

    async def go():
        key = camera.encode()
        tracks = await TopicReader(stack.bootstrap, settings.topic(TRACKS), keys=[key]).start()
        events = await TopicReader(stack.bootstrap, settings.topic(CAMERA_EVENTS), keys=[key]).start()
        producer = make_producer(stack.bootstrap)
        await producer.start()
        for payload in [detection(1, 0), *(detection(seq, limit + 30) for seq in (2, 3, 4)), detection(5, 0),
                        detection(6, limit + 30, scene_time=time.time() - limit - 30)]:
            await producer.send_and_wait(settings.topic(DETECTIONS), payload, key=key)
        got, shed = set(), []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (got >= {1, 5, 6} and shed):
            got |= {decode(TrackRecord, m.value).seq for m in await tracks.poll(100)}
            shed += [e for e in (decode(CameraEvent, m.value) for m in await events.poll(100)) if e.camera_id == camera]
        await asyncio.sleep(1.0)
        got |= {decode(TrackRecord, m.value).seq for m in await tracks.poll(300)}
        await producer.stop()
        await tracks.stop()
        await events.stop()
        return got, shed

    got, shed = asyncio.run(go())
    assert got == {1, 5, 6}
    assert shed[0].kind == CameraEventKind.frames_shed and shed[0].seq == 2 and "tracking is behind" in shed[0].reason


async def _live_camera_through_a_stall(stack, url: str, stall_s: float):
    settings = stack.settings
    camera, key = "cam-live-stall", b"cam-live-stall"
    feed = await TrackFeed(stack.bootstrap, settings, cameras=[camera]).start()
    events = await TopicReader(stack.bootstrap, settings.topic(CAMERA_EVENTS), keys=[key]).start()
    producer = make_producer(stack.bootstrap)
    await producer.start()
    stop, camera_events_seen = asyncio.Event(), []
    sender = asyncio.create_task(ingest(url, camera, producer, settings, stop=stop, keep_seqs=True))

    async def poll_for(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            await feed.poll(100)
            camera_events_seen.extend(e for e in (decode(CameraEvent, m.value) for m in await events.poll(50))
                                      if e.camera_id == camera)  # (the reader reads its partition: other cameras too)

    while len(feed.seen) < 30:  # running live, tracks coming
        await poll_for(0.5)
    worker = stack.workers[0].proc
    stalled_at = time.time()
    os.kill(worker.pid, signal.SIGSTOP)  # the worker stalls (a long GC pause, a VM freeze) while the camera goes on
    try:
        await asyncio.sleep(stall_s)
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    resumed_at = time.time()
    await poll_for(14.0)  # past the 10 s report period, so the last shed count is reported too
    caught_up = [r.tracked_at - r.captured_at for r in feed.seen.values() if r.captured_at > time.time() - 3]
    stop.set()
    stats = await sender
    await poll_for(4.0)  # the last frames sent
    await producer.stop()
    await events.stop()
    await feed.stop()
    return stats, feed.seen, camera_events_seen, stalled_at, resumed_at, caught_up


def test_a_stalled_worker_sheds_a_live_backlog_and_catches_up(stack, clip_frames, mjpeg_camera):
    live = mjpeg_camera([cv2.imencode(".jpg", f)[1].tobytes() for f in clip_frames[:150]], fps=15)
    stall_s = 7.0
    stats, seen, camera_events_seen, stalled_at, resumed_at, caught_up = asyncio.run(
        _live_camera_through_a_stall(stack, live.url, stall_s))
    shed = sum(e.frames_shed for e in camera_events_seen if e.kind == CameraEventKind.frames_shed)
    restarted = [e for e in camera_events_seen if e.kind == CameraEventKind.tracks_restarted]
    limit = stack.settings.model.live_frame_max_age_s
    # Frames that waited longer than the limit were shed: about (stall - limit) s of the camera's 15 fps.
    assert shed >= (stall_s - limit - 1.5) * 15
    # Nothing else is lost: each frame sent is tracked once or counted as shed.
    assert len(seen) + shed == stats.frames_sent and stats.send_errors == 0
    # Caught up with the present: the last seconds' frames are tracked well within the limit.
    assert caught_up and max(caught_up) < limit / 2
    # The tracker saw a gap of more than max_gap_s: the tracks after it are new ones, ids counting on.
    before = {o.track_id for r in seen.values() if r.captured_at < stalled_at for o in r.objects}
    after = {o.track_id for r in seen.values() if r.captured_at > resumed_at - limit + 1 for o in r.objects}
    assert before and after and min(after) > max(before)
    assert len(restarted) == 1 and "tracks dropped, the vehicles in view get new ids" in restarted[0].reason  # and why


async def _seqs_gone_back(stack, image):
    """A camera's producer sends frames, then starts its seqs again at 0 (as a restarted client might)."""
    settings = stack.settings
    camera = "cam-seq-back"
    key = camera.encode()
    feed = await TrackFeed(stack.bootstrap, settings, cameras=[camera]).start()
    events = await TopicReader(stack.bootstrap, settings.topic(CAMERA_EVENTS), keys=[key]).start()
    producer = make_producer(stack.bootstrap)
    await producer.start()
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()

    def frame(seq: int) -> bytes:
        return encode(FrameRecord(camera_id=camera, seq=seq, captured_at=time.time(), width=image.shape[1],
                                  height=image.shape[0], jpeg=jpeg))

    tracked, reports = [], []
    for seq in [*range(5000, 5010), *range(0, 90)]:  # then 90 frames at 15 fps, all at or below 5009
        await producer.send_and_wait(settings.topic(FRAMES), frame(seq), key=key)
        tracked += [r.seq for r in await feed.poll(1) if r.camera_id == camera]
        await asyncio.sleep(1 / 15)
    deadline = time.monotonic() + 30
    while not reports and time.monotonic() < deadline:
        tracked += [r.seq for r in await feed.poll(100) if r.camera_id == camera]
        reports += [decode(CameraEvent, m.value) for m in await events.poll(100)]
    await producer.stop()
    await feed.stop()
    await events.stop()
    return tracked, reports


def test_a_camera_whose_seqs_went_back_is_reported_not_silently_dropped(stack, clip_frames):
    """The tracker skips seqs it has passed (redeliveries); a producer that started again from 0 used to
    lose every frame without a word."""
    tracked, reports = asyncio.run(_seqs_gone_back(stack, clip_frames[0]))
    assert sorted(set(tracked)) == list(range(5000, 5010))  # idempotent: the lower seqs are not tracked
    (report,) = [e for e in reports if e.kind is CameraEventKind.seqs_behind]
    assert "had seqs at or below the last tracked one (5009" in report.reason and report.seq >= 49
