"""Ingest against the real embedded broker: frames out, bad frames reported, not sent."""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np
import pytest

from its_faust.broker import EmbeddedBroker, bootstrap_servers
from its_faust.codecs import decode
from its_faust.ingest import FlowWindow, IngestStats, ingest, make_producer
from its_faust.topic_reader import TopicReader
from its_faust.topic_names import CAMERA_EVENTS, FRAMES, ensure_topics
from schemas import CameraEvent, FrameRecord


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture(scope="module")
def bootstrap(broker):
    return bootstrap_servers(broker.url)


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
    events = [e for e in events if e.camera_id == "cam-blank"]
    # One report for the run of 5 blank frames (a covered camera can stay blank for hours), not one per frame.
    assert [e.kind.value for e in events] == ["started", "frame_rejected", "finished"]
    assert events[1].reason.startswith("blank") and events[1].seq == seqs[9] + 1
    assert events[2].reason == "20 frames sent, 5 rejected (blank 5)"  # the source ended: not "stopped"
    image = cv2.imdecode(np.frombuffer(frames[0].jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (360, 640, 3)


def test_a_camera_stopped_before_its_source_ended_says_so(bootstrap, settings, clip_with_blank_frames):
    stop = asyncio.Event()

    def stop_after_eight(stats) -> None:
        if stats.frames_sent == 8:
            stop.set()

    stats, _, events = asyncio.run(_ingest_and_read(
        bootstrap, settings, clip_with_blank_frames, camera_id="cam-stopped", fps=500, stop=stop, on_sent=stop_after_eight))
    finished = [e for e in events if e.camera_id == "cam-stopped" and e.kind.value == "finished"]
    assert stats.frames_sent == 8 and [e.reason for e in finished] == ["stopped: 8 frames sent, 0 rejected"]


def test_a_file_stopped_while_it_waited_for_the_pipeline_reads_stopped_not_damaged(bootstrap, settings, clip_path):
    """The stop closes the reader: a ``run`` stopped with Ctrl-C while its window was full read "the file ended
    after 141 of the 480 frames it says it has", a damaged file's words (a trial of jobs side by side)."""
    stop, window = asyncio.Event(), FlowWindow(2)  # nothing gives credits back but the test: a pipeline behind

    def stop_after_two(stats) -> None:
        if stats.frames_sent == 2:
            loop = asyncio.get_running_loop()
            loop.call_later(0.2, stop.set)  # while the third frame waits for room...
            loop.call_later(0.5, window.release)  # ...which then comes

    stats, _, events = asyncio.run(_ingest_and_read(
        bootstrap, settings, clip_path, camera_id="cam-stopped-2", window=window, stop=stop, on_sent=stop_after_two))
    finished = [e.reason for e in events if e.camera_id == "cam-stopped-2" and e.kind.value == "finished"]
    assert stats.frames_sent == 2 and stats.ended_short is None and finished == ["stopped: 2 frames sent, 0 rejected"]


def _counting_encodes(monkeypatch) -> list[int]:
    """Count JPEG encodes (the real encoder still runs)."""
    encodes: list[int] = []
    real = cv2.imencode

    def imencode(ext, image, params=()):
        encodes.append(1)
        return real(ext, image, params)

    monkeypatch.setattr(cv2, "imencode", imencode)
    return encodes


def test_live_feed_drops_frames_when_the_pipeline_is_behind(bootstrap, settings, clip_path, monkeypatch):
    window = FlowWindow(3)  # nothing releases it: a pipeline that is stuck
    stats, frames, _ = asyncio.run(
        _ingest_and_read(bootstrap, settings, clip_path, camera_id="cam-live", window=window, live_feed=True, fps=200, max_frames=3)
    )
    assert stats.frames_sent == 3
    encodes = _counting_encodes(monkeypatch)
    stats2, _, _ = asyncio.run(
        _ingest_and_read(bootstrap, settings, clip_path, camera_id="cam-live2", window=FlowWindow(3), live_feed=True, fps=300)
    )
    assert stats2.frames_sent == 3 and stats2.frames_dropped == stats2.frames_read - 3 > 300 and not stats2.frames_skipped
    # A dropped frame is never JPEG-encoded (that would be most of a busy camera's CPU for nothing).
    assert len(encodes) == 3


def test_a_file_sent_as_a_live_source_carries_no_scene_time(bootstrap, settings, clip_path):
    """``ingest --live``: the detection stage then sheds its frames that come too late (a file's are never shed)."""
    stats, frames, _ = asyncio.run(_ingest_and_read(bootstrap, settings, clip_path, camera_id="cam-as-live",
                                                    max_frames=5, fps=100.0, as_live_source=True))
    mine = [f for f in frames if f.camera_id == "cam-as-live"]
    assert stats.frames_sent == 5 and len(mine) == 5
    assert all(f.scene_time is None for f in mine)
    # Held for its slot by --fps, a frame is captured as it goes out, not as it was read: read first and then
    # held, each went out one interval old (below 1/3 fps, every one was shed as too old: a trial).
    stats, frames, _ = asyncio.run(_ingest_and_read(bootstrap, settings, clip_path, camera_id="cam-as-live-slow",
                                                    max_frames=3, fps=2.0, as_live_source=True))
    at = [f.captured_at for f in frames if f.camera_id == "cam-as-live-slow"]
    assert len(at) == 3 and all(b - a >= 0.4 for a, b in zip(at, at[1:])), at
    # And sampled, as a 2 fps camera would film the scene: frames 0, 15 and 30 of the 30 fps file, not its first three
    # in slow motion (their speeds a fifteenth of the truth).
    assert stats.frames_read == 31 and stats.frames_skipped == 28, stats


def test_a_file_paced_by_the_pipeline_encodes_each_frame_it_sends_once(bootstrap, settings, clip_with_blank_frames, monkeypatch):
    encodes = _counting_encodes(monkeypatch)
    stats, frames, _ = asyncio.run(
        _ingest_and_read(bootstrap, settings, clip_with_blank_frames, camera_id="cam-window", window=FlowWindow(50))
    )
    assert stats.frames_sent == 20 and stats.rejections == {"blank": 5} and stats.frames_skipped == 0
    assert len(encodes) == 20  # the blank frames are not encoded either


@pytest.fixture
def clip_that_freezes(tmp_path, clip_frames):
    """10 frames of traffic, then the last of them 60 times more (2.4 s at 25 fps): a still picture."""
    path = tmp_path / "freezes.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 360))
    for frame in clip_frames[:10] + [clip_frames[9]] * 60:
        writer.write(frame)
    writer.release()
    return path


@pytest.mark.parametrize("live_feed", [False, True], ids=["file", "live-feed"])
def test_a_frozen_picture_is_sampled_and_reported_once(bootstrap, settings, clip_that_freezes, live_feed, monkeypatch):
    """What stands still in a still scene (a stopped car on an empty road at night) stays watched.

    As a live feed (a frame may be dropped when the pipeline is behind, so frames are encoded only
    once kept) the same frames go, and only they are encoded."""
    assert settings.ingest.frozen_keepalive_s == 0.25
    ingest_settings = settings.ingest.model_copy(update={"frozen_after": 5})
    encodes = _counting_encodes(monkeypatch)
    pacing = {"live_feed": True, "window": FlowWindow(100)} if live_feed else {}
    camera = f"cam-still-{'live' if live_feed else 'file'}"
    stats, frames, events = asyncio.run(
        _ingest_and_read(bootstrap, settings.model_copy(update={"ingest": ingest_settings}), clip_that_freezes,
                         camera_id=camera, fps=500, **pacing)
    )
    assert len(encodes) == stats.frames_sent
    # Frames 10-13 are unchanged but not yet frozen; 14-69 are frozen, and of them the first at or after
    # each 0.25 s step since the last one sent (13, at 25 fps: 6.25 frames a step) goes to the detector.
    samples = [20, 26, 32, 38, 45, 51, 57, 63]
    assert stats.frames_read == 70 and stats.frames_sent == 14 + len(samples) and stats.frames_sampled == len(samples)
    assert stats.rejections == {"frozen": 56 - len(samples)}
    frames = [f for f in frames if f.camera_id == camera]
    first = frames[0].seq
    assert [f.seq - first for f in frames] == list(range(14)) + samples
    rejected = [e for e in events if e.camera_id == camera and e.kind.value == "frame_rejected"]
    assert len(rejected) == 1 and rejected[0].seq - first == 14, rejected  # reported once, not per frame
    assert rejected[0].reason == "frozen: unchanged for 5 frames (one frame per 0.25 s still goes to the detector)"
    finished = [e for e in events if e.camera_id == camera and e.kind.value == "finished"]
    assert finished[0].reason == "22 frames sent (8 of a frozen picture), 48 rejected (frozen 48)"


def test_flagged_frames_after_a_report_are_told_when_the_interval_has_passed(bootstrap, settings, clip_with_blank_frames):
    ingest_settings = settings.ingest.model_copy(update={"rejection_report_s": 0.1})
    _, _, events = asyncio.run(
        _ingest_and_read(bootstrap, settings.model_copy(update={"ingest": ingest_settings}), clip_with_blank_frames,
                         camera_id="cam-blank-tell", fps=500)
    )
    reasons = [e.reason for e in events if e.camera_id == "cam-blank-tell" and e.kind.value == "frame_rejected"]
    # Blank frames 10-14 at 25 fps: 10 is told at once, 11-13 with 13 (0.12 s later), and 14, the last of the
    # run, by the first good frame 0.1 s after that report (16).
    assert len(reasons) == 3 and reasons[0].startswith("blank: grey-level std"), reasons
    assert reasons[1].endswith("; 3 frames flagged blank since the last report")
    assert reasons[2] == "blank: 1 more frames flagged since the last report"


def test_a_frozen_picture_is_not_sampled_when_keepalive_is_off(bootstrap, settings, clip_that_freezes):
    ingest_settings = settings.ingest.model_copy(update={"frozen_after": 5, "frozen_keepalive_s": 0.0})
    stats, _, _ = asyncio.run(
        _ingest_and_read(bootstrap, settings.model_copy(update={"ingest": ingest_settings}), clip_that_freezes,
                         camera_id="cam-still-off", fps=500)
    )
    assert stats.frames_sent == 14 and stats.frames_sampled == 0 and stats.rejections == {"frozen": 56}


def _camera_settings(settings, **ingest):
    return settings.model_copy(update={"ingest": settings.ingest.model_copy(update=ingest)})


def test_a_network_camera_down_at_start_is_retried_until_it_comes_up(bootstrap, settings, clip_frames, mjpeg_camera):
    """A camera service started before its camera: reported, tried again with backoff, then it streams."""
    from its_faust.broker import free_port

    port = free_port()
    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in clip_frames[:20]]

    async def go():
        asyncio.get_running_loop().call_later(1.0, lambda: mjpeg_camera(jpegs, port=port))  # up a second later
        return await _ingest_and_read(bootstrap, _camera_settings(settings, reconnect_initial_s=0.2),
                                      f"http://127.0.0.1:{port}/stream.mjpg", camera_id="cam-late", max_frames=10)

    stats, frames, events = asyncio.run(go())
    assert stats.frames_sent == 10 and len([f for f in frames if f.camera_id == "cam-late"]) == 10
    mine = [e for e in events if e.camera_id == "cam-late"]
    assert [e.kind.value for e in mine] == ["stream_lost", "reconnected", "started", "finished"]
    assert "does not open at start" in mine[0].reason and "open after" in mine[1].reason


def test_a_network_camera_lost_mid_stream_is_reported_while_it_is_down(bootstrap, settings, clip_frames, mjpeg_camera):
    """The reader reported the loss from its thread, but the send loop, waiting on that reader while it tried to
    reconnect, sent the event only once the camera was back: an outage was invisible for as long as it lasted."""
    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in clip_frames[:20]]
    camera = mjpeg_camera(jpegs, fps=20)

    async def go():
        await ensure_topics(bootstrap, settings)
        events = await TopicReader(bootstrap, settings.topic(CAMERA_EVENTS)).start()
        producer = make_producer(bootstrap)
        await producer.start()
        stop = asyncio.Event()
        running = asyncio.create_task(ingest(
            f"http://127.0.0.1:{camera.port}/stream.mjpg", "cam-lost", producer,
            _camera_settings(settings, reconnect_initial_s=0.5, reconnect_attempts=50), stop=stop))
        seen: list[CameraEvent] = []
        try:
            for _ in range(100):  # streaming
                seen += [e for e in (decode(CameraEvent, m.value) for m in await events.poll(100)) if e.camera_id == "cam-lost"]
                if any(e.kind.value == "started" for e in seen):
                    break
            await asyncio.sleep(1.0)
            camera.stop()  # and it stays down
            for _ in range(100):
                seen += [e for e in (decode(CameraEvent, m.value) for m in await events.poll(100)) if e.camera_id == "cam-lost"]
                if any(e.kind.value == "stream_lost" for e in seen):
                    break
            still_running = not running.done()
        finally:
            stop.set()  # while the reader retries: it stops at once, not when its tries run out
            stopped_at = time.monotonic()
            stats = await running
            stopping_s = time.monotonic() - stopped_at
            await producer.stop()
            await events.stop()
        return seen, still_running, stats, stopping_s

    seen, still_running, stats, stopping_s = asyncio.run(go())
    kinds = [e.kind.value for e in seen]
    assert "stream_lost" in kinds and still_running, kinds  # told while the camera was down, not once it was back
    assert "reconnected" not in kinds
    assert stats.stopped_early and stats.frames_sent > 0 and stopping_s < 5, (stats, stopping_s)


