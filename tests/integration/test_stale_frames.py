"""A live frame that reaches detection too old is shed, reported on ``camera-events``, and nothing else is lost."""

from __future__ import annotations

import asyncio
import time

import cv2

from its_faust.codecs import decode, encode
from its_faust.ingest import make_producer
from its_faust.results import TopicReader
from its_faust.topic_names import CAMERA_EVENTS, DEAD_LETTERS, DETECTIONS, FRAMES
from schemas import CameraEvent, CameraEventKind, DetectionRecord, FrameRecord

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
    await producer.stop()
    for reader in readers.values():
        await reader.stop()
    return got


def test_stale_live_frames_are_shed_and_reported(stack, clip_frames):
    got = asyncio.run(_send_and_collect(stack, clip_frames[0]))
    assert sorted(d.seq for d in got[DETECTIONS] if d.camera_id == CAMERA) == [1, 7, 8]
    shed = [e for e in got[CAMERA_EVENTS] if e.camera_id == CAMERA]
    # The first shed frame is reported at once; the other four wait for the next report, 10 s on
    # (how the counts add up is tested in tests/test_stale_frames.py).
    assert [(e.kind, e.seq, e.frames_shed) for e in shed] == [(CameraEventKind.frames_shed, 2, 1)]
    assert "live frame(s) shed" in shed[0].reason
    assert got[DEAD_LETTERS] == []  # shed is not malformed
