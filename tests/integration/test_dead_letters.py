"""Malformed input goes to the dead-letter topic with its reason; the pipeline keeps going."""

from __future__ import annotations

import asyncio
import re
import time

import cv2
from aiokafka import AIOKafkaProducer

from its_faust.codecs import decode, encode
from its_faust.ingest import make_producer
from its_faust.results import TrackFeed
from its_faust.topic_reader import TopicReader
from its_faust.topic_names import CAMERA_EVENTS, DEAD_LETTERS, DETECTIONS, FRAMES
from schemas import CameraEvent, CameraEventKind, DeadLetter, FrameRecord


async def _dead_letters_after_bad_input(stack, clip_frames):
    settings = stack.settings
    dlq = await TopicReader(stack.bootstrap, settings.topic(DEAD_LETTERS)).start()
    camera_events = await TopicReader(stack.bootstrap, settings.topic(CAMERA_EVENTS), keys=[b"cam-dlq"]).start()
    feed = await TrackFeed(stack.bootstrap, settings).start()
    producer = make_producer(stack.bootstrap)
    await producer.start()
    ok, jpeg = cv2.imencode(".jpg", clip_frames[0])
    good = lambda seq: FrameRecord(camera_id="cam-dlq", seq=seq, captured_at=time.time(), width=640, height=360, jpeg=jpeg.tobytes())
    bad = {
        b"{broken json": "Invalid JSON",
        b'{"schema": "its.frame", "v": 9}': "v: Input should be 1",
        encode(FrameRecord(camera_id="cam-dlq", seq=2, captured_at=time.time(), width=640, height=360, jpeg=b"not an image")): "not a decodable image",
        # Boxes are given in the record's size: one that is not the image's would put them elsewhere.
        encode(FrameRecord(camera_id="cam-dlq", seq=2, captured_at=time.time(), width=100, height=50, jpeg=jpeg.tobytes())):
            "the image is 640x360, the record says 100x50",
        # A frame far ahead of any camera's seqs: tracked, it held back the camera's every later frame, for good.
        encode(good(2)).replace(b'"seq":2,', b'"seq":' + str(10**30).encode() + b","): "seq: Input should be less than or equal to",
    }
    frames_topic = settings.topic(FRAMES)
    await producer.send_and_wait(frames_topic, encode(good(1)), key=b"cam-dlq")
    for payload in bad:
        await producer.send_and_wait(frames_topic, payload, key=b"cam-dlq")
    await producer.send_and_wait(frames_topic, encode(good(3)), key=b"other-key")  # key is not the camera
    await producer.send_and_wait(settings.topic(DETECTIONS), b'{"schema": "its.detections"}', key=b"cam-dlq")
    await producer.send_and_wait(frames_topic, encode(good(4)), key=b"cam-dlq")

    letters, tracked, deadline = [], set(), time.monotonic() + 60
    while (len(letters) < len(bad) + 2 or tracked != {1, 4}) and time.monotonic() < deadline:
        letters += [decode(DeadLetter, m.value) for m in await dlq.poll(200)]
        tracked |= {r.seq for r in await feed.poll(200) if r.camera_id == "cam-dlq"}
    events, deadline = [], time.monotonic() + 40  # until every refusal of detect's is told (the rest 10 s on)
    while _told("detect", events) < len(bad) + 1 and time.monotonic() < deadline:
        events += [e for e in (decode(CameraEvent, m.value) for m in await camera_events.poll(200)) if e.camera_id == "cam-dlq"]
    await producer.stop()
    for reader in (dlq, feed, camera_events):
        await reader.stop()
    return bad, letters, tracked, events


def _told(stage: str, events) -> int:
    """How many of the stage's refusals the camera's records_rejected events account for: the one each told at
    once, with how many more went before it, and the counts of the rest told later."""
    told = 0
    for e in events:
        if e.kind != CameraEventKind.records_rejected or not e.reason.startswith(f"{stage} dead-lettered "):
            continue
        now = re.search(r"; (\d+) more since the last report$", e.reason)
        later = re.match(rf"{stage} dead-lettered (\d+) more record\(s\)", e.reason)
        told += int(later.group(1)) if later else 1 + (int(now.group(1)) if now else 0)
    return told


