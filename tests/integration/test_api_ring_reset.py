"""The API's topic rings when the broker loses a log under them (an in-memory broker restarted on its port)."""

from __future__ import annotations

import asyncio
import json

from aiokafka import AIOKafkaProducer

from api import topic_ring
from api.topic_ring import TopicRing
from api.read_models import Cameras
from api.sse import events
from its_faust.broker import EmbeddedBroker, bootstrap_servers
from its_faust.codecs import encode
from schemas.control import CameraConfig


async def _produce(bootstrap: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait("configs", value=value, key=b"k", partition=0)
    finally:
        await producer.stop()


def _config(camera_id: str, version: int) -> bytes:
    return encode(CameraConfig(camera_id=camera_id, version=version, last_command_id=f"c{version}", updated_at=1.0))


def test_a_ring_whose_log_the_broker_lost_reads_it_again_and_its_feeds_and_cameras_start_over(monkeypatch):
    """Before, the ring waited at its old offset for ever: feeds sent nothing, the camera list was the old one
    (and a lost camera could not be added again: 409 'already exists')."""
    monkeypatch.setattr(topic_ring, "RESET_CHECK_S", 0.5)
    cameras = Cameras()

    async def scenario(first: EmbeddedBroker):
        bootstrap = bootstrap_servers(first.url)
        await _produce(bootstrap, [_config("old-cam", v) for v in range(1, 6)])  # offsets 0-4
        ring = await TopicRing(bootstrap, "configs", 100, from_beginning=True, on_message=cameras.apply,
                               on_reset=cameras.forget_partition).start()
        for _ in range(100):
            if ring.next[0] == 5:
                break
            await asyncio.sleep(0.1)
        feed = events(ring, None, lambda m: True, "config", heartbeat_s=60)  # from now: after offset 4
        try:
            assert (await anext(feed))["event"] == "hello"
            assert [c.camera_id for c in cameras.all()] == ["old-cam"]
            first.stop()
            with EmbeddedBroker(port=first.port):  # the same address, an empty log
                await _produce(bootstrap, [_config("new-cam", 1)])  # offset 0 again
                got = [await asyncio.wait_for(anext(feed), 20) for _ in range(2)]
            return ring.resets[0], got
        finally:
            await feed.aclose()
            await ring.stop()

    with EmbeddedBroker() as broker:
        resets, got = asyncio.run(scenario(broker))
    assert resets == 1, got
    assert got[0]["event"] == "dropped" and "lost the log" in json.loads(got[0]["data"])["reason"]
    assert got[1]["event"] == "config" and json.loads(got[1]["data"])["camera_id"] == "new-cam"
    assert [c.camera_id for c in cameras.all()] == ["new-cam"]
