"""The analytics stage's closer of silent cameras (agents/silent_cameras.py), on small fakes of the consumer and
checkpoints."""

import asyncio
import time
from contextlib import asynccontextmanager
from types import SimpleNamespace

from faust.types import TP

import agents.silent_cameras as silent_cameras
from agents.silent_cameras import LastFrame, SilentCameras
from its_faust import topics
from its_faust.delivery import Sent
from its_faust.topic_reader import partition_for
from schemas import TrackRecord
from schemas.tracks import TrackedObject
from tables.camera_analytics import CameraAnalytics, FrameOutput

TRACKS = topics.tracks.get_topic_name()


def _last(camera: str, seq: int, heard: float, partition: int = 0) -> LastFrame:
    return LastFrame(camera, seq, None, partition, heard, SimpleNamespace(key=camera.encode()))


class _Actor:
    def __init__(self, closed: list, camera: str, open_: bool = True):
        self.closed, self.camera_id, self.open = closed, camera, open_
        self.last_seq, self.last_at = 7, 1000.0

    def is_open(self) -> bool:
        return self.open

    def silent_s(self) -> float:
        return 1.0  # (the closer's own, in these tests)

    def close(self, moment, why: str) -> FrameOutput:
        self.closed.append(self.camera_id)
        self.open = False
        return FrameOutput()


class _Checkpoints:
    """Its lock is where a frame of cam-b comes in while cam-a is being closed (``fresh`` None: it comes)."""

    def __init__(self, closer: SilentCameras | None, closed: list, table: dict | None = None):
        self.closer, self.closed = closer, closed
        self.actors: dict[bytes, _Actor] = {}
        self.cache = SimpleNamespace(get=self._actor, table=table if table is not None else {})
        self.fresh = "no frame comes"
        self.written: list[tuple[bytes, object]] = []
        self.looked: list[tuple[bytes, bool]] = []  # the actors read from the table by the look at those taken over

    def _actor(self, key: bytes, camera: str) -> _Actor:
        if key not in self.actors:
            self.actors[key] = _Actor(self.closed, camera, open_=self.cache.table.get(key, True))
        return self.actors[key]

    @asynccontextmanager
    async def between_frames(self):
        if self.fresh is None:  # the first close: cam-b's frame arrives meanwhile (what the agent does)
            self.fresh = _last("cam-b", 2, time.monotonic())
            self.closer.last_frames[b"cam-b"] = self.fresh
            self.closer.taken[0] = 11
        yield

    async def write_between_frames(self, key, actor, event, sent, generation) -> None:
        self.written.append((key, event))

    def looked_at(self, key: bytes, partition: int, keep: bool) -> None:
        self.looked.append((key, keep))


class _Consumer:
    def __init__(self, taken: dict, waiting: int = 0, partitions: tuple[int, ...] = (0,)):
        self.taken = taken
        self.waiting = waiting  # frames on the broker past those taken
        self.partitions = partitions
        self.committed: dict[int, int] = {}  # the group's commits
        self.ends: dict[int, int] = {}  # the logs' ends, where not right after the frames taken
        self.upstream: dict[tuple[str, int], tuple[int, int]] = {}  # frames and detections: (committed, end)
        self.asked = 0  # for the logs' ends: once in each round that finds a camera silent long enough

    def assignment(self):
        return {TP(TRACKS, p) for p in self.partitions}

    def topic_partitions(self, topic):
        return 4

    def next_to_commit(self, tp):
        return self.committed.get(tp.partition)

    async def highwaters(self, *tps):
        self.asked += 1
        return {tp: self.ends.get(tp.partition, self.taken.get(tp.partition, 0)) + self.waiting for tp in tps}


class _App:
    def __init__(self, consumer, rebalancing: list[bool] | None = None):
        self.consumer, self.in_recovery, self.consumer_generation_id = consumer, False, 1
        self.answers = rebalancing or [False]  # one per question; the last one for every question after

    @property
    def rebalancing(self) -> bool:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class _Watchdog:
    def __init__(self, answers: list[bool]):
        self.answers = answers  # one per question; the last one for every question after

    async def broker_answers(self) -> bool:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def _closer(monkeypatch, consumer, watchdog=(True,), rebalancing=None, table=None):
    async def group_offsets(bootstrap, group, topic_names, partitions=None):
        return dict(consumer.upstream)

    monkeypatch.setattr(silent_cameras, "group_offsets", group_offsets)
    monkeypatch.setattr(silent_cameras, "app", _App(consumer, rebalancing))
    monkeypatch.setattr(silent_cameras, "stall_watchdog", _Watchdog(list(watchdog)))
    closed: list[str] = []
    closer = SilentCameras(None, silent_s=1.0)
    closer.checkpoints = _Checkpoints(closer, closed, table)
    closer.taken = consumer.taken
    return closer, closed


