"""The real pipeline on a real clip: embedded broker, worker process, YOLO11, ByteTrack, RocksDB table."""

from __future__ import annotations

import asyncio
import re

import pytest

from its_faust.pipeline import track_source
from its_faust.settings import TRAFFIC_CLASSES


@pytest.fixture(scope="module")
def clip_run(stack, clip_path):
    return asyncio.run(track_source(stack, str(clip_path), camera_id="cam-clip"))


@pytest.fixture(scope="module")
def plain_loop_ids(weights_path, clip_path):
    """Distinct ids the plain Ultralytics loop gives on the same clip (same tracker, classes, image size)."""
    from ultralytics import YOLO

    ids = set()
    for result in YOLO(str(weights_path)).track(
        str(clip_path), stream=True, tracker="bytetrack.yaml", imgsz=640, classes=list(TRAFFIC_CLASSES), verbose=False
    ):
        if result.boxes.id is not None:
            ids.update(int(i) for i in result.boxes.id)
    return len(ids)


def test_every_frame_is_tracked_exactly_once(clip_run, clip_frames):
    stats, feed = clip_run
    records = {seq: r for (cam, seq), r in feed.seen.items() if cam == "cam-clip"}
    assert stats.frames_sent == len(clip_frames) == 341
    assert sorted(records) == stats.sent_seqs
    assert feed.duplicates == []
    # The tracker applied each frame once, in seq order: its frame counter is the frame's rank.
    assert [records[s].tracker_frame for s in sorted(records)] == list(range(1, 342))


def test_detections_on_most_frames_in_image_coordinates(clip_run):
    _, feed = clip_run
    records = list(feed.seen.values())
    assert sum(1 for r in records if r.detections > 0) >= 0.9 * len(records)
    for record in records:
        assert record.width == 640 and record.height == 360
        for obj in record.objects:
            assert -5 <= obj.x1 < obj.x2 <= 645 and -5 <= obj.y1 < obj.y2 <= 365
            assert obj.cls in TRAFFIC_CLASSES and obj.label
        assert record.model.startswith("yolo11n@")


def test_track_ids_are_as_stable_as_the_plain_ultralytics_loop(clip_run, plain_loop_ids):
    _, feed = clip_run
    ours = len({o.track_id for r in feed.seen.values() for o in r.objects})
    print(f"distinct track ids: pipeline {ours}, plain YOLO.track loop {plain_loop_ids}")
    assert ours <= plain_loop_ids * 1.1


def test_camera_state_is_written_behind_and_its_frames_committed(stack, settings, clip_run):
    """tables/checkpoints.py: the tracker's state goes to its table a couple of times a second, not per
    frame, the last write covers the clip's last frame, and every detection is then committed."""
    from its_faust.codecs import decode
    from its_faust.topic_reader import TopicReader, group_offsets, partition_for
    from its_faust.topic_names import DETECTIONS
    from tables.camera_tracker import TrackerState

    stats, _ = clip_run
    last_seq = stats.sent_seqs[-1]
    detections = settings.topic(DETECTIONS)

    async def states_and_offsets():
        changelog = f"{settings.app_id}-camera-tracker-changelog"
        reader = await TopicReader(stack.bootstrap, changelog, from_beginning=True, keys=[b"cam-clip"]).start()
        states: list[TrackerState] = []
        try:
            for _ in range(40):  # the last flush comes within the flush interval of the last frame
                states += [decode(TrackerState, m.value) for m in await reader.poll(250) if m.key == b"cam-clip"]
                if states and states[-1].last_seq == last_seq:
                    break
        finally:
            await reader.stop()
        partition = partition_for(b"cam-clip", settings.partitions)
        for _ in range(40):  # committed at the next commit after the flush acknowledged them
            committed, end = (await group_offsets(stack.bootstrap, settings.app_id, [detections]))[(detections, partition)]
            if committed >= max(end, 341):
                break
            await asyncio.sleep(0.25)
        return states, committed, end

    states, committed, end = asyncio.run(states_and_offsets())
    print(f"tracker state writes for 341 frames: {len(states)}")
    assert states and states[-1].last_seq == last_seq and states[-1].frame_id == 341
    seqs = [s.last_seq for s in states]
    assert seqs == sorted(set(seqs))  # each write moves the camera on
    assert len(states) <= 341 // 3, f"{len(states)} state writes for 341 frames"
    # Every detection is acknowledged by a flush, and committed: this camera's 341 are the first in their
    # partition (group_offsets reads the end from the log: the broker's own figure can fall short of it).
    assert committed >= max(end, 341), f"committed {committed}, end {end}"


