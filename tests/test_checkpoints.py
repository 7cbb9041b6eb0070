"""Write-behind of camera actor state (tables/checkpoints.py), with a small fake table and stream.

The real thing runs in every integration test (track and analyze agents on the embedded
broker and RocksDB tables); here the ordering guarantees are pinned down one by one.
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass, field
from types import SimpleNamespace

import faust
import pytest
from faust.types import TP
from aiokafka.errors import InvalidTimestampError

from tables.actor_cache import ActorCache
from its_faust import delivery
from its_faust.delivery import DeliveryFailed
from tables.checkpoints import Checkpoints


@dataclass
class Counter:
    """A stand-in actor: the seqs it applied."""

    camera_id: str
    applied: list = field(default_factory=list)

    def apply(self, seq: int) -> None:
        self.applied.append(seq)


class Table(dict):
    """Records each write with the partition Faust would give it (that of ``faust.current_event()``)."""

    def __init__(self):
        super().__init__()
        self.writes: list[tuple[bytes, int, list]] = []

    def __setitem__(self, key, value):
        self.writes.append((key, faust.current_event().message.partition, json.loads(value)))
        super().__setitem__(key, value)


@dataclass
class Message:
    partition: int
    offset: int
    generation_id: int = 1
    topic: str = "its.detections"


@dataclass
class Event:
    key: bytes
    message: Message


class Stream:
    def __init__(self):
        self.acked: list[int] = []

    async def ack(self, event):
        self.acked.append(event.message.offset)


@dataclass
class App:
    consumer_generation_id: int = 1
    held: tuple = (0, 1, 2, 3)  # the partitions of its.detections the consumer is assigned

    @property
    def consumer(self):
        return SimpleNamespace(assignment=lambda: {TP("its.detections", p) for p in self.held} | {TP("its.other", 9)})


def make(interval_s=10.0, max_frames=256):
    table = Table()
    cache = ActorCache(table, lambda cam, stored: Counter(cam, json.loads(stored) if stored else []),
                       lambda actor: json.dumps(actor.applied).encode())
    app, stream = App(), Stream()
    return Checkpoints(app, stream, cache, "test", interval_s=interval_s, max_frames=max_frames), table, stream, app


class Topic:
    """Hands out the given acknowledgements (futures) for the records sent, in turn."""

    def __init__(self, acks=()):
        self.acks = list(acks)
        self.sent: list[bytes] = []

    async def send(self, key, value, timestamp=None):
        self.sent.append(value)
        return self.acks.pop(0)

    def get_topic_name(self) -> str:
        return "its.tracks"


async def frame(checkpoints, key: bytes, partition: int, offset: int, seq: int, acks=()):
    """One frame through a step: applied to the camera's actor, one record per given acknowledgement."""
    event = Event(key, Message(partition, offset, checkpoints.app.consumer_generation_id))
    topic = Topic(acks)
    async with checkpoints.step(event) as step:
        actor = step.actor(key.decode())
        actor.apply(seq)
        for _ in acks:
            await step.send(topic, f"{key.decode()}:{seq}".encode())
        step.changed(actor, seq)
    return actor


def in_event_loop(test):
    @functools.wraps(test)
    def run():
        asyncio.run(test())

    return run


def done_future(loop):
    future = loop.create_future()
    future.set_result("acknowledged")
    return future


@in_event_loop
async def test_state_is_written_once_per_camera_per_flush_in_its_latest_frames_partition():
    checkpoints, table, stream, _ = make()
    await frame(checkpoints, b"a", 0, 10, 1)
    await frame(checkpoints, b"b", 3, 20, 1)
    await frame(checkpoints, b"a", 0, 11, 2)
    assert table.writes == [] and stream.acked == []  # nothing before the flush
    await checkpoints.flush()
    assert sorted(table.writes) == [(b"a", 0, [1, 2]), (b"b", 3, [1])]
    assert stream.acked == [10, 20, 11]


@in_event_loop
async def test_a_flush_waits_for_the_outputs_and_writes_nothing_when_one_is_lost():
    checkpoints, table, stream, _ = make()
    loop = asyncio.get_running_loop()
    pending = loop.create_future()
    await frame(checkpoints, b"a", 0, 10, 1, [done_future(loop), pending])
    flush = asyncio.ensure_future(checkpoints.flush())
    await asyncio.sleep(0.01)
    assert not flush.done() and table.writes == []  # the state waits for its frame's output
    pending.set_exception(ConnectionError("broker gone"))
    with pytest.raises(DeliveryFailed):
        await flush
    assert table.writes == [] and stream.acked == []  # the frame comes again, from the old state


