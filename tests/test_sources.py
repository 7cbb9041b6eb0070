"""Sources: files end, live streams that drop are reported and reopened with backoff."""

from __future__ import annotations

import sys
import time

import pytest

from its_faust.broker import free_port
from its_faust.sources import Backoff, FrameReader, SourceError, SourceSpec


def test_source_kinds():
    assert SourceSpec.parse("rtsp://cam.local/stream").live
    assert SourceSpec.parse("webcam:1").capture_arg == 1
    assert SourceSpec.parse("0").capture_arg == 0


def test_missing_file_is_a_clear_error():
    with pytest.raises(SourceError, match="cannot open video /nope.mp4: no such file"):
        SourceSpec.parse("/nope.mp4")


@pytest.mark.skipif(sys.platform != "linux", reason="cameras are /dev/videoN on Linux")
def test_a_webcam_that_is_not_there_is_one_clear_error(capfd):
    with pytest.raises(SourceError, match=r"^cannot open video webcam:97: no camera at /dev/video97$"):
        FrameReader(SourceSpec.parse("webcam:97"))
    assert capfd.readouterr().err == ""  # not OpenCV's warnings from each of its back-ends first


def test_unreachable_stream_is_a_clear_error():
    with pytest.raises(SourceError, match="cannot open video"):
        FrameReader(SourceSpec.parse(f"http://127.0.0.1:{free_port()}/cam.mp4"))


def test_backoff_doubles_up_to_its_ceiling_for_its_tries():
    assert list(Backoff(initial_s=0.5, max_s=3.0, attempts=5).waits()) == [0.5, 1.0, 2.0, 3.0, 3.0]
    forever = Backoff(initial_s=1.0, max_s=4.0).waits()  # attempts 0: for ever
    assert [next(forever) for _ in range(50)][-3:] == [4.0, 4.0, 4.0]


def test_backoff_follows_the_settings(settings):
    s = settings.ingest.model_copy(update={"reconnect_initial_s": 0.2, "reconnect_max_s": 0.8, "reconnect_attempts": 4})
    assert list(Backoff.from_settings(s).waits()) == [0.2, 0.4, 0.8, 0.8]


def test_lost_stream_is_reported_reconnected_then_given_up(clip_frames, mjpeg_camera, caplog):
    import cv2

    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in clip_frames[:20]]
    camera = mjpeg_camera(jpegs, frames_per_connection=20)
    events, sleeps = [], []
    reader = FrameReader(
        SourceSpec.parse(camera.url),
        backoff=Backoff(initial_s=0.5, attempts=3),
        on_event=lambda kind, reason: events.append(kind),
        sleep=sleeps.append,
    )
    frames = iter(reader)
    got = [next(frames) for _ in range(30)]  # past the first connection's end: lost, reopened
    assert events == ["stream_lost", "reconnected"]
    assert got[0][0].shape == (360, 640, 3)
    camera.stop()
    rest = sum(1 for _ in frames)  # the rest of this connection, then loss; reconnects fail
    assert rest <= 20
    assert events == ["stream_lost", "reconnected", "stream_lost", "gave_up"]
    assert sleeps[-3:] == [0.5, 1.0, 2.0]  # exponential backoff
    tries = [r.getMessage().split("; ")[-1] for r in caplog.records if r.getMessage().startswith("reconnect ")]
    assert tries == ["next try in 1.0 s", "next try in 2.0 s", "no tries left"]


def test_closing_during_a_reconnect_back_off_ends_it(clip_frames, mjpeg_camera, monkeypatch):
    """A camera that is down waits up to reconnect_max_s between tries; closing must not wait that out,
    nor try to connect once more (to an unreachable host that blocks for the connect timeout)."""
    import threading
    import time

    import cv2

    from its_faust import sources

    camera = mjpeg_camera([cv2.imencode(".jpg", f)[1].tobytes() for f in clip_frames[:5]], frames_per_connection=5)
    events = []
    reader = FrameReader(SourceSpec.parse(camera.url), backoff=Backoff(initial_s=60), on_event=lambda kind, _: events.append(kind))
    camera.stop()
    thread = threading.Thread(target=lambda: sum(1 for _ in reader))
    thread.start()
    deadline = time.monotonic() + 10
    while "stream_lost" not in events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events == ["stream_lost"]  # now in its first 60 s back-off
    opened_after_close = []
    real_open = sources.open_capture
    monkeypatch.setattr(sources, "open_capture", lambda spec: opened_after_close.append(spec) or real_open(spec))
    reader.close()
    thread.join(5)
    assert not thread.is_alive()
    assert opened_after_close == []


