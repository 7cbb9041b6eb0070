"""The stalled-partition watchdog, against a small stand-in for Faust's consumer."""

import asyncio
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


def test_stalled_partition_is_sought_back_and_moving_ones_are_left(monkeypatch):
    stuck, moving, other = TP("its.frames", 2), TP("its.frames", 3), TP("elsewhere", 0)
    consumer = FakeConsumer([stuck, moving, other])
    app = SimpleNamespace(consumer=consumer, in_recovery=False, rebalancing=False)
    dog = wd.StallWatchdog(app, ["its.frames"], stall_s=15)
    clock = [100.0]
    monkeypatch.setattr(wd.time, "monotonic", lambda: clock[0])

    for step in range(5):  # 0, 5, ..., 20 s
        consumer._committed_offset[moving] += 3  # this one makes progress
        asyncio.run(dog.check())
        clock[0] += 5
    assert consumer.sought == [(stuck, 10)] and consumer.resumed == [stuck]
    assert stuck not in consumer._buffered_partitions and dog.recoveries == 1


def test_no_action_while_rebalancing_or_caught_up(monkeypatch):
    tp = TP("its.frames", 0)
    consumer = FakeConsumer([tp])
    app = SimpleNamespace(consumer=consumer, in_recovery=False, rebalancing=True)
    dog = wd.StallWatchdog(app, ["its.frames"], stall_s=1)
    clock = [0.0]
    monkeypatch.setattr(wd.time, "monotonic", lambda: clock[0])
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
