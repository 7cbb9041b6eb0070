"""Dead-lettering inside an agent: the record first, its report after, and a failing record is no poison pill;
an event is acknowledged only once what it sent is delivered (:mod:`its_faust.delivery`)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from aiokafka.errors import InvalidTimestampError, KafkaTimeoutError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError

from its_faust import dead_letters, delivery, topics
from its_faust.codecs import decode
from its_faust.delivery import Acknowledger
from its_faust.throttle import Throttle
from schemas import CameraEvent, CameraEventKind, DeadLetter


@pytest.fixture
def sent(monkeypatch):
    """What the agents send, by topic; camera events fail to send while ``failing["camera-events"]``."""
    sent = {"dead-letters": [], "camera-events": [], "order": []}
    failing = {"camera-events": False}

    def sender(name):
        async def send(key=None, value=None, **_):
            sent["order"].append(name)
            if failing.get(name):
                raise RuntimeError("producer closed")
            sent[name].append((key, value))
            delivered = asyncio.get_running_loop().create_future()
            delivered.set_result(None)
            return delivered
        return send

    monkeypatch.setattr(topics.dead_letters, "send", sender("dead-letters"))
    monkeypatch.setattr(topics.camera_events, "send", sender("camera-events"))
    monkeypatch.setattr(dead_letters, "_quiet", Throttle(dead_letters.QUIET_S))
    sent["failing"] = failing
    return sent


def _event(key: bytes, offset: int, value: bytes = b"{}"):
    return SimpleNamespace(key=key, message=SimpleNamespace(topic="its.crossings", partition=0, offset=offset, key=key,
                                                            value=value))


def test_the_dead_letter_is_sent_before_its_report_and_even_when_the_report_cannot_be(sent):
    asyncio.run(dead_letters.dead_letter("detect", _event(b"cam-1", 6, b"junk"), "Invalid JSON"))
    assert sent["order"] == ["dead-letters", "camera-events"]  # the record first: it matters more
    sent["failing"]["camera-events"] = True
    asyncio.run(dead_letters.dead_letter("track", _event(b"cam-1", 7, b"junk"), "Invalid JSON"))
    assert [decode(DeadLetter, value).offset for _, value in sent["dead-letters"]] == [6, 7]  # the failed report raised nothing


def test_a_record_too_large_to_copy_into_a_dead_letter_is_named_not_copied(sent):
    from its_faust.topic_names import MAX_RECORD_BYTES

    huge = b"x" * (dead_letters.LARGEST_KEPT_VALUE + 1)
    asyncio.run(dead_letters.dead_letter("detect", _event(b"cam-1", 8, huge), "not a decodable image"))
    [(_, value)] = sent["dead-letters"]
    letter = decode(DeadLetter, value)
    assert letter.value == b"" and letter.offset == 8
    assert "not a decodable image (the record, " in letter.reason and "its.crossings[0]@8" in letter.reason
    assert len(value) < MAX_RECORD_BYTES
    kept = b"y" * dead_letters.LARGEST_KEPT_VALUE  # the largest copied still fits the topic
    asyncio.run(dead_letters.dead_letter("detect", _event(b"cam-1", 9, kept), "not a decodable image"))
    assert len(sent["dead-letters"][-1][1]) < MAX_RECORD_BYTES


def test_a_camera_event_that_cannot_be_sent_is_logged_not_raised(sent, caplog):
    sent["failing"]["camera-events"] = True
    event = CameraEvent(camera_id="cam-1", kind=CameraEventKind.frames_shed, at=time.time(), reason="behind")
    asyncio.run(topics.send_camera_event(event))
    assert "cam-1: its frames_shed event was not sent" in caplog.text


class _Stream:
    """What the acknowledger needs of a stream: the offsets acknowledged, in order."""

    def __init__(self):
        self.acked: list[int] = []

    async def ack(self, event) -> None:
        self.acked.append(event.message.offset)


class _Topic:
    """A topic whose records are delivered when the test says, or fail as it says."""

    def __init__(self, name: str = "its.counts", refuse_at_send: Exception | None = None):
        self.name = name
        self.refuse_at_send = refuse_at_send
        self.deliveries: list[asyncio.Future] = []

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, key=None, value=None, timestamp=None):
        if self.refuse_at_send is not None:
            raise self.refuse_at_send
        self.deliveries.append(asyncio.get_running_loop().create_future())
        return self.deliveries[-1]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_record_whose_work_fails_is_dead_lettered_with_the_error_and_the_next_is_worked_on(sent):
    done, stream = [], _Stream()

    async def agent(records):
        async with Acknowledger(stream, "count") as acks:
            for event, value in records:
                async with acks.dead_lettered_if_it_fails(event):
                    if value == "bad":
                        raise KeyError("line")
                    done.append(value)
                acks.done(event)
            await _settle()

    asyncio.run(agent([(_event(b"cam-1", 1), "a"), (_event(b"cam-1", 2), "bad"), (_event(b"cam-1", 3), "c")]))
    assert done == ["a", "c"] and stream.acked == [1, 2, 3]
    [(key, value)] = sent["dead-letters"]
    letter = decode(DeadLetter, value)
    assert key == b"cam-1" and letter.stage == "count" and letter.offset == 2
    assert letter.reason == "internal error: KeyError('line')"
    [(_, value)] = sent["camera-events"]
    told = decode(CameraEvent, value)
    assert told.kind == CameraEventKind.records_rejected and "internal error" in told.reason


def test_events_are_acknowledged_in_order_each_once_what_it_sent_is_delivered(sent):
    stream, counts = _Stream(), _Topic()

    async def agent():
        async with Acknowledger(stream, "count") as acks:
            for offset in (1, 2, 3):
                event = _event(b"cam-1", offset)
                if offset != 2:  # the second sends nothing (a crossing already counted)
                    await acks.send(event, counts, b"{}")
                acks.done(event)
            await _settle()
            nothing_yet = list(stream.acked)
            counts.deliveries[1].set_result(None)  # the third's record is delivered before the first's
            await _settle()
            still_waiting = list(stream.acked)
            counts.deliveries[0].set_result(None)
            await _settle()
            return nothing_yet, still_waiting

    nothing_yet, still_waiting = asyncio.run(agent())
    assert nothing_yet == [] and still_waiting == []  # (Faust would commit past the first otherwise)
    assert stream.acked == [1, 2, 3]


class _LoneSender:
    """Sends a record again on its own: the broker refuses those whose value is ``b"bad"``."""

    def __init__(self):
        self.sent: list[bytes] = []

    async def send(self, record) -> None:
        self.sent.append(record.value)
        if record.value == b"bad":
            raise InvalidTimestampError()


def test_a_record_the_broker_refuses_dead_letters_its_event_with_the_brokers_reason_and_the_stage_goes_on(
        sent, monkeypatch):
    """The broker refuses a whole batch for one record in it: each is sent again on its own, and only the one
    refused again is at fault."""
    stream, counts, lone = _Stream(), _Topic(), _LoneSender()
    monkeypatch.setattr(delivery, "alone", lone)
    # As Faust's producer raises it: aiokafka's own size check, wrapped.
    too_large = MessageSizeTooLargeError("The message is 9000000 bytes when serialized")
    try:
        raise ProducerSendError(f"Error while sending: {too_large!r}") from too_large
    except ProducerSendError as wrapped:
        huge = _Topic("its.detections", refuse_at_send=wrapped)

    async def agent():
        async with Acknowledger(stream, "count") as acks:
            first, second, third = (_event(b"cam-1", offset) for offset in (1, 2, 3))
            await acks.send(first, counts, b"bad")
            acks.done(first)
            await acks.send(second, huge, b"{}")  # refused by the producer: before it is sent
            acks.done(second)
            await acks.send(third, counts, b"good")  # in the first's batch
            acks.done(third)
            counts.deliveries[0].set_exception(InvalidTimestampError())
            counts.deliveries[1].set_exception(InvalidTimestampError())
            await _settle()

    asyncio.run(agent())
    assert stream.acked == [1, 2, 3]
    assert lone.sent == [b"bad", b"good"]  # (the one the producer refused was in no batch)
    letters = [decode(DeadLetter, value) for _, value in sent["dead-letters"]]
    assert [(d.offset, d.stage) for d in letters] == [(1, "count"), (2, "count")]
    assert "refused the record it made on its.counts" in letters[0].reason and "out of acceptable range" in letters[0].reason
    assert "its.detections" in letters[1].reason and "9000000 bytes" in letters[1].reason


def test_a_record_not_delivered_for_another_reason_fails_the_agent_and_leaves_its_event_unacknowledged(sent):
    stream, counts = _Stream(), _Topic()

    async def agent():
        async with Acknowledger(stream, "count") as acks:
            for offset in (1, 2, 3):
                event = _event(b"cam-1", offset)
                await acks.send(event, counts, b"{}")
                acks.done(event)
            counts.deliveries[0].set_result(None)
            counts.deliveries[1].set_exception(KafkaTimeoutError())  # the broker away past the request timeout
            counts.deliveries[2].set_result(None)
            await asyncio.sleep(1)  # cancelled long before: Faust restarts the agent, which reads 2 and 3 again

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(agent())
    assert stream.acked == [1] and sent["dead-letters"] == []


def test_a_record_keyed_wrongly_or_not_at_all_is_told_to_the_camera_it_names_too(sent):
    # An integrator's keyless frames were dead-lettered with nothing on their camera's events (a trial with kafkajs).
    frame = b'{"schema": "its.frame", "camera_id": "node-cam", "seq": 1}'
    asyncio.run(dead_letters.dead_letter("detect", _event(None, 1, frame), "key None is not the record's camera_id"))
    asyncio.run(dead_letters.dead_letter("detect", _event(b"other", 2, frame), "key 'other' is not the record's camera_id"))
    told = [decode(CameraEvent, value) for _, value in sent["camera-events"]]
    assert [(e.camera_id, e.kind) for e in told] == [("node-cam", CameraEventKind.records_rejected), ("other", CameraEventKind.records_rejected),
                                                     ("node-cam", CameraEventKind.records_rejected)]
    assert "sent under the key None, not the camera id" in told[0].reason
    for value in (b"junk", b"[1]", b'{"camera_id": 5}', b'{"camera_id": "no spaces"}', b"\xff", b"[" * 100_000):
        sent["camera-events"].clear()
        dead_letters._quiet = Throttle(dead_letters.QUIET_S)  # (each told, were it any camera's)
        asyncio.run(dead_letters.dead_letter("detect", _event(None, 3, value), "Invalid JSON"))
        assert sent["camera-events"] == [], value
    dead_letters._quiet = Throttle(dead_letters.QUIET_S)
    asyncio.run(dead_letters.dead_letter("detect", _event(b"node-cam", 4, frame), "seq too large"))
    assert [decode(CameraEvent, value).camera_id for _, value in sent["camera-events"]] == ["node-cam"]  # told once


def test_the_later_count_of_records_keyed_wrongly_is_told_to_the_camera_they_name_too(sent, monkeypatch):
    from types import SimpleNamespace

    clock = [100.0]
    monkeypatch.setattr(dead_letters, "time", SimpleNamespace(time=time.time, monotonic=lambda: clock[0]))
    frame = b'{"schema": "its.frame", "camera_id": "node-cam", "seq": 1}'
    other = b'{"schema": "its.frame", "camera_id": "other-cam", "seq": 1}'
    for value in (frame, frame, frame, other):  # keyless, from two cameras: each told apart
        asyncio.run(dead_letters.dead_letter("detect", _event(None, 1, value), "key None is not the record's camera_id"))
    assert [decode(CameraEvent, v).camera_id for _, v in sent["camera-events"]] == ["node-cam", "other-cam"]
    clock[0] += dead_letters.QUIET_S
    asyncio.run(dead_letters.say_the_unsaid())
    later = decode(CameraEvent, sent["camera-events"][-1][1])
    assert later.camera_id == "node-cam" and later.reason.startswith("detect dead-lettered 2 more record(s)")
    assert "sent under the key None, not the camera id" in later.reason