def test_malformed_messages_are_dead_lettered_and_the_rest_flows(stack, clip_frames):
    bad, letters, tracked, events = asyncio.run(_dead_letters_after_bad_input(stack, clip_frames))
    assert tracked == {1, 4}  # frames before and after the bad ones are tracked
    assert len(letters) == len(bad) + 2  # and the one keyed wrongly, and the one on detections
    by_value = {letter.value: letter for letter in letters}
    for payload, reason in bad.items():
        assert reason in by_value[payload].reason
        assert by_value[payload].stage == "detect" and by_value[payload].topic.endswith(".frames")
    assert any("not the record's camera_id" in l.reason for l in letters)
    track_letters = [l for l in letters if l.stage == "track"]
    assert len(track_letters) == 1 and "DetectionRecord" in track_letters[0].reason
    # Whoever watches the camera is told of each refusal: the first of each stage at once, with its reason, the
    # rest of the burst in counts (10 s on: more at once if the burst outlasts a period on a slow machine).
    told = [e for e in events if e.kind == CameraEventKind.records_rejected]
    # (The first, at once: the one keyed wrongly is told at once too, and may land first under load.)
    at_once = [e.reason for e in told if e.reason.startswith("detect dead-lettered a record:")]
    assert any("Invalid JSON" in reason for reason in at_once), at_once
    # (and the one keyed wrongly: told to the camera its record names too)
    assert _told("detect", events) == len(bad) + 1 and _told("track", events) == 1, [e.reason for e in told]
    assert any("sent under the key b'other-key', not the camera id" in e.reason for e in told)


async def _frames_under_each_codec(stack, clip_frames) -> set[int]:
    settings = stack.settings
    feed = await TrackFeed(stack.bootstrap, settings, cameras=["cam-codecs"]).start()
    ok, jpeg = cv2.imencode(".jpg", clip_frames[0])
    tracked, deadline = set(), time.monotonic() + 60
    try:
        for seq, codec in enumerate(CODECS, start=1):
            producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, compression_type=codec)
            await producer.start()
            frame = FrameRecord(camera_id="cam-codecs", seq=seq, captured_at=time.time(), width=640, height=360, jpeg=jpeg.tobytes())
            await producer.send_and_wait(settings.topic(FRAMES), encode(frame), key=b"cam-codecs")
            await producer.stop()
        while tracked != set(range(1, len(CODECS) + 1)) and time.monotonic() < deadline:
            tracked |= {r.seq for r in await feed.poll(200)}
    finally:
        await feed.stop()
    return tracked


CODECS = ("gzip", "snappy", "lz4", "zstd")


def test_frames_compressed_with_any_kafka_codec_are_tracked(stack, clip_frames):
    # A client's snappy-compressed frame stopped every worker, and each one started after it, for good
    # (aiokafka reads snappy, lz4 and zstd only with cramjam installed): a trial with kafkajs.
    assert asyncio.run(_frames_under_each_codec(stack, clip_frames)) == {1, 2, 3, 4}


async def _frames_around_an_unreadable_batch(stack, clip_frames, monkeypatch):
    import aiokafka.producer.message_accumulator as accumulator
    import aiokafka.record.default_records as default_records

    settings = stack.settings
    dlq = await TopicReader(stack.bootstrap, settings.topic(DEAD_LETTERS)).start()
    feed = await TrackFeed(stack.bootstrap, settings, cameras=["cam-corrupt"]).start()
    ok, jpeg = cv2.imencode(".jpg", clip_frames[0])
    frame = lambda seq: encode(FrameRecord(camera_id="cam-corrupt", seq=seq, captured_at=time.time(), width=640,
                                           height=360, jpeg=jpeg.tobytes()))
    good = make_producer(stack.bootstrap)
    await good.start()
    await good.send_and_wait(settings.topic(FRAMES), frame(1), key=b"cam-corrupt")
    with monkeypatch.context() as m:  # a client whose gzip is broken: the broker stores the batch as sent
        m.setattr(accumulator, "DefaultRecordBatchBuilder", default_records._DefaultRecordBatchBuilderPy)
        m.setattr(default_records, "gzip_encode", lambda data, *a, **k: b"\x1f\x8b not gzip at all" + bytes(200))
        broken = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, compression_type="gzip")
        await broken.start()
        bad = await broken.send_and_wait(settings.topic(FRAMES), frame(2), key=b"cam-corrupt")
        await broken.stop()
    for seq in (3, 4):
        await good.send_and_wait(settings.topic(FRAMES), frame(seq), key=b"cam-corrupt")
    await good.stop()
    letters, tracked, deadline = [], set(), time.monotonic() + 60
    while (not letters or tracked != {1, 3, 4}) and time.monotonic() < deadline:
        letters += [letter for letter in (decode(DeadLetter, m.value) for m in await dlq.poll(200))
                    if letter.offset == bad.offset and letter.partition == bad.partition]
        tracked |= {r.seq for r in await feed.poll(200)}
    for reader in (dlq, feed):
        await reader.stop()
    return bad, letters, tracked


def test_a_record_batch_no_client_can_read_is_dead_lettered_and_the_frames_after_it_are_tracked(stack, clip_frames,
                                                                                                monkeypatch):
    # One such batch from a client stopped every worker, and each one started after it, for good (a trial).
    bad, letters, tracked = asyncio.run(_frames_around_an_unreadable_batch(stack, clip_frames, monkeypatch))
    assert tracked == {1, 3, 4}
    assert [(letter.stage, letter.topic, letter.value) for letter in letters] == [("detect", bad.topic, b"")], letters
    assert "a record batch that cannot be read (BadGzipFile" in letters[0].reason, letters[0].reason