def test_a_network_camera_that_never_comes_up_is_given_up_or_stopped(bootstrap, settings):
    from its_faust.broker import free_port
    from its_faust.sources import SourceError

    url = f"http://127.0.0.1:{free_port()}/stream.mjpg"
    with pytest.raises(SourceError, match="cannot open video .*gave up: 3 attempts to open it failed"):
        asyncio.run(_ingest_and_read(bootstrap, _camera_settings(settings, reconnect_initial_s=0.05, reconnect_attempts=2),
                                     url, camera_id="cam-never"))

    async def stopped_while_down():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, stop.set)
        return await _ingest_and_read(bootstrap, _camera_settings(settings, reconnect_initial_s=0.2), url,
                                      camera_id="cam-stopped", stop=stop)

    stats, frames, events = asyncio.run(stopped_while_down())
    assert stats.frames_sent == 0
    mine = [e for e in events if e.camera_id == "cam-stopped"]
    assert [e.kind.value for e in mine] == ["stream_lost", "finished"]
    assert mine[-1].reason == "stopped: 0 frames sent (the source never opened)"


def test_a_network_camera_given_up_mid_stream_says_so_and_is_not_a_normal_end(bootstrap, settings, clip_frames,
                                                                              mjpeg_camera):
    """It ended with `finished: 110 frames sent, 0 rejected` and exit code 0, as a file that played to its end."""
    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in clip_frames[:20]]
    camera = mjpeg_camera(jpegs, fps=20)

    async def go():
        asyncio.get_running_loop().call_later(1.5, camera.stop)  # down for good
        return await _ingest_and_read(bootstrap, _camera_settings(settings, reconnect_initial_s=0.1, reconnect_attempts=2),
                                      f"http://127.0.0.1:{camera.port}/stream.mjpg", camera_id="cam-gone")

    stats, _, events = asyncio.run(go())
    mine = [e for e in events if e.camera_id == "cam-gone"]
    assert stats.frames_sent > 0 and stats.gave_up == f"http://127.0.0.1:{camera.port}/stream.mjpg lost: 2 attempts to reconnect failed"
    assert [e.kind.value for e in mine][-2:] == ["gave_up", "finished"]
    assert mine[-1].reason.startswith(f"gave up ({stats.gave_up}): {stats.frames_sent} frames sent")