def _run(closer: SilentCameras, closed: list, until=None, deadline_s: float = 20.0) -> None:
    """Runs the closer (a round every 0.5 s) until ``until()`` holds (default: a camera was closed). Judged by
    what the rounds did, not by how many fit in a time: a loaded machine stretches them."""
    async def go():
        task = asyncio.ensure_future(closer.run())
        try:
            waited = 0.0
            while not (until() if until else closed):
                assert waited < deadline_s, f"the closer did not get there in {deadline_s:g} s"
                await asyncio.sleep(0.02)
                waited += 0.02
                if task.done():
                    task.result()  # raises what stopped it
        finally:
            task.cancel()

    asyncio.run(go())


def _rounds_judging(consumer: _Consumer, n: int):
    """``until`` for _run: ``n`` more rounds judged whether a camera is silent (asked the logs' ends)."""
    goal = consumer.asked + n
    return lambda: consumer.asked >= goal


def test_a_camera_whose_frame_came_while_another_was_closed_is_not_closed(monkeypatch):
    long_ago = time.monotonic() - 100
    closer, closed = _closer(monkeypatch, _Consumer({0: 10}))
    closer.last_frames.update({b"cam-a": _last("cam-a", 1, long_ago), b"cam-b": _last("cam-b", 1, long_ago)})
    closer.checkpoints.fresh = None
    _run(closer, closed)
    assert closed == ["cam-a"]
    assert closer.last_frames == {b"cam-b": closer.checkpoints.fresh}  # the frame that came is kept, to be judged later
    assert [key for key, _ in closer.checkpoints.written] == [b"cam-a"]  # the closed state is written, not undone


def test_no_camera_is_closed_while_the_broker_is_away_and_their_silence_counts_from_its_return(monkeypatch):
    """A broker away for over camera_silent_s closed every camera: zones emptied and alerts cleared with
    vehicles in view, which entered again (counted twice) once frames came back."""
    closer, closed = _closer(monkeypatch, _Consumer({0: 10}), watchdog=(False, False, True))
    closer.last_frames[b"cam-a"] = _last("cam-a", 1, time.monotonic() - 100)
    back = time.monotonic()
    _run(closer, closed, until=lambda: closer.last_frames[b"cam-a"].heard >= back)  # away, away, back
    assert closed == [] and silent_cameras.stall_watchdog.answers == [True]  # silent from the broker's return on
    _run(closer, closed)  # still no frame: closed, a second on
    assert closed == ["cam-a"] and time.monotonic() - back >= 1.0


def test_a_camera_is_not_closed_while_the_broker_holds_frames_of_its_partition_not_taken_yet(monkeypatch):
    """Asked of the broker, not of the consumer's last fetch: a worker that has not fetched since an outage
    or a rebalance holds an old end, and would close cameras whose frames are waiting."""
    consumer = _Consumer({0: 10}, waiting=3)
    closer, closed = _closer(monkeypatch, consumer)
    closer.last_frames[b"cam-a"] = _last("cam-a", 1, time.monotonic() - 100)
    _run(closer, closed, until=_rounds_judging(consumer, 3))
    assert closed == []
    consumer.waiting = 0  # all taken, and still nothing of cam-a: silent
    _run(closer, closed)
    assert closed == ["cam-a"]


def test_a_camera_is_not_closed_while_what_was_on_its_way_to_analyze_then_has_not_come(monkeypatch):
    """Detect or track behind (restarting, recovering on another worker) for camera_silent_s: a file camera,
    whose scene clock then shows no gap, was closed and re-entered every zone under the same track ids."""
    consumer = _Consumer({0: 10})
    frames, detections = topics.frames.get_topic_name(), topics.detections.get_topic_name()
    consumer.upstream = {(frames, 0): (40, 95), (detections, 0): (38, 40), (frames, 1): (0, 0)}
    closer, closed = _closer(monkeypatch, consumer)
    closer.last_frames[b"cam-a"] = _last("cam-a", 1, time.monotonic() - 100)
    _run(closer, closed, until=_rounds_judging(consumer, 3))
    assert closed == [] and closer.last_frames[b"cam-a"].upstream_ends == {frames: 95, detections: 40}
    # Frames of other cameras keep coming (the ends move on): what was there then has gone through; closed.
    consumer.upstream = {(frames, 0): (95, 130), (detections, 0): (41, 44)}
    _run(closer, closed)
    assert closed == ["cam-a"]