@pytest.fixture
def dead_letters(monkeypatch) -> list:
    """The dead letters sent, as (stage, offset, reason); each delivered at once."""
    letters = []

    async def dead_letter(stage, event, reason):
        letters.append((stage, event.message.offset, reason))
        return done_future(asyncio.get_running_loop())

    async def refused_again(record):
        raise InvalidTimestampError()

    monkeypatch.setattr(delivery, "dead_letter", dead_letter)
    monkeypatch.setattr(delivery, "alone", SimpleNamespace(send=refused_again))
    return letters


def test_a_refused_record_is_sent_again_on_its_own_once_though_its_next_frame_and_the_flush_both_wait_for_it(
        dead_letters, monkeypatch):
    """Sent again twice, a batch-mate the broker takes on its own would land twice."""
    alone = []

    async def delivered_alone(record):
        alone.append(record.value)

    monkeypatch.setattr(delivery, "alone", SimpleNamespace(send=delivered_alone))

    async def run():
        checkpoints, table, stream, _ = make()
        loop = asyncio.get_running_loop()
        refused = loop.create_future()
        refused.set_exception(InvalidTimestampError())  # its batch was refused, for another record in it
        await frame(checkpoints, b"a", 0, 10, 1, [refused])
        await frame(checkpoints, b"a", 0, 11, 2, [done_future(loop)])  # waits for frame 1's record
        await checkpoints.flush()  # and so does the flush
        return stream

    stream = asyncio.run(run())
    assert alone == [b"a:1"] and dead_letters == [] and stream.acked == [10, 11]


def test_a_flush_that_failed_is_not_tried_again_as_the_agent_stops(dead_letters):
    """Its frames come again from the last state written: a second try would dead-letter the refused ones twice."""
    async def run():
        checkpoints, table, stream, _ = make()
        loop = asyncio.get_running_loop()
        refused, lost = loop.create_future(), loop.create_future()
        refused.set_exception(InvalidTimestampError())
        lost.set_exception(ConnectionError("broker gone"))
        await frame(checkpoints, b"a", 0, 10, 1, [refused])
        await frame(checkpoints, b"b", 1, 20, 1, [lost])
        with pytest.raises(DeliveryFailed):
            await checkpoints.flush()
        await checkpoints.close()
        return table, stream

    table, stream = asyncio.run(run())
    assert table.writes == [] and stream.acked == [] and len(dead_letters) == 1


def test_a_frame_whose_output_the_broker_refuses_is_dead_lettered_and_the_stage_goes_on(dead_letters):
    """Sent again it would be refused again (a timestamp out of the topic's range): the agent would fail on it
    for ever."""
    async def run():
        checkpoints, table, stream, _ = make()
        loop = asyncio.get_running_loop()
        refused = loop.create_future()
        refused.set_exception(InvalidTimestampError())
        await frame(checkpoints, b"a", 0, 10, 1, [refused])
        await frame(checkpoints, b"a", 0, 11, 2, [done_future(loop)])  # (its camera's previous record is settled)
        await checkpoints.flush()
        return table, stream

    table, stream = asyncio.run(run())
    assert table.writes == [(b"a", 0, [1, 2])] and stream.acked == [10, 11]
    [(stage, offset, reason)] = dead_letters
    assert (stage, offset) == ("test", 10) and "refused the record it made on its.tracks" in reason
    assert "timestamp" in reason


@in_event_loop
async def test_no_flush_cuts_into_a_frame():
    checkpoints, table, _, _ = make()
    event = Event(b"a", Message(0, 10))
    async with checkpoints.step(event) as step:
        actor = step.actor("a")
        actor.apply(1)
        flush = asyncio.ensure_future(checkpoints.flush())
        await asyncio.sleep(0.01)  # the frame's output is being sent
        assert not flush.done()
        step.changed(actor, 1)
    await flush
    assert table.writes == [(b"a", 0, [1])]


@in_event_loop
async def test_after_a_rebalance_the_frames_since_the_last_flush_are_dropped_unwritten():
    checkpoints, table, stream, app = make()
    await frame(checkpoints, b"a", 0, 10, 1)
    await checkpoints.flush()
    await frame(checkpoints, b"a", 0, 11, 2)
    app.consumer_generation_id = 2  # the intake reads offset 11 again
    actor = await frame(checkpoints, b"a", 0, 11, 2)
    assert actor.applied == [1, 2]  # rebuilt from the table, not [1, 2, 2]
    await checkpoints.flush()
    assert table.writes[-1] == (b"a", 0, [1, 2]) and stream.acked == [10, 11]