def test_a_file_that_ends_before_the_frames_it_says_it_has_is_told(bootstrap, settings, tmp_path, clip_frames):
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 360))
    for frame in clip_frames[:40]:
        writer.write(frame)
    writer.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # its header still says 40 frames

    stats, frames, events = asyncio.run(_ingest_and_read(bootstrap, settings, cut, camera_id="cam-cut"))
    assert 10 < stats.frames_sent < 35 and stats.ended_short == (
        f"the file ended after {stats.frames_read} of the 40 frames it says it has")
    finished = [e for e in events if e.camera_id == "cam-cut"][-1]
    assert finished.kind.value == "finished" and finished.reason.startswith(stats.ended_short)
    whole_stats, _, _ = asyncio.run(_ingest_and_read(bootstrap, settings, whole, camera_id="cam-whole"))
    assert whole_stats.frames_sent == 40 and whole_stats.ended_short is None


def test_ingest_stopped_while_its_camera_does_not_answer_ends_at_once_and_says_so(broker, bootstrap, settings):
    """A camera host that takes the connection and says nothing: SIGTERM ended `ingest` only when FFmpeg's
    30 s timeout did (its thread held the exit), with no `finished` event and exit code 0."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel takes connections; nothing ever answers them
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/stream.mjpg"
    env = {**os.environ, "ITS_FAUST_BROKER_URL": broker.url, "ITS_FAUST_INGEST__STREAM_TIMEOUT_S": "60"}
    try:
        camera = subprocess.Popen([sys.executable, "-m", "its_faust.cli", "ingest", "--source", url, "--camera", "cam-mute"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(4)  # started, and blocked opening the stream
        camera.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        out, err = camera.communicate(timeout=60)
        stopping_s = time.monotonic() - stopped_at
    finally:
        silent.close()
    assert camera.returncode == 130 and stopping_s < 8, (camera.returncode, stopping_s, err)
    assert out.strip() == "cam-mute: stopped: 0 frames sent, 0 rejected", (out, err)

    async def events():
        reader = await TopicReader(bootstrap, settings.topic(CAMERA_EVENTS), from_beginning=True).start()
        try:
            return [e for m in await reader.poll(2000) if (e := decode(CameraEvent, m.value)).camera_id == "cam-mute"]
        finally:
            await reader.stop()

    mine = asyncio.run(events())
    assert mine and mine[-1].kind.value == "finished"
    assert mine[-1].reason == "stopped: 0 frames sent (the source never opened)"


def test_a_picture_looped_is_sent_again_and_again_at_its_rate(bootstrap, settings, tmp_path, clip_frames):
    """--loop on a picture sent one frame and ended: OpenCV could not seek back to it (its reader gives it 25 fps)."""
    picture = tmp_path / "still.jpg"
    cv2.imwrite(str(picture), clip_frames[0])
    started = time.monotonic()
    stats, frames, events = asyncio.run(_ingest_and_read(bootstrap, settings, picture, camera_id="still-cam",
                                                         loop_source=True, max_frames=5))
    assert stats.frames_sent == 5 and len([f for f in frames if f.camera_id == "still-cam"]) == 5
    assert time.monotonic() - started >= 4 / 25  # paced at the rate its reader gives, not as fast as it reads
    assert not stats.ended_short


def test_a_live_camera_sampled_slower_than_it_streams_numbers_the_frames_it_sends_one_after_another(
        bootstrap, settings, clip_frames, mjpeg_camera):
    """Frames left out by --fps took seqs too: a camera sampled every few seconds looked like one losing frames,
    and its pace was never learned (tables.pace): its tracks restarted at every frame."""
    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in clip_frames[:30]]
    camera = mjpeg_camera(jpegs, fps=25)
    stats, frames, _ = asyncio.run(_ingest_and_read(bootstrap, settings, camera.url, camera_id="cam-sampled", fps=5,
                                                    max_frames=4))
    seqs = [f.seq for f in frames if f.camera_id == "cam-sampled"]
    assert stats.frames_skipped > 0 and len(seqs) == 4
    assert [s - seqs[0] for s in seqs] == [0, 1, 2, 3]


def test_a_second_ingest_of_a_camera_being_sent_is_refused_and_one_after_the_first_stopped_is_not(broker, clip_path):
    """Two producers on one camera id: each numbers its frames from its own start, so only the one started last was
    tracked, the other's frames skipped without a word, and once it stopped the camera stayed untracked (a trial)."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "ITS_FAUST_BROKER_URL": broker.url}
    cli = [sys.executable, "-m", "its_faust.cli", "ingest", "--source", str(clip_path), "--camera", "cam-twice"]
    first = subprocess.Popen([*cli, "--loop", "--live", "--fps", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    try:
        time.sleep(6)  # started, and sending
        second = subprocess.run([*cli, "--max-frames", "3"], capture_output=True, text=True, env=env, timeout=120)
        assert second.returncode == 2, (second.stdout, second.stderr)
        assert "camera 'cam-twice' is being sent already: its frames keep coming from another producer" in second.stderr
        assert "frames sent" not in second.stdout
        # `run` on the same broker, as that camera, too.
        run = subprocess.run([sys.executable, "-m", "its_faust.cli", "run", "--source", str(clip_path), "--camera",
                              "cam-twice", "--workers", "0", "--max-frames", "3"], capture_output=True, text=True,
                             env=env, timeout=120)
        assert run.returncode == 2 and "camera 'cam-twice' is being sent already" in run.stderr, run.stderr[-2000:]
    finally:
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    # Its own last frames a moment ago are no other producer's: a camera restarted at once goes on.
    again = subprocess.run([*cli, "--max-frames", "3"], capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and "cam-twice: 3 frames sent" in again.stdout, (again.stdout, again.stderr)


def test_cameras_outlast_a_broker_that_hangs_a_live_one_dropping_its_frames_and_a_files_waiting(settings, clip_path,
                                                                                                  caplog):
    """A broker that stops answering (hung, cut off: SIGSTOP here) held a camera in its send, saying nothing and
    dropping nothing, and the producer's request timeout (40 s; 3 here) then ended the camera for good (a trial:
    a broker stopped for 90 s; its camera never came back). A live camera drops its frames meanwhile and counts
    them; a file's waits; both say so within seconds, and go on when the broker answers again."""
    import os
    import signal

    caplog.set_level("INFO", logger="its_faust.ingest")

    async def until(condition, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.1)

    with EmbeddedBroker() as broker:
        bootstrap = bootstrap_servers(broker.url)

        async def go():
            await ensure_topics(bootstrap, settings)
            producers = [make_producer(bootstrap, request_timeout_ms=3000) for _ in range(2)]
            for producer in producers:
                await producer.start()
            stop, live, file = asyncio.Event(), IngestStats("cam-hang"), IngestStats("cam-hang-file")
            cameras = [
                asyncio.create_task(ingest(str(clip_path), "cam-hang", producers[0], settings, fps=10, loop_source=True,
                                           as_live_source=True, stop=stop, stats=live)),
                asyncio.create_task(ingest(str(clip_path), "cam-hang-file", producers[1], settings, fps=10,
                                           loop_source=True, stop=stop, stats=file)),
            ]
            try:
                await until(lambda: live.frames_sent >= 5 and file.frames_sent >= 5, 20)
                os.kill(broker.pid, signal.SIGSTOP)
                try:
                    await asyncio.sleep(8)  # past the producer's request timeout, and the 5 s a stall is told after
                    assert not any(c.done() for c in cameras), [c.exception() for c in cameras if c.done()]
                    sent_in_hang, dropped_in_hang = live.frames_sent, live.frames_dropped
                    file_in_hang = file.frames_sent
                    assert file.frames_dropped == 0
                finally:
                    os.kill(broker.pid, signal.SIGCONT)
                await until(lambda: live.frames_sent >= sent_in_hang + 10 and file.frames_sent >= file_in_hang + 10, 30)
                return dropped_in_hang
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*cameras), 30)
                for producer in producers:
                    await producer.stop()

        dropped_in_hang = asyncio.run(go())
    # A file sent as live resumes where it was: one frame dropped for each LIVE_WAITING_S waited (a camera's count
    # the frames it filmed meanwhile: tests/test_sources.py).
    assert 2 <= dropped_in_hang <= 6, dropped_in_hang
    for camera in ("cam-hang", "cam-hang-file"):
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"camera {camera}: the broker")]
        assert len(said) == 2 and "has taken none of its frames for" in said[0] and "takes its frames again" in said[1], said
        assert "is it reachable, and not hung or overloaded?" in said[0]
    assert "A file's frames wait for it" in next(m for m in caplog.messages if m.startswith("camera cam-hang-file: the broker"))
