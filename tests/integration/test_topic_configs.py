"""Topics as the project creates them, on the real embedded broker: frames and detections (the bulk of
the traffic, read only by the next stage) get a short retention; what replay and the API read back keeps
the broker's default."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from its_faust.broker import EmbeddedBroker, bootstrap_servers
from its_faust.topic_names import ALL, DEAD_LETTERS, DETECTIONS, FRAMES, MAX_RECORD_BYTES, ensure_topics


async def _configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    finally:
        await admin.close()
    return {resource[3]: {entry[0]: entry[1] for entry in resource[4]}
            for response in responses for resource in response.resources}


def test_frames_and_detections_are_created_with_the_configured_retention(settings):
    settings = settings.model_copy(update={"frames_retention_s": 1800})
    with EmbeddedBroker() as broker:
        bootstrap = bootstrap_servers(broker.url)

        async def go():
            await ensure_topics(bootstrap, settings)
            return await _configs(bootstrap, [settings.topic(name) for name in ALL])

        configs = asyncio.run(go())
    assert len(configs) == len(ALL)
    for name in ALL:
        retention = configs[settings.topic(name)].get("retention.ms")
        assert retention == ("1800000" if name in (FRAMES, DETECTIONS) else None), (name, retention)
        # Topics that hold whole frames take a record as large as the producers send (Kafka's default: 1 MB).
        largest = configs[settings.topic(name)].get("max.message.bytes")
        assert largest == (str(MAX_RECORD_BYTES) if name in (FRAMES, DEAD_LETTERS) else None), (name, largest)


def test_topics_that_exist_with_another_partition_count_are_named(settings):
    with EmbeddedBroker() as broker:
        bootstrap = bootstrap_servers(broker.url)

        async def go():
            first = await ensure_topics(bootstrap, settings.model_copy(update={"partitions": 2}))
            again = await ensure_topics(bootstrap, settings.model_copy(update={"partitions": 2}))
            other = await ensure_topics(bootstrap, settings.model_copy(update={"partitions": 6}))
            return first, again, other

        first, again, other = asyncio.run(go())
    assert first == {} and again == {}
    assert other == {settings.topic(name): 2 for name in ALL}