def test_worker_runs_on_uvloop_with_its_start_up_objects_frozen(stack):
    """The default event loop (its_faust/event_loop.py) and the frozen start-up heap (its_faust/app.py)."""
    log = stack.workers[0].log_path.read_text(errors="replace")
    assert "uvloop event loop" in log, stack.workers[0].tail()
    frozen = re.search(r"(\d+) start-up objects frozen", log)
    assert frozen and int(frozen.group(1)) > 100_000, stack.workers[0].tail()


def test_latency_is_recorded_per_frame(clip_run):
    _, feed = clip_run
    for r in feed.seen.values():
        assert r.captured_at <= r.detected_at <= r.tracked_at


def test_batched_detection_tracks_every_frame_once_in_order(settings, clip_path, tmp_path):
    """Several frames per inference call (the GPU default), here on the CPU: the stage's batching path."""
    from its_faust.codecs import decode
    from its_faust.pipeline import Stack
    from its_faust.topic_reader import TopicReader
    from its_faust.topic_names import DETECTIONS
    from schemas import DetectionRecord

    camera, frames = "cam-batched", 90

    async def run():
        stack = await Stack(settings, workers=0, workdir=tmp_path).start()
        try:
            worker = stack.add_worker("worker-batched", extra_env={"ITS_FAUST_MODEL__BATCH_SIZE": "4"})
            await asyncio.to_thread(worker.wait_ready)
            detections = await TopicReader(stack.bootstrap, settings.topic(DETECTIONS), keys=[camera.encode()]).start()
            stats, feed = await track_source(stack, str(clip_path), camera_id=camera, max_frames=frames)
            sizes: list[int] = []
            for _ in range(20):
                sizes += [decode(DetectionRecord, m.value).batch_size for m in await detections.poll(500)]
                if len(sizes) >= frames:
                    break
            await detections.stop()
            return stats, feed, sizes
        finally:
            await stack.stop()

    stats, feed, sizes = asyncio.run(run())
    records = {seq: r for (cam, seq), r in feed.seen.items() if cam == camera}
    assert sorted(records) == stats.sent_seqs and len(records) == frames and feed.duplicates == []
    assert [records[s].tracker_frame for s in sorted(records)] == list(range(1, frames + 1))
    assert len(sizes) == frames and max(sizes) > 1 and max(sizes) <= 4  # frames did share calls, at most 4


def test_a_frozen_picture_is_still_sampled_and_its_tracks_go_on(stack, clip_frames, tmp_path):
    """A still scene (here: the clip stopping on frame 9 for 2.8 s) stays watched: the cars standing in it
    keep their track ids through the samples (4 a second) that go to the detector while it is frozen."""
    import cv2

    path = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 360))
    for frame in clip_frames[:10] + [clip_frames[9]] * 70:
        writer.write(frame)
    writer.release()
    stats, feed = asyncio.run(track_source(stack, str(path), camera_id="cam-still"))
    # Frames 10-23 are unchanged but not yet frozen (frozen_after 15); of the frozen 24-79 the first at or
    # after each 0.25 s step since frame 23 (6.25 frames a step at 25 fps) is sampled.
    samples = [30, 36, 42, 48, 55, 61, 67, 73]
    assert stats.frames_sent == 24 + len(samples) and stats.frames_sampled == len(samples)
    assert stats.rejections == {"frozen": 56 - len(samples)}
    records = sorted((r for (cam, _), r in feed.seen.items() if cam == "cam-still"), key=lambda r: r.seq)
    first = stats.sent_seqs[0]
    assert [r.seq - first for r in records] == list(range(24)) + samples
    before = {o.track_id for o in records[23].objects}
    assert before, "frame 9 of the clip has cars in it"
    for sample in records[24:]:
        assert {o.track_id for o in sample.objects} == before  # the same tracks, not fresh ones
