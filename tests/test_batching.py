"""Batching across cameras: one step takes frames of any sizes and gives each frame its own boxes."""

import asyncio

import cv2
import numpy as np

from its_faust.codecs import decode, encode
from schemas import FrameRecord


def test_mixed_sizes_are_grouped_and_keep_order(detector, clip_frames):
    small = cv2.resize(clip_frames[50], (320, 180))
    tall = cv2.copyMakeBorder(clip_frames[60], 0, 120, 0, 0, cv2.BORDER_CONSTANT)  # 640x480: another letterbox shape
    batch = [clip_frames[10], small, tall, clip_frames[20]]
    together = detector.detect(batch)
    alone = [detector.detect([im])[0] for im in batch]
    assert [r.batch_size for r in together] == [4, 4, 4, 4]
    for t, a in zip(together, alone):
        assert len(t.boxes) == len(a.boxes)
        np.testing.assert_allclose(
            [[b.x1, b.y1, b.x2, b.y2] for b in t.boxes], [[b.x1, b.y1, b.x2, b.y2] for b in a.boxes], atol=0.5
        )


def test_batch_is_split_over_parallel_calls_in_frame_order(monkeypatch, clip_frames):
    import agents.detect as detect

    calls = []
    real = detect._detect

    def spy(frames):
        calls.append([f.seq for f in frames])
        return real(frames)

    monkeypatch.setattr(detect, "_detect", spy)
    monkeypatch.setattr(detect, "_PARALLEL", 2)
    frames = []
    for seq, image in enumerate(clip_frames[:5]):
        ok, jpeg = cv2.imencode(".jpg", image)
        frames.append(FrameRecord(camera_id=f"cam-{seq % 2}", seq=seq, captured_at=0, width=640, height=360, jpeg=jpeg.tobytes()))
    frames.append(FrameRecord(camera_id="cam-9", seq=99, captured_at=0, width=640, height=360, jpeg=b"not a jpeg"))
    results = asyncio.run(detect._detect_parallel(frames))
    assert sorted(calls) == [[0, 1, 2], [3, 4, 99]]
    assert len(results) == 6
    assert all(len(r.boxes) > 0 for r in results[:5])
    assert isinstance(results[5], Exception) and "decodable" in str(results[5])


def test_frame_records_survive_the_wire(clip_frames):
    ok, jpeg = cv2.imencode(".jpg", clip_frames[0])
    record = FrameRecord(camera_id="cam-1", seq=1, captured_at=0, width=640, height=360, jpeg=jpeg.tobytes())
    image = cv2.imdecode(np.frombuffer(decode(FrameRecord, encode(record)).jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (360, 640, 3)
