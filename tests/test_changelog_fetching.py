"""Changelog partitions Faust pauses are paused in aiokafka too, on the consumer's own thread."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

from aiokafka import TopicPartition
from faust.types import TP

from its_faust.kafka_transport import _Consumer, _ConsumerThread

CHANGELOG = "its-faust-camera-tracker-changelog"
FRAMES = "its.frames"


class FakeAiokafka:
    def __init__(self, assigned):
        self.assigned = set(assigned)
        self.calls: list = []

    def assignment(self):
        return self.assigned

    def _call(self, what, tps):
        # What the real one needs: TopicPartition tuples, and its own thread's running loop
        # (pausing makes a future of it, resuming settles one).
        assert all(isinstance(tp, TopicPartition) for tp in tps)
        asyncio.get_running_loop()
        self.calls.append((what, sorted(tps), threading.current_thread().name))

    def pause(self, *tps):
        self._call("pause", tps)

    def resume(self, *tps):
        self._call("resume", tps)


def make_consumer(assigned):
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, name="kafka-thread", daemon=True)
    runner.start()
    thread = object.__new__(_ConsumerThread)
    thread._consumer = FakeAiokafka(assigned)
    thread.thread_loop = loop
    consumer = object.__new__(_Consumer)
    consumer._active_partitions = set(assigned)
    consumer._paused_partitions = set()
    consumer._thread = thread
    consumer.app = SimpleNamespace(tables=SimpleNamespace(changelog_topics={CHANGELOG}))
    return consumer, thread._consumer, loop


def settle(loop):
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)


def test_only_changelog_partitions_are_paused_in_aiokafka_and_resumed_again():
    frames, log0, log1, unassigned = TP(FRAMES, 0), TP(CHANGELOG, 0), TP(CHANGELOG, 1), TP(CHANGELOG, 7)
    consumer, kafka, loop = make_consumer({frames, log0, log1})
    try:
        consumer.pause_partitions(p for p in (frames, log0, log1, unassigned))  # any iterable, as Faust passes
        settle(loop)
        assert consumer._paused_partitions == {frames, log0, log1, unassigned}  # Faust's own bookkeeping as before
        assert kafka.calls == [("pause", [log0, log1], "kafka-thread")]  # the stream partition keeps being fetched
        consumer.resume_partitions({frames, log1})
        settle(loop)
        assert kafka.calls[1:] == [("resume", [log1], "kafka-thread")]
        consumer.resume_partitions({frames})  # nothing of a changelog: aiokafka is not touched
        settle(loop)
        assert len(kafka.calls) == 2
    finally:
        loop.call_soon_threadsafe(loop.stop)


def test_a_pause_after_the_consumer_thread_stopped_is_dropped_not_raised():
    consumer, kafka, loop = make_consumer({TP(CHANGELOG, 0)})
    loop.call_soon_threadsafe(loop.stop)
    while loop.is_running():
        pass
    loop.close()
    consumer.pause_partitions({TP(CHANGELOG, 0)})  # during a revocation or a stop: must not crash the worker
    assert kafka.calls == [] and consumer._paused_partitions == {TP(CHANGELOG, 0)}


def test_closing_the_consumer_runs_on_its_own_threads_loop():
    """Faust would close the aiokafka client on the app's loop; its connections belong to the consumer thread's."""
    closed_on: list[str] = []

    async def close():
        asyncio.get_running_loop()
        closed_on.append(threading.current_thread().name)

    consumer, _, loop = make_consumer(set())
    thread = consumer._thread
    thread._consumer = SimpleNamespace(_closed=False, _client=SimpleNamespace(close=close),
                                       _coordinator=SimpleNamespace(close=close))
    try:
        thread.close()
        settle(loop)
        assert thread._consumer._closed is True
        assert closed_on == ["kafka-thread", "kafka-thread"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
    while loop.is_running():
        pass
    loop.close()
    thread.close()  # once the thread's loop is closed: nothing to do, nothing raised
