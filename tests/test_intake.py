"""In-order intake and the consumer's commit rules, against small stand-ins for Faust's consumer."""

from __future__ import annotations

import asyncio
import weakref
from collections import defaultdict
from types import SimpleNamespace

from faust.types import TP

from its_faust import intake as intake_module
from its_faust.intake import Intake
from its_faust.kafka_transport import _Consumer

FRAMES = "its.frames"


class Message:
    def __init__(self, tp, offset, generation_id=1):
        self.tp, self.topic, self.offset, self.generation_id = tp, tp.topic, offset, generation_id
        self.acked = False


class FakeConsumer:
    def __init__(self, committed=None, log_start=0):
        self.guarded_topics: set = set()
        self.admitted = weakref.WeakSet()
        self.released: list = []
        self.done_without_message: list = []
        self._committed_offset = defaultdict(lambda: None, committed or {})
        self.log_start = log_start
        self.sought: list = []

    def next_to_commit(self, tp):
        return self._committed_offset.get(tp)

    def release(self, message):
        self.released.append(message.offset)

    def count_missing_as_done(self, tp, first, end):
        self.done_without_message.append((tp, first, end))

    async def earliest_offsets(self, *tps):
        return {tp: self.log_start for tp in tps}

    async def seek_wait(self, partitions):
        self.sought += list(partitions.items())


def admit_all(intake, messages):
    async def go():
        return [m.offset for m in messages if await intake.admit(SimpleNamespace(message=m))]

    return asyncio.run(go())


def make(committed=None, generation=1, log_start=0):
    consumer = FakeConsumer(committed, log_start)
    app = SimpleNamespace(consumer=consumer, consumer_generation_id=generation)
    return app, consumer, Intake(app, "detect", [FRAMES])


def test_messages_pass_in_order_and_copies_are_dropped():
    tp = TP(FRAMES, 0)
    app, consumer, intake = make({tp: 10})
    assert consumer.guarded_topics == {FRAMES}
    passed = admit_all(intake, [Message(tp, o) for o in (10, 11, 12, 11, 12, 13)])
    assert passed == [10, 11, 12, 13] and consumer.sought == [] and consumer.released == [11, 12]
    assert {m.offset for m in consumer.admitted} <= {10, 11, 12, 13}


def test_a_hole_rewinds_once_and_holds_the_partition_until_the_missing_message_comes(monkeypatch):
    tp, other = TP(FRAMES, 0), TP(FRAMES, 1)
    app, consumer, intake = make({tp: 40, other: 7})
    clock = [100.0]
    monkeypatch.setattr(intake_module.time, "monotonic", lambda: clock[0])
    stream = [40, 41, 42, 45, 46, 47]  # 43 and 44 were dropped by the consumer
    passed = admit_all(intake, [Message(tp, o) for o in stream] + [Message(other, 7)])
    assert passed == [40, 41, 42, 7]  # the other partition is not held up
    assert consumer.sought == [(tp, 43)]  # asked once, not once per later message
    clock[0] += intake_module.REWIND_AGAIN_AFTER_S + 1
    assert admit_all(intake, [Message(tp, 48)]) == [] and consumer.sought == [(tp, 43), (tp, 43)]
    # The re-read comes from 43 on: everything is let through once, in order.
    assert admit_all(intake, [Message(tp, o) for o in (43, 44, 45, 46)]) == [43, 44, 45, 46]
    assert consumer.released == [45, 46, 47, 48] and consumer.done_without_message == []


def test_offsets_the_log_does_not_have_are_skipped_not_waited_for(monkeypatch):
    tp = TP(FRAMES, 0)
    clock = [0.0]
    monkeypatch.setattr(intake_module.time, "monotonic", lambda: clock[0])
    # Retention: the log now starts above the committed offset; go on at once.
    app, consumer, intake = make({tp: 5}, log_start=20)
    assert admit_all(intake, [Message(tp, 20), Message(tp, 21)]) == [20, 21]
    assert consumer.done_without_message == [(tp, 5, 20)] and consumer.sought == []
    # A commit marker of a transactional producer at 30: re-reads from 30 keep starting at 31.
    app, consumer, intake = make({tp: 30})
    for attempt in range(intake_module.REWINDS_BEFORE_HOLE):
        assert admit_all(intake, [Message(tp, 31), Message(tp, 32)]) == []
        clock[0] += intake_module.REWIND_AGAIN_AFTER_S + 0.1
    assert consumer.sought == [(tp, 30)] * intake_module.REWINDS_BEFORE_HOLE
    assert admit_all(intake, [Message(tp, 31), Message(tp, 32)]) == [31, 32]
    assert consumer.done_without_message == [(tp, 30, 31)]