@in_event_loop
async def test_after_a_rebalance_the_cameras_that_moved_away_are_forgotten():
    """Kept, a worker would end up holding the live actor and last records of every camera it ever owned."""
    checkpoints, table, _, app = make()
    loop = asyncio.get_running_loop()
    await frame(checkpoints, b"a", 0, 10, 1, acks=[done_future(loop)])
    await frame(checkpoints, b"b", 1, 20, 1, acks=[done_future(loop)])
    await checkpoints.flush()
    assert set(checkpoints.cache._live) == set(checkpoints._latest_records) == {b"a", b"b"}
    app.consumer_generation_id, app.held = 2, (1, 3)  # partition 0 went to another worker
    await frame(checkpoints, b"b", 1, 21, 2)
    assert set(checkpoints.cache._live) == {b"b"} and set(checkpoints._latest_records) <= {b"b"}
    app.consumer_generation_id, app.held = 3, (0, 1, 3)  # and came back: its actor is the table's
    assert (await frame(checkpoints, b"a", 0, 11, 2)).applied == [1, 2]


@in_event_loop
async def test_an_actor_read_only_to_look_at_is_not_held_live_and_one_kept_goes_with_its_partition():
    checkpoints, table, _, app = make()
    await frame(checkpoints, b"a", 0, 10, 1)  # a frame applied, not flushed: its actor must stay live
    checkpoints.cache.get(b"idle", "idle")
    checkpoints.cache.get(b"open", "open")
    checkpoints.looked_at(b"idle", 1, keep=False)
    checkpoints.looked_at(b"open", 2, keep=True)
    checkpoints.looked_at(b"a", 0, keep=False)
    assert set(checkpoints.cache._live) == {b"a", b"open"}
    app.consumer_generation_id, app.held = 2, (0, 1)  # partition 2 went to another worker
    await frame(checkpoints, b"a", 0, 10, 1)
    assert b"open" not in checkpoints.cache._live


@in_event_loop
async def test_a_camera_restarted_after_a_failed_frame_has_its_frames_since_the_flush_again():
    checkpoints, table, _, _ = make()
    await frame(checkpoints, b"a", 0, 10, 1)
    await checkpoints.flush()
    await frame(checkpoints, b"a", 0, 11, 2)
    await frame(checkpoints, b"a", 0, 12, 3)
    async with checkpoints.step(Event(b"a", Message(0, 13))) as step:
        actor = step.actor("a")
        actor.apply(4)
        actor.applied.append("garbage")  # the frame fails half-way: the agent dead-letters it
        checkpoints.restart_camera(b"a", "a", Counter.apply)
    assert checkpoints.cache.get(b"a", "a").applied == [1, 2, 3]
    await checkpoints.flush()
    assert table.writes[-1] == (b"a", 0, [1, 2, 3])


@in_event_loop
async def test_interval_zero_writes_after_every_frame():
    checkpoints, table, stream, _ = make(interval_s=0)
    await frame(checkpoints, b"a", 0, 10, 1)
    await frame(checkpoints, b"a", 0, 11, 2)
    assert table.writes == [(b"a", 0, [1]), (b"a", 0, [1, 2])] and stream.acked == [10, 11]


@in_event_loop
async def test_a_full_batch_is_flushed_at_once_and_a_quiet_one_by_the_timer():
    checkpoints, table, stream, _ = make(interval_s=0.05, max_frames=3)
    checkpoints.start()
    try:
        for offset in range(3):
            await frame(checkpoints, b"a", 0, offset, offset)
        assert stream.acked == [0, 1, 2]  # max_frames reached
        await frame(checkpoints, b"a", 0, 3, 3)
        assert stream.acked == [0, 1, 2]
        await asyncio.sleep(0.2)  # no more frames come: the timer writes the last one
        assert stream.acked == [0, 1, 2, 3] and table.writes[-1] == (b"a", 0, [0, 1, 2, 3])
    finally:
        await checkpoints.close()


@in_event_loop
async def test_a_failed_background_flush_fails_the_agent():
    checkpoints, table, stream, _ = make(interval_s=0.02)
    loop = asyncio.get_running_loop()
    lost = loop.create_future()
    lost.set_exception(ConnectionError("broker gone"))

    async def agent():  # as the agents use it
        async with checkpoints:
            await frame(checkpoints, b"a", 0, 10, 1, [lost])
            await asyncio.sleep(5)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(agent(), 2)
    assert table.writes == [] and stream.acked == []


@in_event_loop
async def test_an_agent_that_stops_writes_what_it_did_since_the_last_flush():
    checkpoints, table, stream, _ = make()
    await frame(checkpoints, b"a", 0, 10, 1)
    await checkpoints.close()
    assert table.writes == [(b"a", 0, [1])] and stream.acked == [10]


@in_event_loop
async def test_an_agent_whose_frame_failed_writes_nothing_more():
    checkpoints, table, stream, _ = make()
    await frame(checkpoints, b"a", 0, 10, 1)
    with pytest.raises(ConnectionError):
        async with checkpoints.step(Event(b"a", Message(0, 11))) as step:
            step.actor("a").apply(2)
            raise ConnectionError("the track record was refused")
    await checkpoints.close()
    assert table.writes == [] and stream.acked == []  # both frames come again, from the table's state


