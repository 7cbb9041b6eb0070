"""Where a topic ends, on the real embedded broker: consumer-group lag (``run``'s wait for analytics,
the API's readiness) and reading to the end (``replay``, ``cameras``, ``tail --no-follow``)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from its_faust.broker import EmbeddedBroker, bootstrap_servers
from its_faust.ingest import make_producer
from its_faust.topic_reader import GroupOffsetsReader, TopicReader, group_lag, group_offsets, partition_for
from its_faust.topic_names import COUNTS, CROSSINGS, ensure_topics


async def _send_one_batch(bootstrap: str, topic: str, key: bytes, count: int) -> None:
    producer = make_producer(bootstrap)
    await producer.start()
    try:  # as the pipeline's producers send: many records in one request
        await asyncio.gather(*[await producer.send(topic, b'{"n": %d}' % n, key=key) for n in range(count)])
    finally:
        await producer.stop()


async def _commit(bootstrap: str, group_id: str, tp: TopicPartition, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


def test_lag_counts_every_record_of_the_last_batch(settings):
    """The broker gives a partition's end as its last batch's start + 1: lag from that alone said 0
    while 7 records of the batch were still to do, and ``run`` read its counts before they were."""
    topic = settings.topic(CROSSINGS)
    tp = TopicPartition(topic, partition_for(b"cam-g", settings.partitions))
    with EmbeddedBroker() as broker:
        bootstrap = bootstrap_servers(broker.url)

        async def go():
            await ensure_topics(bootstrap, settings)
            await _send_one_batch(bootstrap, topic, b"cam-g", 10)
            await _commit(bootstrap, "lag-test", tp, 3)
            offsets = await group_offsets(bootstrap, "lag-test", [topic])
            lag = await group_lag(bootstrap, "lag-test", [topic])
            await _commit(bootstrap, "lag-test", tp, 10)
            return offsets, lag, await group_lag(bootstrap, "lag-test", [topic])

        offsets, lag, lag_when_done = asyncio.run(go())
    assert offsets[(topic, tp.partition)] == (3, 10)
    assert lag[topic][tp.partition] == 7 and sum(lag[topic].values()) == 7
    assert sum(lag_when_done[topic].values()) == 0


def test_the_apis_offsets_reader_keeps_one_consumer_and_sees_new_commits_and_new_topics(settings):
    """/ready and /metrics opened a consumer per call (a connection, metadata and a coordinator lookup each)."""
    topic, later = settings.topic(CROSSINGS), "its.created-later"
    tp = TopicPartition(topic, partition_for(b"cam-g", settings.partitions))
    with EmbeddedBroker() as broker:
        bootstrap = bootstrap_servers(broker.url)

        async def go():
            await ensure_topics(bootstrap, settings)
            await _send_one_batch(bootstrap, topic, b"cam-g", 10)
            await _commit(bootstrap, "lag-test", tp, 3)
            reader = GroupOffsetsReader(bootstrap, "lag-test", [topic, later], fresh_s=0.3)
            try:
                first, again = await reader.read(), await reader.read()  # the second: the first's answer
                # Kept open, it must not go on fetching what it was assigned (the frames, in the API).
                idle = reader._consumer.assignment() and set(reader._consumer.paused()) == reader._consumer.assignment()
                await _commit(bootstrap, "lag-test", tp, 10)
                await _send_one_batch(bootstrap, later, b"cam-g", 2)  # (the broker creates it)
                await asyncio.sleep(0.4)
                moved = await reader.read()
                opened_before_timeout = reader.consumers_opened
                await asyncio.sleep(0.4)
                try:
                    await asyncio.wait_for(reader.read(), 0.001)  # cut off mid-read: its consumer is not trusted again
                except asyncio.TimeoutError:
                    pass
                after_timeout = await reader.read()
                return first, again, moved, opened_before_timeout, after_timeout, reader.consumers_opened, idle
            finally:
                await reader.close()

        first, again, moved, opened_before_timeout, after_timeout, opened, idle = asyncio.run(go())
    assert first[(topic, tp.partition)] == (3, 10) and again is first and idle
    assert moved[(topic, tp.partition)] == (10, 10)
    assert sum(end for (t, _), (_, end) in moved.items() if t == later) == 2  # a topic created since: in
    assert opened_before_timeout == 1 and opened == 2 and after_timeout == moved


def test_reading_to_the_end_stops_while_another_camera_keeps_producing(settings):
    """``replay --camera`` never finished while any camera was live: the reader read on until a fetch came
    back empty. It stops at the end the topic had when it started, with every record up to there."""
    topic = settings.topic(COUNTS)
    with EmbeddedBroker() as broker:
        bootstrap = bootstrap_servers(broker.url)

        async def go():
            await ensure_topics(bootstrap, settings)
            await _send_one_batch(bootstrap, topic, b"cam-quiet", 30)
            producer = make_producer(bootstrap)
            await producer.start()

            async def live_camera():
                n = 0
                while True:  # a record every 10 ms, as long as the readers read
                    await producer.send_and_wait(topic, b'{"n": %d}' % n, key=b"cam-live")
                    n += 1
                    await asyncio.sleep(0.01)

            live = asyncio.create_task(live_camera())
            try:
                await asyncio.sleep(0.5)
                found = {}
                for keys in (None, [b"cam-quiet"], [b"cam-live"]):
                    reader = await TopicReader(bootstrap, topic, from_beginning=True, keys=keys).start()
                    try:
                        found[str(keys)] = await asyncio.wait_for(reader.read_to_end(), 20)
                    finally:
                        await reader.stop()
                return found
            finally:
                live.cancel()
                await producer.stop()

        found = asyncio.run(go())
    quiet = [m for m in found["None"] if m.key == b"cam-quiet"]
    assert len(quiet) == 30 and len(found["None"]) > 30
    assert [m.value for m in found["[b'cam-quiet']"] if m.key == b"cam-quiet"] == [m.value for m in quiet]
    assert len([m for m in found["[b'cam-live']"] if m.key == b"cam-live"]) > 10


def test_faust_recovery_gets_a_changelogs_end_from_the_log_and_a_stream_topics_from_the_broker(settings, monkeypatch):
    """Faust's recovery took a changelog's end from the broker's short figure, and a worker whose table
    copy had applied the whole last batch stopped with a ConsistencyError when a second worker joined
    (one join in three, in a trial). The worker's consumer now reads a changelog's end from the log."""
    from types import SimpleNamespace

    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.types import TP
    from yarl import URL

    from its_faust.kafka_transport import _Consumer

    changelog, frames = "its-faust-camera-tracker-changelog", settings.topic(CROSSINGS)
    with EmbeddedBroker() as broker:
        bootstrap = bootstrap_servers(broker.url)

        async def broker_ends(self, *tps):  # what Faust's own consumer asks the broker (ListOffsets)
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
            await consumer.start()
            try:
                return {TP(tp.topic, tp.partition): end for tp, end in (await consumer.end_offsets(
                    [TopicPartition(tp.topic, tp.partition) for tp in tps])).items()}
            finally:
                await consumer.stop()

        async def go():
            await ensure_topics(bootstrap, settings)
            for topic in (changelog, frames):
                await _send_one_batch(bootstrap, topic, b"cam-h", 6)
            consumer = object.__new__(_Consumer)
            consumer.app = SimpleNamespace(tables=SimpleNamespace(changelog_topics={changelog}),
                                           conf=SimpleNamespace(broker=[URL(f"kafka://{bootstrap}")]))
            part = partition_for(b"cam-h", settings.partitions)
            tps = [TP(changelog, part), TP(frames, part), TP(changelog, (part + 1) % settings.partitions)]
            return tps, await broker_ends(None, *tps), await consumer.highwaters(*tps)

        monkeypatch.setattr(faust_aiokafka.Consumer, "highwaters", broker_ends)
        tps, from_broker, ends = asyncio.run(go())
    log_tp, stream_tp, empty_tp = tps
    assert from_broker[log_tp] == 1  # the broker's figure: the last batch's first offset + 1
    assert ends[log_tp] == 6  # after the batch's last record (offset 5)
    assert ends[stream_tp] == from_broker[stream_tp] == 1  # stream topics: not Faust's recovery's business
    assert ends[empty_tp] == 0


def test_a_record_is_found_by_time_among_cameras_whose_clocks_differ():
    """An alert's frame gone from the API's memory is looked up by time; cameras sharing a partition each stamp
    their tracks with their own clock (a file's scene time), so the offsets' times do not grow across them."""
    import json
    import time

    from its_faust.topic_reader import find_near

    partitions = 4
    # Two keys of one partition: the test needs them to share it.
    keys = next([a, b] for a in (b"cam-live-%d" % i for i in range(50)) for b in (b"cam-file-%d" % j for j in range(50))
                if partition_for(a, partitions) == partition_for(b, partitions))
    live, file = keys
    topic = "clocks"

    async def scenario(bootstrap: str):
        producer = make_producer(bootstrap)
        await producer.start()
        now = time.time()
        try:
            sent = []
            for seq in range(400):  # the live camera on the wall clock; the file's clock 40 minutes ahead
                sent.append(await producer.send(topic, json.dumps({"seq": seq}).encode(), key=live,
                                                timestamp_ms=int((now + seq * 0.2) * 1000)))
                sent.append(await producer.send(topic, json.dumps({"seq": seq}).encode(), key=file,
                                                timestamp_ms=int((now + 2400 + seq) * 1000)))
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

        def seq_is(n):
            return lambda record: json.loads(record.value)["seq"] == n

        return [await find_near(bootstrap, topic, partitions, key, at, seq_is(n)) for key, n, at in
                [(live, 100, now + 20), (file, 100, now + 2500), (live, 399, now + 79.8), (file, 0, now + 2400),
                 (live, 5, now + 500)]]

    with EmbeddedBroker() as broker:
        found = asyncio.run(scenario(bootstrap_servers(broker.url)))
    assert [json.loads(r.value)["seq"] if r else None for r in found] == [100, 100, 399, 0, None]
    assert [r.key for r in found[:4]] == [live, file, live, file]