def test_a_re_read_held_up_behind_a_long_backlog_is_waited_for_not_taken_for_a_hole(monkeypatch):
    """101 dropped; 102-141 were in the agent's buffer already and keep coming, 0.2 s apart, for 8 s before
    the re-read does. Counting each 2 s as a failed re-read had committed 101 unprocessed."""
    tp = TP(FRAMES, 0)
    app, consumer, intake = make({tp: 100})
    clock = [1000.0]
    monkeypatch.setattr(intake_module.time, "monotonic", lambda: clock[0])
    assert admit_all(intake, [Message(tp, 100)]) == [100]
    for offset in range(102, 142):
        assert admit_all(intake, [Message(tp, offset)]) == []
        clock[0] += 0.2
    assert consumer.done_without_message == [] and len(consumer.sought) > 1 and set(consumer.sought) == {(tp, 101)}
    assert admit_all(intake, [Message(tp, o) for o in range(101, 145)]) == list(range(101, 145))


def test_a_new_generation_starts_at_the_committed_offset_and_old_messages_are_dropped():
    tp = TP(FRAMES, 3)
    app, consumer, intake = make({tp: 5})
    assert admit_all(intake, [Message(tp, 5), Message(tp, 6)]) == [5, 6]
    app.consumer_generation_id = 2
    consumer._committed_offset[tp] = 6  # sought back to what was committed: 6 comes again
    assert admit_all(intake, [Message(tp, 7, generation_id=1)]) == []  # stale: skipped by Faust too
    assert admit_all(intake, [Message(tp, 8, generation_id=2)]) == [] and consumer.sought == [(tp, 6)]
    assert admit_all(intake, [Message(tp, o, generation_id=2) for o in (6, 7, 8)]) == [6, 7, 8]


def bare_consumer(committed=None) -> _Consumer:
    """The transport's consumer with only the bookkeeping its commit rules use."""
    consumer = object.__new__(_Consumer)
    consumer._unacked_messages = weakref.WeakSet()
    consumer._waiting_for_ack = None
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._committed_offset = defaultdict(lambda: None, committed or {})
    consumer._gap = defaultdict(list)
    consumer.guarded_topics = {FRAMES}
    consumer._committed_before_revoke = {}
    consumer.generation_start = {}
    return consumer


def acked(consumer, tp, *offsets):
    consumer._acked[tp].extend(offsets)
    consumer._acked_index[tp].update(offsets)


def test_commits_only_a_run_that_starts_at_the_committed_offset():
    tp = TP(FRAMES, 0)
    consumer = bare_consumer({tp: 41})
    acked(consumer, tp, 42, 43)  # 41 never processed (Faust's own rule lets one missing message through)
    assert consumer._new_offset(tp) is None
    acked(consumer, tp, 41)
    assert consumer._new_offset(tp) == 44 and consumer._acked[tp] == []


def test_after_a_revocation_the_last_committed_offset_still_guards_the_head():
    tp = TP(FRAMES, 2)
    consumer = bare_consumer()  # Faust forgot the committed offset on revocation...
    consumer._committed_before_revoke = {tp: 38}  # ...we did not
    acked(consumer, tp, 45, 46, 47)  # acknowledged out of a dropped stretch
    assert consumer._new_offset(tp) is None
    acked(consumer, tp, 38, 39)
    assert consumer._new_offset(tp) == 40


def test_skipped_messages_do_not_count_and_gaps_are_not_filled():
    tp = TP(FRAMES, 1)
    consumer = bare_consumer({tp: 10})
    consumer.admitted = weakref.WeakSet()
    consumer.app = SimpleNamespace(consumer_generation_id=3)
    skipped = Message(tp, 10, generation_id=3)
    assert consumer.ack(skipped) is False and consumer._acked[tp] == []  # never admitted: Faust skipped it
    asyncio.run(consumer._add_gap(tp, 11, 20))
    assert consumer._gap[tp] == []
    refused = Message(tp, 11, generation_id=3)
    consumer._unacked_messages.add(refused)
    consumer.release(refused)  # the intake refused it: nothing waits for it, and it never counts
    assert refused not in consumer._unacked_messages and consumer._acked[tp] == []
    consumer.count_missing_as_done(tp, 10, 12)
    assert consumer._new_offset(tp) == 12


