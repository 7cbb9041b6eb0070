"""The stalled-partition watchdog, against a small stand-in for Faust's consumer."""

import asyncio
import os
from types import SimpleNamespace

from faust.types import TP

from its_faust import watchdog as wd


class FakeConsumer:
    def __init__(self, tps):
        self.flow_active = True
        self._committed_offset = {tp: 10 for tp in tps}
        self._highwater = {tp: 50 for tp in tps}
        self._buffered_partitions = set(tps)
        self._tps = set(tps)
        self.resumed, self.sought = [], []

    def assignment(self):
        return self._tps

    def highwater(self, tp):
        return self._highwater[tp]

    def resume_partitions(self, tps):
        self.resumed += list(tps)

    async def seek_wait(self, partitions):
        self.sought += list(partitions.items())


def _watched(monkeypatch, tps, topics=("its.frames",), stall_s=15.0, rebalancing=False):
    """A watchdog on a stand-in consumer owning ``tps``, and the clock it reads (set it to move time)."""
    consumer = FakeConsumer(tps)
    app = SimpleNamespace(consumer=consumer, in_recovery=False, rebalancing=rebalancing)
    dog = wd.StallWatchdog(app, list(topics), stall_s=stall_s)
    clock = [0.0]
    monkeypatch.setattr(wd.time, "monotonic", lambda: clock[0])
    return consumer, app, dog, clock


def test_stalled_partition_is_sought_back_and_moving_ones_are_left(monkeypatch):
    stuck, moving, other = TP("its.frames", 2), TP("its.frames", 3), TP("elsewhere", 0)
    consumer, app, dog, clock = _watched(monkeypatch, [stuck, moving, other])

    for step in range(5):  # 0, 5, ..., 20 s
        consumer._committed_offset[moving] += 3  # this one makes progress
        asyncio.run(dog.check())
        clock[0] += 5
    assert consumer.sought == [(stuck, 10)] and consumer.resumed == [stuck]
    assert stuck not in consumer._buffered_partitions and dog.recoveries == 1


def test_no_action_while_rebalancing_or_caught_up(monkeypatch):
    tp = TP("its.frames", 0)
    consumer, app, dog, clock = _watched(monkeypatch, [tp], stall_s=1, rebalancing=True)
    for _ in range(5):
        asyncio.run(dog.check())
        clock[0] += 1
    app.rebalancing = False
    consumer._highwater[tp] = 10  # nothing to read: not a stall
    for _ in range(5):
        asyncio.run(dog.check())
        clock[0] += 1
    assert consumer.sought == []


def test_by_default_every_agent_source_topic_is_watched(monkeypatch):
    """Analytics, counts and configuration stall the same way detection does: all are watched."""
    tracks, changelog = TP("its.tracks", 1), TP("its-faust-camera-tracker-changelog", 1)
    consumer = FakeConsumer([tracks, changelog])
    agents = {
        "analyze": SimpleNamespace(channel=SimpleNamespace(topics=("its.tracks",))),
        "detect": SimpleNamespace(channel=SimpleNamespace(topics=("its.frames",))),
    }
    app = SimpleNamespace(consumer=consumer, in_recovery=False, rebalancing=False, agents=agents)
    dog = wd.StallWatchdog(app, stall_s=15)
    clock = [0.0]
    monkeypatch.setattr(wd.time, "monotonic", lambda: clock[0])
    for _ in range(5):
        asyncio.run(dog.check())
        clock[0] += 5
    assert consumer.sought == [(tracks, 10)]  # the changelog is no agent's source: left to Faust


def test_the_workers_agents_source_topics_are_all_watched():
    from its_faust.app import app, settings
    from its_faust.topic_names import CAMERA_COMMANDS, CROSSINGS, DETECTIONS, FRAMES, TRACKS, ZONE_EVENTS

    app.discover()
    expected = {settings.topic(t) for t in (FRAMES, DETECTIONS, TRACKS, CROSSINGS, ZONE_EVENTS, CAMERA_COMMANDS)}
    assert wd.agent_source_topics(app) == expected


