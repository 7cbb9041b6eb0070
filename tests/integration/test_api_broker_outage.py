"""The API while its broker is away: it says so at once, in time, and does not blame the workers."""

from __future__ import annotations

import asyncio
import time

import httpx
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from api.process import ApiProcess
from its_faust.broker import EmbeddedBroker, bootstrap_servers
from its_faust.codecs import encode
from its_faust.topic_names import CAMERA_CONFIGS, WORKERS
from schemas.control import CameraConfig
from schemas.workers import WorkerStatus


def _report(bootstrap: str, topic: str, status: WorkerStatus | CameraConfig) -> None:
    key = status.worker if isinstance(status, WorkerStatus) else status.camera_id

    async def go():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, value=encode(status), key=key.encode())
        finally:
            await producer.stop()

    asyncio.run(go())


def _metric(c: httpx.Client, name: str) -> float | None:
    for family in text_string_to_metric_families(c.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


def _until(check, within_s: float, what: str):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {within_s:g} s")


def test_the_api_says_at_once_that_the_broker_is_away_and_judges_no_worker_gone_meanwhile(settings, tmp_path):
    """/ready hung for 40 s (the lag read waited out the Kafka client's timeouts) and then blamed nothing; the
    metrics showed every worker gone while they only could not be heard."""
    with EmbeddedBroker() as broker:
        api = ApiProcess(broker.url, tmp_path / "api.log").start()
        try:
            with httpx.Client(base_url=api.base, timeout=30) as c:
                status = WorkerStatus(worker="outage-host:1", state="running", at=time.time(), started_at=time.time(),
                                      interval_s=1.0, partitions=[0])
                _report(bootstrap_servers(broker.url), settings.topic(WORKERS), status)
                _until(lambda: [w for w in c.get("/api/v1/workers").json()["workers"] if w["state"] == "running"],
                       30, "the worker's report read")
                assert c.get("/api/v1/ready").json()["broker"] == "reachable"
                _report(bootstrap_servers(broker.url), settings.topic(CAMERA_CONFIGS),
                        CameraConfig(camera_id="outage-cam", version=1, last_command_id="c-1", updated_at=time.time()))
                states = lambda: {a["camera_id"]: a["state"] for a in c.get("/api/v1/camera-activity").json()}  # noqa: E731
                _until(lambda: states() == {"outage-cam": "no_frames"}, 30, "the camera's configuration read")
                assert _metric(c, "its_faust_broker_up") == 1

                broker.stop()
                down_at = time.monotonic()
                ready = _until(lambda: (r := c.get("/api/v1/ready")).status_code == 503 and r, 15, "/ready's 503")
                assert ready.json()["broker"].startswith("not answering: ") and ready.json()["status"] == "not ready"
                started = time.monotonic()
                again = c.get("/api/v1/ready")
                assert again.status_code == 503 and time.monotonic() - started < 6  # answered in a probe's time
                assert _metric(c, "its_faust_broker_up") == 0
                assert states() == {"outage-cam": "unknown"}  # not "stopped": what it does now is not known
                assert _metric(c, "its_faust_worker_lag_messages") is None  # no figure rather than an old one
                # Silent for over three of its intervals, but while nothing could be heard: not judged gone.
                _until(lambda: time.monotonic() - down_at > 5, 10, "time")
                [worker] = c.get("/api/v1/workers").json()["workers"]
                assert worker["state"] == "running" and worker["reported_s_ago"] > 4

                with EmbeddedBroker(port=broker.port):  # back (empty: the embedded broker keeps nothing)
                    _until(lambda: _metric(c, "its_faust_broker_up") == 1, 20, "the broker answering again")
                    # Heard again, and still silent: now it is gone.
                    _until(lambda: c.get("/api/v1/workers").json()["workers"][0]["state"] == "gone", 20, "gone")
                    # Known again (this broker came back empty, the camera's configuration lost with it: not listed).
                    assert states() == {}
        finally:
            api.stop()
    assert "the broker does not answer" in (tmp_path / "api.log").read_text()
