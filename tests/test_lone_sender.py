"""The lone sender (its_faust/delivery.py) against the real embedded broker: a record sent again on its own lands
where the worker's producer would have put it, with its key, value and scene-time timestamp."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from its_faust.broker import EmbeddedBroker
from its_faust.delivery import LoneSender, Sent


def test_a_record_sent_again_alone_lands_in_its_keys_partition_with_its_timestamp():
    async def scenario(bootstrap: str):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic("its.tracks", 4, 1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)  # as Faust's, partitioning by key
        await producer.start()
        first = await producer.send_and_wait("its.tracks", b"batch", key=b"cam-7")
        await producer.stop()
        lone = LoneSender(bootstrap=[bootstrap], idle_s=0.2)
        loop = asyncio.get_running_loop()
        await lone.send(Sent("its.tracks", loop.create_future(), b"cam-7", b"alone", timestamp=1_700_000_000.25))
        await asyncio.sleep(0.5)  # unused since: closed
        closed = lone._producer is None
        consumer = AIOKafkaConsumer("its.tracks", bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        got = []
        try:
            while len(got) < 2:
                for records in (await consumer.getmany(timeout_ms=2000)).values():
                    got.extend(records)
        finally:
            await consumer.stop()
        return first.partition, got, closed

    with EmbeddedBroker() as broker:
        partition, got, closed = asyncio.run(scenario(f"127.0.0.1:{broker.port}"))
    again = next(r for r in got if r.value == b"alone")
    assert again.key == b"cam-7" and again.partition == partition and again.timestamp == 1_700_000_000_250
    assert closed
