"""Ingest against the real embedded broker: frames out, bad frames reported, not sent."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from its_faust.broker import EmbeddedBroker, bootstrap_servers
from its_faust.codecs import decode
from its_faust.ingest import FlowWindow, ingest, make_producer
from its_faust.results import TopicReader
from its_faust.topic_names import CAMERA_EVENTS, FRAMES, ensure_topics
from schemas import CameraEvent, FrameRecord


@pytest.fixture(scope="module")
def bootstrap():
    with EmbeddedBroker() as broker:
        yield bootstrap_servers(broker.url)


@pytest.fixture
def clip_with_blank_frames(tmp_path, clip_frames):
    path = tmp_path / "blanks.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 360))
    for frame in clip_frames[:10] + [np.zeros((360, 640, 3), np.uint8)] * 5 + clip_frames[10:20]:
        writer.write(frame)
    writer.release()
    return path


async def _ingest_and_read(bootstrap, settings, source, **kwargs):
    await ensure_topics(bootstrap, settings)
    frames = await TopicReader(bootstrap, settings.topic(FRAMES)).start()
    events = await TopicReader(bootstrap, settings.topic(CAMERA_EVENTS)).start()
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        stats = await ingest(str(source), kwargs.pop("camera_id"), producer, settings, **kwargs)
        got_frames, got_events = [], []
        for _ in range(20):
            got_frames += [decode(FrameRecord, m.value) for m in await frames.poll(100)]
            got_events += [decode(CameraEvent, m.value) for m in await events.poll(100)]
        return stats, got_frames, got_events
    finally:
        await producer.stop()
        await frames.stop()
        await events.stop()


def test_blank_frames_are_reported_not_sent(bootstrap, settings, clip_with_blank_frames):
    stats, frames, events = asyncio.run(
        _ingest_and_read(bootstrap, settings, clip_with_blank_frames, camera_id="cam-blank", fps=500)
    )
    assert stats.frames_read == 25 and stats.frames_sent == 20 and stats.rejections == {"blank": 5}
    frames = [f for f in frames if f.camera_id == "cam-blank"]
    assert len(frames) == 20
    seqs = [f.seq for f in frames]
    assert seqs == sorted(seqs) and seqs[10] - seqs[9] == 6  # the 5 blank frames used their seqs
    kinds = [e.kind.value for e in events if e.camera_id == "cam-blank"]
    assert kinds == ["started"] + ["frame_rejected"] * 5 + ["finished"]
    image = cv2.imdecode(np.frombuffer(frames[0].jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (360, 640, 3)


def test_live_feed_drops_frames_when_the_pipeline_is_behind(bootstrap, settings, clip_path):
    window = FlowWindow(3)  # nothing releases it: a pipeline that is stuck
    stats, frames, _ = asyncio.run(
        _ingest_and_read(bootstrap, settings, clip_path, camera_id="cam-live", window=window, live_feed=True, fps=200, max_frames=3)
    )
    assert stats.frames_sent == 3
    stats2, _, _ = asyncio.run(
        _ingest_and_read(bootstrap, settings, clip_path, camera_id="cam-live2", window=FlowWindow(3), live_feed=True, fps=300)
    )
    assert stats2.frames_sent == 3 and stats2.frames_skipped == stats2.frames_read - 3 > 300
