"""The analytics stage's closer of silent cameras (agents/analyze.py), on small fakes of the consumer and checkpoints."""

import asyncio
import time
from contextlib import asynccontextmanager
from types import SimpleNamespace

from faust.types import TP

import agents.analyze as analyze
from its_faust import topics
from schemas import TrackRecord
from tables.camera_analytics import FrameOutput


def _track(camera: str, seq: int) -> TrackRecord:
    return TrackRecord(camera_id=camera, seq=seq, captured_at=10.0, width=64, height=48, detected_at=10.1,
                       tracked_at=10.2, tracker_frame=seq, model="m@v", detections=0, worker="w:1", objects=[])


class _Actor:
    def __init__(self, closed: list, camera: str):
        self.closed, self.camera = closed, camera

    def close(self, moment, why: str) -> FrameOutput:
        self.closed.append(self.camera)
        return FrameOutput()


class _Checkpoints:
    """Its lock is where a frame of cam-b comes in while cam-a is being closed."""

    def __init__(self, last_frames: dict, taken: dict, closed: list):
        self.last_frames, self.taken, self.closed = last_frames, taken, closed
        self.cache = SimpleNamespace(get=lambda key, camera: _Actor(closed, camera))
        self.fresh = None

    @asynccontextmanager
    async def between_frames(self):
        if self.fresh is None:  # the first close: cam-b's frame arrives meanwhile (what _analyze does)
            self.fresh = analyze._LastFrame(_track("cam-b", 2), 0, time.monotonic())
            self.last_frames[b"cam-b"] = self.fresh
            self.taken[0] = 11
        yield


class _Consumer:
    def __init__(self, taken: dict, waiting: int = 0):
        self.taken = taken
        self.waiting = waiting  # frames on the broker past those taken

    def assignment(self):
        return {TP(topics.tracks.get_topic_name(), 0)}

    async def highwaters(self, *tps):
        return {tp: self.taken[0] + self.waiting for tp in tps}


def _app(consumer, rebalancing: bool = False) -> SimpleNamespace:
    return SimpleNamespace(consumer=consumer, rebalancing=rebalancing, in_recovery=False)


class _Watchdog:
    def __init__(self, answers: list[bool]):
        self.answers = answers  # one per question; the last one for every question after

    async def broker_answers(self) -> bool:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def _run_closer(checkpoints, last_frames: dict, taken: dict, closed: list, rounds_s: float = 2.0) -> None:
    async def go():
        closer = asyncio.ensure_future(analyze._close_silent_cameras(checkpoints, last_frames, taken, silent_s=1.0))
        try:
            for _ in range(int(rounds_s / 0.05)):
                await asyncio.sleep(0.05)
                if closed:
                    break
            await asyncio.sleep(0.1)  # the rest of that round
        finally:
            if closer.done():
                closer.result()  # raises what stopped it
            closer.cancel()

    asyncio.run(go())


def test_a_camera_whose_frame_came_while_another_was_closed_is_not_closed(monkeypatch):
    long_ago = time.monotonic() - 100
    last_frames = {b"cam-a": analyze._LastFrame(_track("cam-a", 1), 0, long_ago),
                   b"cam-b": analyze._LastFrame(_track("cam-b", 1), 0, long_ago)}
    taken = {0: 10}
    monkeypatch.setattr(analyze, "app", _app(_Consumer(taken)))
    monkeypatch.setattr(analyze, "stall_watchdog", _Watchdog([True]))
    closed: list[str] = []
    checkpoints = _Checkpoints(last_frames, taken, closed)
    _run_closer(checkpoints, last_frames, taken, closed)
    assert closed == ["cam-a"]
    assert last_frames == {b"cam-b": checkpoints.fresh}  # the frame that came is kept, to be judged later


def test_no_camera_is_closed_while_the_broker_is_away_and_their_silence_counts_from_its_return(monkeypatch):
    """A broker away for over camera_silent_s closed every camera: zones emptied and alerts cleared with
    vehicles in view, which entered again (counted twice) once frames came back."""
    long_ago = time.monotonic() - 100
    last_frames = {b"cam-a": analyze._LastFrame(_track("cam-a", 1), 0, long_ago)}
    taken = {0: 10}
    monkeypatch.setattr(analyze, "app", _app(_Consumer(taken)))
    watchdog = _Watchdog([False, False, True])
    monkeypatch.setattr(analyze, "stall_watchdog", watchdog)
    closed: list[str] = []
    checkpoints = _Checkpoints({}, {}, closed)
    checkpoints.fresh = "no frame comes"
    back = time.monotonic()
    _run_closer(checkpoints, last_frames, taken, closed, rounds_s=1.8)  # three rounds: away, away, back
    assert closed == [] and watchdog.answers == [True]
    assert last_frames[b"cam-a"].heard >= back  # silent from the broker's return on
    _run_closer(checkpoints, last_frames, taken, closed, rounds_s=3.0)  # still no frame: closed, a second on
    assert closed == ["cam-a"]


def test_a_camera_is_not_closed_while_the_broker_holds_frames_of_its_partition_not_taken_yet(monkeypatch):
    """Asked of the broker, not of the consumer's last fetch: a worker that has not fetched since an outage
    or a rebalance holds an old end, and would close cameras whose frames are waiting."""
    long_ago = time.monotonic() - 100
    last_frames = {b"cam-a": analyze._LastFrame(_track("cam-a", 1), 0, long_ago)}
    taken = {0: 10}
    consumer = _Consumer(taken, waiting=3)
    monkeypatch.setattr(analyze, "app", _app(consumer))
    monkeypatch.setattr(analyze, "stall_watchdog", _Watchdog([True]))
    closed: list[str] = []
    checkpoints = _Checkpoints({}, {}, closed)
    checkpoints.fresh = "no frame comes"
    _run_closer(checkpoints, last_frames, taken, closed, rounds_s=1.5)
    assert closed == []
    consumer.waiting = 0  # all taken, and still nothing of cam-a: silent
    _run_closer(checkpoints, last_frames, taken, closed, rounds_s=1.5)
    assert closed == ["cam-a"]


class _RebalancingApp:
    def __init__(self, consumer, rebalancing: list[bool]):
        self.consumer, self.in_recovery = consumer, False
        self.answers = rebalancing  # one per question; the last one for every question after

    @property
    def rebalancing(self) -> bool:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_no_camera_is_closed_during_a_rebalance_and_their_silence_counts_from_its_end(monkeypatch):
    long_ago = time.monotonic() - 100
    last_frames = {b"cam-a": analyze._LastFrame(_track("cam-a", 1), 0, long_ago)}
    taken = {0: 10}
    worker = _RebalancingApp(_Consumer(taken), [True, True, False])
    monkeypatch.setattr(analyze, "app", worker)
    monkeypatch.setattr(analyze, "stall_watchdog", _Watchdog([True]))
    closed: list[str] = []
    checkpoints = _Checkpoints({}, {}, closed)
    checkpoints.fresh = "no frame comes"
    done = time.monotonic()
    _run_closer(checkpoints, last_frames, taken, closed, rounds_s=1.8)  # three rounds: rebalancing twice, then not
    assert closed == [] and worker.answers == [False]
    assert last_frames[b"cam-a"].heard >= done  # silent from the rebalance's end on
    _run_closer(checkpoints, last_frames, taken, closed, rounds_s=3.0)
    assert closed == ["cam-a"]
