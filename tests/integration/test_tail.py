"""``its-faust tail`` against the real embedded broker, as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from its_faust.broker import EmbeddedBroker, bootstrap_servers
from its_faust.codecs import encode
from its_faust.ingest import make_producer
from its_faust.topic_reader import TopicReader, partition_for
from its_faust.settings import get_settings
from its_faust.topic_names import ALERTS, DEAD_LETTERS, TRACKS, ZONE_STATS, ensure_topics
from schemas import TrackedObject, TrackRecord

NEIGHBOUR = next(f"cam-c{i}" for i in range(1000) if partition_for(f"cam-c{i}".encode(), get_settings().partitions)
                 == partition_for(b"cam-a", get_settings().partitions))
CAR = {"x1": 1, "y1": 2, "x2": 30, "y2": 40, "conf": 0.9, "cls": 2, "label": "car"}


def _track(camera_id: str, seq: int) -> bytes:
    return encode(TrackRecord(
        camera_id=camera_id, seq=seq, captured_at=1.0 + seq, width=640, height=360, detected_at=1.1 + seq,
        tracked_at=1.2 + seq, tracker_frame=seq, model="yolo11n@abc", detections=1, worker="test:1",
        objects=[TrackedObject(track_id=seq, **CAR)],
    ))


async def _send(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], *, one_batch: bool = False) -> None:
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        if one_batch:  # as the pipeline's producers send: many records in one request
            await asyncio.gather(*[await producer.send(topic, value, key=key) for key, value in records])
        for key, value in records if not one_batch else []:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def broker(settings):
    with EmbeddedBroker() as broker:
        bootstrap = bootstrap_servers(broker.url)
        asyncio.run(ensure_topics(bootstrap, settings))
        # Two cameras (partitions of their own or not), one after the other, and one record that is not a track.
        records = [(b"cam-a" if i % 2 else b"cam-b", _track("cam-a" if i % 2 else "cam-b", i)) for i in range(1, 9)]
        records.insert(4, (b"cam-a", b"not json"))
        # Then a camera that shares cam-a's partition: cam-a's newest records are further back there.
        records += [(NEIGHBOUR.encode(), _track(NEIGHBOUR, seq)) for seq in range(101, 111)]
        asyncio.run(_send(bootstrap, settings.topic(TRACKS), records))
        yield broker


def tail(broker, *args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "its_faust.cli", "tail", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "ITS_FAUST_BROKER_URL": broker.url, **(env or {})})


def _seqs(stdout: str) -> list[str]:
    return [line.split("  ")[3].split()[1] if "seq" in line else "bad" for line in stdout.splitlines()]


def test_one_camera_from_the_beginning(broker):
    done = tail(broker, "tracks", "--from-beginning", "--no-follow", "--camera", "cam-a")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all("  cam-a  " in line for line in lines), done.stdout
    assert _seqs(done.stdout) == ["1", "3", "bad", "5", "7"]
    assert "1 tracks (car 1): ids 1" in lines[0]
    assert "(not JSON: 8 bytes: b'not json')" in lines[2]
    assert done.stderr.strip() == "(5 records)"


def test_a_camera_with_nothing_to_show_that_is_not_configured_is_noted_with_the_configured_ones(broker, settings):
    from its_faust.topic_names import CAMERA_CONFIGS
    from schemas.control import CameraConfig

    # (no worker runs here: the configuration is written as the configure stage writes it)
    config = CameraConfig(camera_id="cam-C", version=1, last_command_id="x", updated_at=time.time())
    asyncio.run(_send(bootstrap_servers(broker.url), settings.topic(CAMERA_CONFIGS), [(b"cam-C", encode(config))]))
    done = tail(broker, "counts", "--from-beginning", "--no-follow", "--camera", "cam-c")
    assert done.returncode == 0, done.stderr
    assert "(0 records)" in done.stderr
    assert "note: no camera 'cam-c' is configured; did you mean 'cam-C'? (ids are case-sensitive); the configured " \
           "cameras: cam-C" in done.stderr, done.stderr
    shown = tail(broker, "tracks", "--from-beginning", "--no-follow", "--camera", "cam-b")  # records shown: no note
    assert "note" not in shown.stderr and "(4 records)" in shown.stderr, shown.stderr


def test_a_key_that_is_no_camera_id_is_noted_and_still_sought(broker):
    done = tail(broker, "tracks", "--from-beginning", "--no-follow", "--camera", "cam a")
    assert done.returncode == 0 and done.stdout == "", done.stderr
    assert "note: 'cam a' is not a camera id" in done.stderr and "(0 records)" in done.stderr


def test_the_last_records_of_every_camera(broker):
    done = tail(broker, "TRACKS", "--last", "3", "--no-follow")  # topic names are case-insensitive
    assert done.returncode == 0, done.stderr
    assert _seqs(done.stdout) == ["108", "109", "110"]


def test_the_last_records_of_a_camera_behind_another_ones(broker):
    done = tail(broker, "tracks", "--last", "2", "--no-follow", "--camera", "cam-a")
    assert done.returncode == 0, done.stderr
    assert _seqs(done.stdout) == ["5", "7"]
    done = tail(broker, "tracks", "--last", "50", "--no-follow", "--camera", "cam-a")  # fewer there than asked for
    assert _seqs(done.stdout) == ["1", "3", "bad", "5", "7"]


def test_json_lines_with_a_limit(broker):
    done = tail(broker, "tracks", "--from-beginning", "--no-follow", "--json", "--limit", "2", "--camera", "cam-b")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["value"]["seq"] for r in records] == [2, 4]
    assert {r["key"] for r in records} == {"cam-b"} and {r["topic"] for r in records} == {"its.tracks"}
    assert done.stderr == ""  # stdout is for the records; nothing else goes anywhere


def test_records_sent_in_one_batch_are_all_read(broker, settings):
    """The embedded broker gives a partition's end as its last batch's start: reading to it alone stopped short."""
    asyncio.run(_send(bootstrap_servers(broker.url), settings.topic(ALERTS),
                      [(b"cam-q", json.dumps({"n": n}).encode()) for n in range(10)], one_batch=True))
    done = tail(broker, "alerts", "--from-beginning", "--no-follow", "--camera", "cam-q", "--json")
    assert [json.loads(line)["value"]["n"] for line in done.stdout.splitlines()] == list(range(10)), done.stderr


def test_reading_to_the_end_takes_the_last_batch_whole(broker, settings):
    """The broker gives as a partition's end its last batch's start + 1, and a reader hands out at most
    1,000 records a poll: a reader past that offset took it for the end and left the rest of the batch."""
    bootstrap, topic = bootstrap_servers(broker.url), settings.topic(ZONE_STATS)

    async def go():
        await _send(bootstrap, topic, [(b"cam-r", b'{"n": %d}' % n) for n in range(1010)], one_batch=True)
        reader = await TopicReader(bootstrap, topic, from_beginning=True, keys=[b"cam-r"]).start()
        try:
            return await reader.read_to_end()
        finally:
            await reader.stop()

    assert [json.loads(m.value)["n"] for m in asyncio.run(go())] == list(range(1010))


def test_following_shows_what_arrives_and_stops_on_ctrl_c(broker, settings):
    bootstrap = bootstrap_servers(broker.url)
    # Records from before it starts are not shown, the rest of a batch at the end included.
    asyncio.run(_send(bootstrap, settings.topic(DEAD_LETTERS), [(b"cam-z", b'{"reason": "old"}')] * 10, one_batch=True))
    time.sleep(2.5)
    follower = subprocess.Popen([sys.executable, "-m", "its_faust.cli", "tail", "dead-letters"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env={**os.environ, "ITS_FAUST_BROKER_URL": broker.url})
    os.set_blocking(follower.stdout.fileno(), False)
    seen = ""
    try:
        # It starts at the end: a record sent before it got there is not shown, so send until one is.
        deadline = time.monotonic() + 45
        while "bad input" not in seen and time.monotonic() < deadline:
            asyncio.run(_send(bootstrap, settings.topic(DEAD_LETTERS), [(b"cam-z", b'{"stage": "detect", "reason": "bad input"}')]))
            time.sleep(1.0)
            seen += (follower.stdout.read() or b"").decode()
    finally:
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=30)
    assert "bad input" in seen and "  cam-z  " in seen and "old" not in seen, seen + out.decode()
    assert follower.returncode == 0 and b"Traceback" not in err, err.decode()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_started_in_the_background_it_still_stops_on_ctrl_c_and_sigterm(broker, sig):
    """A script's ``its-faust tail ... &`` has SIGINT ignored by the shell; like run or demo it takes it back."""
    follower = subprocess.Popen([sys.executable, "-m", "its_faust.cli", "tail", "tracks"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env={**os.environ, "ITS_FAUST_BROKER_URL": broker.url},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        time.sleep(4)  # following by now
        assert follower.poll() is None
        follower.send_signal(sig)
        _, err = follower.communicate(timeout=15)
    finally:
        follower.kill()
    assert follower.returncode == 0 and b"Traceback" not in err, err.decode()


def test_a_topic_not_on_the_broker_is_one_line_or_waited_for_when_following(broker):
    done = tail(broker, "tracks", "--from-beginning", "--no-follow", env={"ITS_FAUST_TOPIC_PREFIX": "elsewhere"})
    assert done.returncode == 2
    assert done.stderr.strip() == ("its-faust: error: topic elsewhere.tracks does not exist on the broker "
                                   "(no worker or producer has created it yet)")
    # Following (tail started before the worker that creates the topic): it waits, then shows what comes.
    env = {**os.environ, "ITS_FAUST_BROKER_URL": broker.url, "ITS_FAUST_TOPIC_PREFIX": "later"}
    follower = subprocess.Popen([sys.executable, "-m", "its_faust.cli", "tail", "tracks", "--from-beginning",
                                 "--limit", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(6)
        assert follower.poll() is None, follower.communicate()
        asyncio.run(_send(bootstrap_servers(broker.url), "later.tracks", [(b"cam-a", _track("cam-a", 1))]))
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0 and "  cam-a  " in out, (out, err)
    assert err.strip().splitlines()[0] == ("its-faust: topic later.tracks does not exist on the broker (no worker or "
                                           "producer has created it yet): waiting for it (Ctrl-C stops)"), err


def test_from_the_beginning_or_the_last_not_both(broker):
    done = tail(broker, "tracks", "--from-beginning", "--last", "2")
    assert done.returncode == 2 and "give --from-beginning or --last, not both" in done.stderr


def test_not_following_needs_a_place_to_start(broker):
    done = tail(broker, "tracks", "--no-follow")  # from the end and not following: it would show nothing
    assert done.returncode == 2 and "give --from-beginning or --last N with it" in done.stderr


def test_following_ends_with_one_line_when_the_broker_goes(settings):
    """The Kafka client retries a lost broker for ever, logging each try: the tail says so once and ends."""
    with EmbeddedBroker() as own:
        asyncio.run(ensure_topics(bootstrap_servers(own.url), settings))
        follower = subprocess.Popen([sys.executable, "-m", "its_faust.cli", "tail", "alerts"], text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env={**os.environ, "ITS_FAUST_BROKER_URL": own.url})
        time.sleep(4)
    stopped = time.monotonic()
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 2 and out == ""
    assert err.splitlines() == [err.strip()] and "stopped following: broker 127.0.0.1:" in err, err
    assert time.monotonic() - stopped < 30