def test_no_camera_is_closed_during_a_rebalance_and_their_silence_counts_from_its_end(monkeypatch):
    closer, closed = _closer(monkeypatch, _Consumer({0: 10}), rebalancing=[True, True, False])
    closer.last_frames[b"cam-a"] = _last("cam-a", 1, time.monotonic() - 100)
    done = time.monotonic()
    _run(closer, closed, until=lambda: closer.last_frames[b"cam-a"].heard >= done)  # rebalancing twice, then not
    assert closed == [] and silent_cameras.app.answers == [False]  # silent from the rebalance's end on
    _run(closer, closed)
    assert closed == ["cam-a"] and time.monotonic() - done >= 1.0


def test_a_camera_left_open_by_the_worker_before_is_closed_by_the_one_that_took_it_over(monkeypatch):
    """A worker killed after a camera stopped, before it was closed: its replacement never heard of the camera
    (no frame of it came), so its alerts stayed active and its zones occupied for good."""
    partition_of = {key: partition_for(key, 4) for key in (b"cam-open", b"cam-closed")}
    held = partition_of[b"cam-open"]
    elsewhere = next(p for p in range(4) if p not in partition_of.values())  # a partition another worker holds
    table = {b"cam-open": True, b"cam-closed": False}  # key -> left open
    table.update({key: True for key in (b"cam-%d" % n for n in range(40)) if partition_for(key, 4) == elsewhere})
    consumer = _Consumer({}, partitions=(held, partition_of[b"cam-closed"]))
    consumer.committed[held] = consumer.ends[held] = 10  # none taken by this worker: what the group committed is done
    closer, closed = _closer(monkeypatch, consumer, table=table)
    took_over = time.monotonic()
    _run(closer, closed, until=lambda: closer.checkpoints.looked)  # the first round's look at those taken over
    watched = dict(closer.last_frames)
    _run(closer, closed)
    assert b"cam-open" in watched and b"cam-closed" not in watched
    assert all(partition_for(key, 4) in consumer.partitions for key in watched)  # none of another worker's
    assert watched[b"cam-open"].heard >= took_over and watched[b"cam-open"].seq == 7  # silent from the takeover
    # Read from the table to look: the closed camera's actor is not held live (a worker held every camera of its
    # partitions), the open one's is, until its partition moves away.
    assert (b"cam-closed", False) in closer.checkpoints.looked and (b"cam-open", True) in closer.checkpoints.looked
    assert closed[:1] == ["cam-open"]
    [(key, stand_in)] = [(k, e) for k, e in closer.checkpoints.written if k == b"cam-open"]
    assert (stand_in.message.topic, stand_in.message.partition) == (TRACKS, held)  # written where its frames go


def test_a_close_says_how_long_the_camera_was_silent_as_far_as_the_worker_knows():
    """A camera taken over was said to have had "no frames for 38 s" when its last frame was 85 s before (from an
    upgrade trial): the worker that took it over counts from then."""
    from agents.silent_cameras import _TakenOver

    assert _last("cam-a", 1, heard=100.0).silence(130.4) == "no frames for 30 s"
    taken_over = LastFrame("cam-b", 7, None, 0, 100.0, _TakenOver(b"cam-b", TRACKS, 0))
    assert taken_over.silence(138.0) == "no frames since this worker took the camera over, 38 s ago"


def test_a_camera_analytics_actor_is_open_while_it_holds_tracks_and_not_once_closed():
    from tables.camera_analytics import Moment

    actor = CameraAnalytics("cam")
    assert not actor.is_open()
    box = TrackedObject(track_id=1, cls=2, label="car", conf=0.9, x1=0, y1=0, x2=5, y2=5)
    actor.update(TrackRecord(camera_id="cam", seq=1, captured_at=10.0, width=64, height=48, detected_at=10.1,
                             tracked_at=10.2, tracker_frame=1, model="m@v", detections=1, worker="w:1", objects=[box]),
                 None)
    assert actor.is_open()
    actor.close(Moment("cam", 1, 20.0), "no frames for 10 s")
    assert not actor.is_open()