def test_read_offsets_are_not_kept_for_guarded_topics():
    """Faust drops fetched messages below the read offset; the intake must see (and sort out) those."""
    from its_faust.kafka_transport import _ReadOffsets

    guarded, other = TP(FRAMES, 0), TP("its-faust-camera-tracker-changelog", 0)
    offsets = _ReadOffsets({FRAMES})
    offsets[guarded] = 40
    offsets.update({other: 7, guarded: 41})
    assert offsets[guarded] is None and offsets[other] == 7


def test_messages_no_one_acknowledges_are_not_waited_for_for_ever(monkeypatch, caplog):
    """A failed agent's messages are held by its crash's traceback and never acknowledged: a worker told to stop
    waited for them for minutes (a disk-full trial). Faust's wait now ends once none has been for a while."""
    import asyncio
    import time

    from its_faust import kafka_transport

    monkeypatch.setattr(kafka_transport, "WAIT_EMPTY_GIVE_UP_S", 1.0)

    class Held:
        acked = False

    def waiting_consumer(messages):
        consumer = bare_consumer()
        consumer._stopped = consumer._crashed = SimpleNamespace(is_set=lambda: False)
        for m in messages:
            consumer._unacked_messages.add(m)
        consumer.commits = 0

        async def commit(*args, **kwargs):
            consumer.commits += 1

        consumer.commit = consumer.commit_and_end_transactions = commit
        return consumer

    held = [Held()]
    stuck = waiting_consumer(held)

    async def nothing_acknowledged(timeout):
        await asyncio.sleep(0.05)

    stuck._wait_for_ack = nothing_acknowledged
    started = time.monotonic()
    asyncio.run(stuck.wait_empty())
    assert 1.0 <= time.monotonic() - started < 5 and stuck.commits > 1
    assert "1 message(s) taken by agents are not acknowledged" in caplog.text

    # One acknowledged now and then keeps the wait going: a stage finishing its work is waited for.
    working = [Held() for _ in range(6)]
    busy = waiting_consumer(working)

    async def one_acknowledged(timeout):
        await asyncio.sleep(0.05)
        message = next(m for m in working if not m.acked)
        message.acked, busy.last_ack_at = True, time.monotonic()

    busy._wait_for_ack = one_acknowledged
    caplog.clear()
    asyncio.run(busy.wait_empty())
    assert all(m.acked for m in working) and "not acknowledged" not in caplog.text


def test_messages_a_stage_waiting_for_the_disk_holds_are_not_waited_for(monkeypatch, caplog):
    """Held 15 s each rebalance, a worker with a full disk was past its rebalance timeout: dropped from the group,
    rejoining, and so rebalancing every worker again and again (a review)."""
    import asyncio
    import time

    from tables import storage

    class Held:
        acked = False

    consumer = bare_consumer()
    consumer._stopped = consumer._crashed = SimpleNamespace(is_set=lambda: False)
    held = [Held()]
    consumer._unacked_messages.add(held[0])

    async def commit(*args, **kwargs):
        pass

    async def nothing_acknowledged(timeout):
        await asyncio.sleep(0.05)

    consumer.commit = consumer.commit_and_end_transactions = commit
    consumer._wait_for_ack = nothing_acknowledged
    monkeypatch.setattr(storage, "waiting", {"count": 0.0})
    started = time.monotonic()
    asyncio.run(consumer.wait_empty())
    assert time.monotonic() - started < 5 and "while count wait(s) for this worker's storage" in caplog.text  # (15 s: the wait for acks it bounds)


def test_a_batch_set_aside_as_unreadable_is_dead_lettered_and_moved_past_at_once(monkeypatch):
    from its_faust import unreadable_batches
    from its_faust.unreadable_batches import UnreadableBatch

    tp = TP(FRAMES, 0)
    monkeypatch.setattr(unreadable_batches, "_found", {})
    unreadable_batches._record(UnreadableBatch(FRAMES, 0, 12, 15, "BadGzipFile: not gzip"))
    letters = []

    async def dead_letter(self, batch):
        letters.append((self.stage, batch.first, batch.end))

    monkeypatch.setattr(Intake, "_dead_letter", dead_letter)
    app, consumer, intake = make({tp: 10})
    assert admit_all(intake, [Message(tp, o) for o in (10, 11, 15, 16)]) == [10, 11, 15, 16]
    assert consumer.sought == [] and consumer.done_without_message == [(tp, 12, 15)]  # no re-read: none would bring it
    assert letters == [("detect", 12, 15)]