def test_flow_window_blocks_and_drops():
    import asyncio

    from its_faust.ingest import FlowWindow

    async def scenario():
        window = FlowWindow(2)
        await window.acquire()
        assert window.try_acquire() and not window.try_acquire()
        waiter = asyncio.create_task(window.acquire())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        window.release()
        await asyncio.wait_for(waiter, 1)
        for _ in range(5):
            window.release()  # more releases than credits taken never widen the window
        assert window.try_acquire() and window.try_acquire() and not window.try_acquire()

    asyncio.run(scenario())


def test_flow_window_reclaims_credits_never_given_back():
    import asyncio

    from its_faust.ingest import FlowWindow

    async def scenario():
        window = FlowWindow(1, expire_s=0.05)
        assert window.try_acquire() and not window.try_acquire()
        await asyncio.wait_for(window.acquire(), 1)  # the first credit expired: a dead-lettered frame
        assert not window.try_acquire()

    asyncio.run(scenario())


def test_a_file_carries_its_own_scene_clock_across_loops(clip_path):
    reader = FrameReader(SourceSpec.parse(str(clip_path)))
    frames = iter(reader)
    first = [next(frames) for _ in range(30)]
    scene = [s for _, _, s in first]
    # One frame apart on the video's clock, whatever the reading speed was.
    assert all(abs((b - a) - 1 / reader.fps) < 1e-5 for a, b in zip(scene, scene[1:]))
    reader.rewind()
    again = next(iter(reader))[2]
    assert again > scene[-1]  # playing it again moves the clock on, never back
    reader.close()


def test_a_one_frame_file_or_a_picture_plays_again(clip_frames, tmp_path):
    """--loop on them sent one frame and said "finished": OpenCV could not seek back to their first frame."""
    import cv2

    picture, video = tmp_path / "frame.jpg", tmp_path / "one.mp4"
    cv2.imwrite(str(picture), clip_frames[0])
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 360))
    writer.write(clip_frames[0])
    writer.release()
    for path in (picture, video):
        reader = FrameReader(SourceSpec.parse(str(path)))
        played = []
        for _ in range(3):
            played.append(sum(1 for _ in reader))
            reader.rewind()
        reader.close()
        assert played == [1, 1, 1], (path.name, played)


def test_closing_during_a_read_leaves_the_release_to_that_read(settings):
    """Ctrl-C or SIGTERM closes the reader from the event loop while a worker thread reads: FFmpeg aborted
    the whole process ("Assertion fctx->async_lock failed") when the capture was released mid-read."""
    import threading

    from its_faust.assets import resolve_asset

    reader = FrameReader(SourceSpec.parse(str(resolve_asset("dual_carriageway_abhishek.mp4", settings.asset_dir))))
    capture = reader.capture
    reading, go_on, released = threading.Event(), threading.Event(), []

    class SlowCapture:  # the real capture, with a read that waits until the test has closed the reader
        def read(self):
            reading.set()
            go_on.wait(5)
            return capture.read()

        def release(self):
            released.append(threading.current_thread().name)
            capture.release()

    reader.capture = SlowCapture()
    frames = iter(reader)
    thread = threading.Thread(target=lambda: list(frames), name="reader")
    thread.start()
    assert reading.wait(5)
    reader.close()
    assert released == []  # not under the read
    go_on.set()
    thread.join(5)
    assert released == ["reader"] and not thread.is_alive()
    reader.close()  # a second close releases the released capture again, which OpenCV takes as a no-op