@in_event_loop
async def test_a_camera_whose_state_cannot_be_rebuilt_fails_the_agent():
    checkpoints, table, stream, _ = make()
    await frame(checkpoints, b"a", 0, 10, 1)

    def fails_again(actor, seq):
        raise ValueError("the same bug")

    with pytest.raises(ValueError):
        async with checkpoints.step(Event(b"a", Message(0, 11))) as step:
            step.actor("a").apply(2)
            checkpoints.restart_camera(b"a", "a", fails_again)
    await checkpoints.close()
    assert table.writes == [] and stream.acked == []  # not acknowledged with an older state: both come again


@in_event_loop
async def test_a_cameras_record_waits_until_its_previous_frames_records_are_on_the_broker():
    checkpoints, table, stream, _ = make()
    loop = asyncio.get_running_loop()
    first = loop.create_future()
    await frame(checkpoints, b"a", 0, 10, 1, [first])
    second = asyncio.ensure_future(frame(checkpoints, b"a", 0, 11, 2, [done_future(loop)]))
    await asyncio.sleep(0.01)
    assert not second.done()  # frame 2's record is not sent while frame 1's could still be lost
    first.set_result("acknowledged")
    await second
    await checkpoints.flush()
    assert table.writes == [(b"a", 0, [1, 2])] and stream.acked == [10, 11]


@in_event_loop
async def test_a_lost_record_fails_the_next_frame_of_its_camera_before_it_sends():
    checkpoints, table, stream, _ = make()
    loop = asyncio.get_running_loop()
    lost = loop.create_future()
    await frame(checkpoints, b"a", 0, 10, 1, [lost])
    lost.set_exception(ConnectionError("batch expired"))
    topic = Topic([done_future(loop)])
    with pytest.raises(DeliveryFailed):
        async with checkpoints.step(Event(b"a", Message(0, 11))) as step:
            step.actor("a").apply(2)
            await step.send(topic, b"a:2")
    assert topic.sent == []  # frame 2's record never left: no later record lands after a lost one
    await checkpoints.close()
    assert table.writes == [] and stream.acked == []


def test_a_state_the_disk_cannot_take_is_written_once_it_can_and_its_frames_acknowledged_then(monkeypatch):
    asyncio.run(_test_a_state_the_disk_cannot_take_is_written_once_it_can_and_its_frames_acknowledged_then(monkeypatch))


async def _test_a_state_the_disk_cannot_take_is_written_once_it_can_and_its_frames_acknowledged_then(monkeypatch):
    """A failed write stopped the agent; its frames, held by the failure, kept a worker told to stop waiting for
    minutes (a disk-full trial). The stage now waits: nothing acknowledged until the state is written."""
    from tables import storage

    monkeypatch.setattr(storage, "FIRST_RETRY_S", 0.01)
    checkpoints, table, stream, _ = make()
    full = [2]  # writes refused before there is room again
    write = Table.__setitem__

    def setitem(self, key, value):
        if full[0]:
            full[0] -= 1
            raise Exception("IO error: No space left on device: While appending to file: camera-tracker-0.db/000004.log")
        write(self, key, value)

    monkeypatch.setattr(Table, "__setitem__", setitem)
    await frame(checkpoints, b"a", 0, 10, 1)
    flush = asyncio.ensure_future(checkpoints.flush())
    await asyncio.sleep(0.005)
    assert not flush.done() and stream.acked == []
    await asyncio.wait_for(flush, 5)
    assert table.writes == [(b"a", 0, [1])] and stream.acked == [10] and full == [0]


def test_a_state_waiting_for_the_disk_is_left_to_the_next_owner_once_its_partition_moves(monkeypatch):
    asyncio.run(_test_a_state_waiting_for_the_disk_is_left_to_the_next_owner_once_its_partition_moves(monkeypatch))


async def _test_a_state_waiting_for_the_disk_is_left_to_the_next_owner_once_its_partition_moves(monkeypatch):
    from tables import storage

    monkeypatch.setattr(storage, "FIRST_RETRY_S", 0.01)
    checkpoints, table, stream, app = make()

    def refused(self, key, value):
        app.consumer_generation_id = 2  # a rebalance while it waits
        raise Exception("IO error: No space left on device")

    monkeypatch.setattr(Table, "__setitem__", refused)
    await frame(checkpoints, b"a", 0, 10, 1)
    await asyncio.wait_for(checkpoints.flush(), 5)
    assert table.writes == [] and stream.acked == []  # its frames come again to the partition's next owner