def test_the_closer_sends_what_the_close_made_under_the_cameras_key(monkeypatch):
    sent = []

    async def send(event, topic, value, timestamp=None):
        sent.append((event.key, topic.get_topic_name()))
        return Sent(topic.get_topic_name(), asyncio.get_running_loop().create_future())

    from schemas.analytics import Alert, FrameRef

    out = FrameOutput(alerts=[Alert(camera_id="cam-a", seq=1, captured_at=10.0, alert_id="a1", kind="wrong_way",
                                    state="cleared", severity="critical", subject="track-1", started_at=1,
                                    snapshot=FrameRef(camera_id="cam-a", seq=1), message="cleared (no frames for 30 s)")])
    monkeypatch.setattr(silent_cameras, "send", send)
    closer, closed = _closer(monkeypatch, _Consumer({0: 10}))
    closer.checkpoints.actors[b"cam-a"] = SimpleNamespace(close=lambda moment, why: out, is_open=lambda: True)
    last = _last("cam-a", 1, time.monotonic() - 100)
    closer.last_frames[b"cam-a"] = last
    asyncio.run(closer._close(b"cam-a", last, time.monotonic(), generation=1))
    assert sent == [(b"cam-a", topics.alerts.get_topic_name())]
    assert closer.checkpoints.written == [(b"cam-a", last.event)]


def test_a_camera_is_not_closed_once_a_rebalance_began_after_its_silence_was_judged(monkeypatch):
    """The close waits for the lock (a flush) and for the cameras closed before it: its partition may be
    another worker's by then, which would close it again (zone exits and alert clears twice)."""
    closer, closed = _closer(monkeypatch, _Consumer({0: 10}))
    last = _last("cam-a", 1, time.monotonic() - 100)
    closer.last_frames[b"cam-a"] = last
    silent_cameras.app.consumer_generation_id = 2  # judged in generation 1
    asyncio.run(closer._close(b"cam-a", last, time.monotonic(), generation=1))
    assert closed == [] and closer.last_frames == {b"cam-a": last}


def test_after_a_rebalance_every_partition_held_is_looked_at_again(monkeypatch):
    """One may have been another worker's in between, which left a camera open there."""
    closer, closed = _closer(monkeypatch, _Consumer({0: 10}), table={})
    closer._note_cameras_taken_over(time.monotonic())
    assert closer.last_frames == {}
    key = next(b"cam-%d" % n for n in range(100) if partition_for(b"cam-%d" % n, 4) == 0)
    closer.checkpoints.cache.table[key] = True  # left open there by a worker that held it meanwhile
    closer._note_cameras_taken_over(time.monotonic())
    assert closer.last_frames == {}  # the same generation: known
    silent_cameras.app.consumer_generation_id = 2
    closer._note_cameras_taken_over(time.monotonic())
    assert list(closer.last_frames) == [key]


def test_what_was_on_its_way_is_noted_again_where_a_log_went_back():
    """A broker that lost its logs under a running worker: ends and commits start again near 0, and a camera whose
    ends were noted at 5000 was never closed."""
    frames = topics.frames.get_topic_name()
    last = _last("cam-a", 1, time.monotonic() - 100, partition=2)
    assert not last.passed_upstream({(frames, 2): (4990, 5000), (frames, 3): (0, 9)})  # noted: 5000
    assert not last.passed_upstream({(frames, 2): (40, 40)}) and last.upstream_ends == {frames: 40}  # noted again
    assert last.passed_upstream({(frames, 2): (41, 44)})


def test_a_slow_camera_is_judged_by_its_own_silence_limit(monkeypatch):
    """A snapshot camera sending every 40 s was closed between any two of its frames (camera_silent_s, 30 s)."""
    closer, closed = _closer(monkeypatch, _Consumer({0: 10}))
    a_while_ago = time.monotonic() - 5  # over the closer's 1 s
    closer.last_frames.update({b"cam-a": _last("cam-a", 1, a_while_ago), b"cam-b": _last("cam-b", 1, a_while_ago)})
    closer.paced(b"cam-b", 120.0)  # its actor's: three of its 40 s intervals
    closer.paced(b"nobody", 120.0)  # (a camera not heard of: nothing to note)
    _run(closer, closed)
    assert closed == ["cam-a"] and b"cam-b" in closer.last_frames


def test_a_slow_camera_keeps_its_own_limit_through_redeliveries_and_a_take_over(monkeypatch):
    """A frame skipped as a redelivery (or as idle) set the limit back to the closer's 30 s; a camera taken over
    after a rebalance was judged by it too (a review)."""
    closer, closed = _closer(monkeypatch, _Consumer({0: 10}))
    event = SimpleNamespace(key=b"cam-b", message=SimpleNamespace(partition=0))
    record = SimpleNamespace(camera_id="cam-b", seq=1, scene_time=None)
    closer.heard(event, record)
    closer.paced(b"cam-b", 120.0)
    closer.heard(event, record)  # the same frame again: skipped, not applied
    assert closer.last_frames[b"cam-b"].silent_s == 120.0