def test_a_daemon_thread_hands_back_results_and_errors_and_closes_a_reader_opened_for_nobody():
    import asyncio

    from its_faust.daemon_thread import DaemonThread

    closed = []

    async def scenario():
        thread = DaemonThread("camera test")
        assert await thread.run(lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(ZeroDivisionError):
            await thread.run(lambda: 1 / 0)
        with pytest.raises(RuntimeError, match="raised StopIteration"):  # a future cannot carry it: it hung
            await asyncio.wait_for(thread.run(lambda: next(iter(()))), 5)
        slow_open = thread.run(lambda: (time.sleep(0.3), "reader")[1], orphan=closed.append)
        with pytest.raises(asyncio.TimeoutError):  # cancelled while it opens (Ctrl-C)
            await asyncio.wait_for(slow_open, 0.05)
        for _ in range(500):  # the open ends 0.3 s on, then its reader is closed (by then on a loaded machine)
            if closed:
                break
            await asyncio.sleep(0.02)
        thread.close()
        with pytest.raises(RuntimeError, match="closed"):
            await thread.run(lambda: 1)

    asyncio.run(scenario())
    assert closed == ["reader"]


def test_a_file_that_is_no_video_says_what_it_is_and_ingest_says_so_before_it_asks_the_broker(tmp_path):
    """It said only "cannot open video X" (FFmpeg's "moov atom not found" above it), and ingest warned about the
    camera's configuration, from the broker, first (a trial of odd sources)."""
    from click.testing import CliRunner

    from its_faust.cli import main

    empty, text = tmp_path / "empty.mp4", tmp_path / "notes.mp4"
    empty.write_bytes(b"")
    text.write_text("not a video")
    with pytest.raises(SourceError, match=r"empty\.mp4: the file is empty$"):
        FrameReader(SourceSpec.parse(str(empty)))
    with pytest.raises(SourceError, match=r"notes\.mp4: not a video or picture OpenCV can read \(11 bytes"):
        FrameReader(SourceSpec.parse(str(text)))
    done = CliRunner().invoke(main, ["ingest", "--source", str(text), "--camera", "cam-x"],
                              env={"ITS_FAUST_BROKER_URL": "kafka://127.0.0.1:1"})
    assert done.exit_code == 2 and "cannot open video" in done.output and "broker" not in done.output, done.output


def test_a_camera_that_sends_says_how_it_goes_once_a_minute(caplog):
    """A long or looping ingest said nothing between "started" and "finished"."""
    import logging

    from its_faust.ingest import IngestStats, ProgressLog

    clock = [0.0]
    progress, stats = ProgressLog(every_s=60.0, clock=lambda: clock[0]), IngestStats("cam-1")
    with caplog.at_level(logging.INFO, logger="its_faust.ingest"):
        for second in range(1, 151):  # 150 s at 10 fps, one frame in ten rejected
            clock[0] = float(second)
            stats.frames_sent += 9
            stats.frames_rejected += 1
            progress(stats)
    said = [r.getMessage() for r in caplog.records]
    assert said == ["camera cam-1: 540 frames sent in the last 60 s (9.0 fps), 60 rejected; 540 sent in all",
                    "camera cam-1: 540 frames sent in the last 60 s (9.0 fps), 60 rejected; 1080 sent in all"]


def test_a_looped_file_removed_meanwhile_ends_and_says_why(clip_frames, tmp_path, settings):
    import cv2

    from its_faust.ingest import _CheckedFrames

    video = tmp_path / "one.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 360))
    writer.write(clip_frames[0])
    writer.release()
    frames = _CheckedFrames(FrameReader(SourceSpec.parse(str(video))), settings.ingest, loop_source=True)
    assert frames.next(True) is not None and frames.next(True) is not None  # played again
    video.unlink()
    assert frames.next(True) is None
    assert frames.ended_short().startswith(f"could not play it again (cannot open video {video}")
    frames.reader.close()


def test_a_file_sent_as_a_live_camera_under_its_own_rate_is_sampled_on_its_own_clock():
    """A 30 fps file at --fps 10 sent every frame at 10 a second, each stamped as it was sent: in slow motion, its
    speeds a third of the truth. A camera at 10 fps would have filmed one frame in three."""
    import asyncio

    from its_faust.ingest import _Pacer

    async def kept(positions, pacer):
        return [i for i, position in enumerate(positions) if await pacer.keep(position)]

    file_fps = 300.0  # (a fast file: the pacer waits each kept frame's slot for real)
    positions = [1000 + i / file_fps for i in range(30)]
    assert asyncio.run(kept(positions, _Pacer(3 / file_fps, live=False, sampled=0.5 / file_fps))) == list(range(0, 30, 3))
    # Played again from its start (--loop): sampled afresh, not held until the old position comes round.
    again = positions[:9] + positions[:9]
    assert asyncio.run(kept(again, _Pacer(3 / file_fps, live=False, sampled=0.5 / file_fps))) == [0, 3, 6, 9, 12, 15]
    # Not sampled (a file sent as a file): every frame, each waited for.
    assert asyncio.run(kept(positions[:6], _Pacer(3 / file_fps, live=False))) == list(range(6))


def test_a_live_camera_drops_its_frames_while_the_broker_takes_none_and_says_when_it_stopped_and_came_back(caplog):
    """A restarted broker: a live camera's frames waited in the producer, reached the workers a minute old to be
    shed there, and the camera said nothing of its own (a trial)."""
    import asyncio

    from its_faust.ingest import IngestStats, _Deliveries

    async def go():
        loop = asyncio.get_running_loop()
        stats = IngestStats(camera_id="cam-1")
        live, file = _Deliveries("cam-1", stats, live=True, fps=10.0), _Deliveries("cam-2", stats, live=False, fps=30.0)
        waiting = [loop.create_future() for _ in range(20)]
        for delivery in waiting:
            live.sent(delivery)
            file.sent(delivery)
        assert live.limit == 20 and live.to_drop() and not file.to_drop()  # 2 s of a 10 fps camera's frames waiting
        live.last_taken -= 6.0
        assert live.to_drop() and "camera cam-1: the broker has taken none of its frames for 6 s (20 waiting)" in caplog.text
        waiting[0].set_result(None)
        waiting[1].set_exception(RuntimeError("UnknownError"))
        await asyncio.sleep(0)
        assert "camera cam-1: the broker takes its frames again, after 6 s (2 live frames dropped meanwhile)" in caplog.text
        assert live.waiting == 18 and not live.to_drop()
        assert stats.send_errors == 2  # the failed frame, as each of the two saw it
        assert caplog.text.count("takes its frames again") == 1  # the other never said it had stopped
    asyncio.run(go())


def test_a_frame_the_producer_cannot_take_is_dropped_if_live_and_waited_for_if_a_files(monkeypatch, caplog):
    """A hung broker held a camera in its send, and the producer's timeout then ended the camera for good; a file's
    camera said nothing of it for 40 s, and a live one counted one frame dropped for each 2 s waited."""
    import asyncio

    from aiokafka.errors import KafkaTimeoutError

    from its_faust import ingest

    class Producer:
        def __init__(self, timeouts: int | None, hang_s: float = 3600):
            self.timeouts, self.hang_s, self.sent = timeouts, hang_s, []

        async def send(self, topic, key, value):
            if self.timeouts is None or self.timeouts > 0:
                if self.timeouts:
                    self.timeouts -= 1
                await asyncio.sleep(self.hang_s)  # hung
                raise KafkaTimeoutError()
            self.sent.append(value)
            return "delivery"

    monkeypatch.setattr(ingest, "LIVE_WAITING_S", 0.05)
    monkeypatch.setattr(ingest, "STALLED_AFTER_S", 0.1)
    stats = ingest.IngestStats("cam-1")

    async def go():
        live = ingest._Deliveries("cam-1", stats, live=True, fps=40.0, camera=True)
        hung = await ingest._queue_frame(Producer(None), "t", b"k", b"f", live)
        timed_out = await ingest._queue_frame(Producer(1, hang_s=0), "t", b"k", b"f", live)
        file_as_live = ingest._Deliveries("cam-3", stats, live=True, fps=40.0)  # resumes where it was: one frame
        await ingest._queue_frame(Producer(None), "t", b"k", b"f", file_as_live)
        kept = Producer(3)
        delivery = await ingest._queue_frame(kept, "t", b"k", b"f", ingest._Deliveries("cam-2", stats, live=False, fps=5))
        # A file's camera stopped while the broker takes nothing ends (it had waited for the broker for ever).
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.2, stop.set)
        stopped = await asyncio.wait_for(ingest._queue_frame(Producer(None), "t", b"k", b"f", ingest._Deliveries(
            "cam-4", stats, live=False, fps=5), stop), 5)
        return hung, timed_out, delivery, kept.sent, stopped

    monkeypatch.setattr(ingest, "STOP_CHECK_S", 0.05)
    assert asyncio.run(go()) == (None, None, "delivery", [b"f"], None)
    assert stats.frames_dropped == 2 + 1 + 1  # 0.05 s of a 40 fps camera's, one at least, and the file's one
    assert "camera cam-2: the broker has taken none of its frames for 0 s (0 waiting): is it reachable, and not hung " \
           "or overloaded? A file's frames wait for it" in caplog.text.replace("for 1 s", "for 0 s")
    assert caplog.text.count("camera cam-2: the broker has taken none") == 1