def test_a_partition_that_stalls_again_after_a_reseek_makes_the_worker_stuck_until_it_moves_or_a_rebalance(monkeypatch):
    """A repeated stall was only logged: the worker went on owning a partition nobody read, with no restart."""
    tp = TP("its.frames", 0)
    consumer, app, dog, clock = _watched(monkeypatch, [tp])

    def run(seconds: int) -> None:
        for _ in range(seconds // 5):
            asyncio.run(dog.check())
            clock[0] += 5

    run(20)
    assert len(consumer.sought) == 1 and dog.stuck == []  # a first re-seek: it may well start again
    consumer._committed_offset[tp] = 12  # it did
    run(20)
    assert len(consumer.sought) == 2 and dog.stuck == []  # a new stall, a first re-seek again
    run(20)
    assert len(consumer.sought) == 3 and dog.stuck == [tp]  # the re-seek did not help
    app.rebalancing = True
    run(5)
    assert dog.stuck == []  # a rebalance gives it a new chance


def test_the_ready_file_is_kept_fresh_while_the_worker_is_well_and_removed_when_it_is_stuck(tmp_path):
    from its_faust.worker import install_liveness

    timers = []
    app = SimpleNamespace(timer=lambda interval, name: lambda fn: timers.append(fn) or fn)
    dog = SimpleNamespace(stuck=[])
    ready = tmp_path / "worker.ready"
    install_liveness(app, ready, dog)
    (touch,) = timers
    asyncio.run(touch())
    assert not ready.exists()  # not ready yet: the timer does not make it so
    ready.touch()
    os.utime(ready, (1.0, 1.0))
    asyncio.run(touch())
    assert ready.stat().st_mtime > 1e9  # touched: a probe sees it fresh
    dog.stuck = [TP("its.frames", 0)]
    asyncio.run(touch())
    assert not ready.exists()
    dog.stuck = []  # a rebalance gave the partition a new chance, and it moves
    asyncio.run(touch())
    assert ready.exists()


def _watched_with_a_broker(monkeypatch, tp, why: str):
    """A watchdog of ``tp`` that asks a broker at kafka://127.0.0.1:9, down (for ``why``) while ``down[0]``; and
    (consumer, watchdog, clock, down)."""
    from its_faust import broker

    consumer = FakeConsumer([tp])
    app = SimpleNamespace(consumer=consumer, in_recovery=False, rebalancing=False)
    dog = wd.StallWatchdog(app, [tp.topic], stall_s=15, broker_url="kafka://127.0.0.1:9")
    clock, down = [0.0], [True]
    monkeypatch.setattr(wd.time, "monotonic", lambda: clock[0])

    def reachable(url, timeout):
        if down[0]:
            raise broker.BrokerUnreachable(f"broker 127.0.0.1:9 is not reachable ({why})")

    monkeypatch.setattr(broker, "wait_reachable", reachable)
    return consumer, dog, clock, down


def test_partitions_stopped_by_a_broker_that_does_not_answer_wait_for_it_and_it_is_said_once(monkeypatch, caplog):
    """A broker outage read as a stuck partition (re-seeks, then an error, then a restart by the liveness probe)."""
    tp = TP("its.frames", 0)
    consumer, dog, clock, down = _watched_with_a_broker(monkeypatch, tp, "Connection refused")
    for _ in range(12):  # 60 s of a broker that does not answer
        asyncio.run(dog.check())
        clock[0] += 5
    assert consumer.sought == [] and dog.recoveries == 0 and dog.stuck == []
    assert caplog.text.count("partitions stopped moving: broker 127.0.0.1:9 is not reachable") == 1
    down[0] = False  # back, and the partition still does not move: that is the partition's
    for _ in range(4):
        asyncio.run(dog.check())
        clock[0] += 5
    assert "the broker kafka://127.0.0.1:9 answers again" in caplog.text
    assert consumer.sought[0] == (tp, 10) and dog.recoveries >= 1


def test_a_broker_back_is_said_though_the_partitions_move_again_and_its_next_outage_is_said_too(monkeypatch, caplog):
    """Asked only at a stall, a broker back was never said to be (its partitions moved again at once), and its
    next outage was not said at all: the watchdog still took it for down (a trial: a broker hung 20 s, then 90)."""
    tp = TP("its.frames", 0)
    consumer, dog, clock, down = _watched_with_a_broker(monkeypatch, tp, "hung")
    for outage in range(2):
        down[0] = True
        for _ in range(5):
            asyncio.run(dog.check())
            clock[0] += 5
        down[0] = False
        consumer._committed_offset[tp] += 10  # back: the partition moves at once (still behind its highwater)
        for _ in range(2):
            asyncio.run(dog.check())
            clock[0] += 5
        assert caplog.text.count("partitions stopped moving: broker 127.0.0.1:9 is not reachable (hung)") == outage + 1
        assert caplog.text.count("the broker kafka://127.0.0.1:9 answers again") == outage + 1
        assert dog.broker_down is None


def test_a_short_hang_is_said_within_a_check_and_not_taken_for_a_stalled_partition_at_the_brokers_return(monkeypatch,
                                                                                                           caplog):
    """Asked only once a partition had been still for 15 s, a broker hung 20 s was never said to be away, and the
    partition still at its return was re-sought as stalled (a trial)."""
    tp = TP("its.frames", 0)
    consumer, dog, clock, down = _watched_with_a_broker(monkeypatch, tp, "hung")
    down[0] = False
    asyncio.run(dog.check())  # moving
    down[0] = True
    clock[0] += 5
    asyncio.run(dog.check())  # still, 5 s into the hang: said at once
    assert caplog.text.count("partitions stopped moving: broker 127.0.0.1:9 is not reachable (hung)") == 1
    for _ in range(3):
        clock[0] += 5
        asyncio.run(dog.check())
    down[0] = False  # back at 20 s: the partition, still for 20 s, is not re-sought
    clock[0] += 5
    asyncio.run(dog.check())
    assert "answers again" in caplog.text and consumer.sought == [] and dog.recoveries == 0


def test_partitions_held_by_a_stage_waiting_for_the_disk_are_not_taken_for_stuck(monkeypatch, caplog):
    """A full disk: the track stage waited to write its state, and the watchdog re-sought its partition every 15 s,
    at ERROR from the second time, on the way to a restart by the liveness probe (a disk-full check)."""
    from tables import storage

    tp = TP("its.detections", 2)
    consumer, app, dog, clock = _watched(monkeypatch, [tp], topics=("its.detections",))
    monkeypatch.setattr(storage, "waiting", {"track": 0.0})
    for _ in range(12):  # a minute
        asyncio.run(dog.check())
        clock[0] += 5
    assert consumer.sought == [] and dog.recoveries == 0 and dog.stuck == []
    assert caplog.text.count("partitions stopped moving: track waiting for this worker's storage") == 1
    storage.waiting.clear()  # written again; a partition that still does not move is the partition's
    for _ in range(4):
        asyncio.run(dog.check())
        clock[0] += 5
    assert consumer.sought[0] == (tp, 10) and dog.recoveries >= 1
