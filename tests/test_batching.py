"""Batching across cameras: one call takes frames of any sizes and gives each frame its own boxes, in order."""

import asyncio
from types import SimpleNamespace

import cv2
import numpy as np

from its_faust.codecs import decode, encode
from schemas import FrameRecord, ModelInfo


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


def test_one_call_per_batch_keeps_frame_order_and_flags_undecodable_frames(clip_frames):
    import agents.detect as detect

    frames = []
    for seq, image in enumerate(clip_frames[:3]):
        ok, jpeg = cv2.imencode(".jpg", image)
        frames.append(FrameRecord(camera_id=f"cam-{seq}", seq=seq, captured_at=0, width=640, height=360, jpeg=jpeg.tobytes()))
    frames.insert(1, FrameRecord(camera_id="cam-9", seq=99, captured_at=0, width=640, height=360, jpeg=b"not a jpeg"))
    results = detect._detect(frames)
    assert len(results) == 4
    assert isinstance(results[1], Exception) and "decodable" in str(results[1])
    good = [results[0], results[2], results[3]]
    assert all(len(r.boxes) > 0 and r.batch_size == 3 for r in good)  # the three good frames were one call
    alone = detect._detect(frames[2:3])[0]
    assert [b.model_dump() for b in results[2].boxes] == [b.model_dump() for b in alone.boxes]


def test_a_batch_the_model_fails_on_is_detected_frame_by_frame_so_only_the_bad_frame_is_lost(monkeypatch, clip_frames):
    """A backend error on one frame (or a passing one, a GPU out of memory) failed the whole batch: every
    camera's frames in it were dead-lettered as "internal error". Now each frame is tried alone."""
    import agents.detect as detect
    from its_faust.detector import FrameDetections

    class Model:
        calls: list[int] = []

        def detect(self, images):
            self.calls.append(len(images))
            if any(im[0, 0, 0] == 255 for im in images):  # the model cannot take this one
                raise RuntimeError("CUDA out of memory")
            return [FrameDetections([], 1.0, len(images)) for _ in images]

    monkeypatch.setattr(detect, "get_detector", lambda: Model())
    images = [clip_frames[0].copy() for _ in range(3)]
    images[1][0, 0] = 255
    frames = [FrameRecord(camera_id=f"cam-{i}", seq=i, captured_at=0, width=640, height=360,
                          jpeg=cv2.imencode(".png", im)[1].tobytes()) for i, im in enumerate(images)]
    results = detect._detect(frames)
    assert Model.calls == [3, 1, 1, 1]
    assert [type(r).__name__ for r in results] == ["FrameDetections", "RuntimeError", "FrameDetections"]
    # A frame that does not decode keeps its own reason beside one the model fails on alone.
    broken = frames[0].model_copy(update={"jpeg": b"not an image"})
    assert [type(r).__name__ for r in detect._detect([broken, frames[1]])] == ["UnreadableImage", "RuntimeError"]


def test_detections_of_frames_read_before_a_rebalance_are_not_sent(monkeypatch):
    """A worker stalled out of the group finishes a batch after its partitions moved: those frames are the new
    owner's to detect, and a late copy from here could land after the new owner's later frames."""
    import agents.detect as detect
    from its_faust.detector import FrameDetections

    sent, done = [], []

    class Acks:
        async def send(self, event, topic, value):
            sent.append(event.message.offset)

        def done(self, event):
            done.append(event.message.offset)

    class Jobs:
        async def results(self):
            frames = [FrameRecord(camera_id="cam-1", seq=i, captured_at=0, width=640, height=360, jpeg=b"x")
                      for i in range(2)]
            events = [SimpleNamespace(message=SimpleNamespace(offset=i, generation_id=i + 1)) for i in range(2)]
            yield (frames, events), [FrameDetections([], 1.0, 2)] * 2

    monkeypatch.setattr(detect, "app", SimpleNamespace(consumer_generation_id=2))
    model = ModelInfo(name="m", version="1", backend="onnxruntime")
    monkeypatch.setattr(detect, "get_detector", lambda: SimpleNamespace(model_info=model))
    asyncio.run(detect._emit_in_order(Acks(), Jobs()))
    assert sent == [1] and done == [0, 1]  # the old generation's frame: released, not sent


def test_jobs_overlap_but_results_keep_submission_order():
    from its_faust.in_order import InOrderJobs

    async def scenario():
        jobs = InOrderJobs(limit=2)
        running, most = 0, 0

        async def job(i, delay):
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(delay)
            running -= 1
            if i == 3:
                raise ValueError("bad batch")
            return i

        async def submit_all():
            # Later jobs finish first: the results must still come back in order.
            for i, delay in enumerate([0.05, 0.01, 0.03, 0.0, 0.02]):
                await jobs.submit(lambda i=i, d=delay: job(i, d), f"tag-{i}")

        submitter = asyncio.ensure_future(submit_all())
        out = []
        async for tag, result in jobs.results():
            out.append((tag, result if not isinstance(result, Exception) else str(result)))
            if len(out) == 5:
                break
        await submitter
        return out, most

    out, most = asyncio.run(scenario())
    assert out == [("tag-0", 0), ("tag-1", 1), ("tag-2", 2), ("tag-3", "bad batch"), ("tag-4", 4)]
    assert most == 2  # two ran at once, never more


def test_frame_records_survive_the_wire(clip_frames):
    ok, jpeg = cv2.imencode(".jpg", clip_frames[0])
    record = FrameRecord(camera_id="cam-1", seq=1, captured_at=0, width=640, height=360, jpeg=jpeg.tobytes())
    image = cv2.imdecode(np.frombuffer(decode(FrameRecord, encode(record)).jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (360, 640, 3)


def test_batch_sweep_reports_every_size(settings, clip_path):
    """`its-faust bench --batch-sweep` (the GPU figure where a GPU is lent) runs the real detector."""
    from its_faust.bench import batch_sweep

    result = batch_sweep(settings, str(clip_path), sizes=(1, 3), seconds=0.2)
    assert set(result["fps_by_batch"]) == {"1", "3"} and result["frame"] == "640x360"
    assert all(v["fps"] > 0 and v["inference_ms_per_frame"] > 0 for v in result["fps_by_batch"].values())
