"""Consumer-group lag against the real embedded broker (``run``'s wait for analytics, the API's status)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from its_faust.broker import EmbeddedBroker, bootstrap_servers
from its_faust.ingest import make_producer
from its_faust.results import group_lag, group_offsets, partition_for
from its_faust.topic_names import CROSSINGS, ensure_topics


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
