"""Dead-lettering inside an agent: the record first, its report after, and a failing record is no poison pill."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from its_faust import dead_letters, topics
from its_faust.codecs import decode
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
        return send

    monkeypatch.setattr(topics.dead_letters, "send", sender("dead-letters"))
    monkeypatch.setattr(topics.camera_events, "send", sender("camera-events"))
    monkeypatch.setattr(dead_letters, "_quiet", Throttle(dead_letters.QUIET_S))
    sent["failing"] = failing
    return sent


def _event(key: bytes, offset: int, value: bytes = b"{}"):
    return SimpleNamespace(message=SimpleNamespace(topic="its.crossings", partition=0, offset=offset, key=key, value=value))


def test_a_record_whose_work_fails_is_dead_lettered_with_the_error_and_the_next_is_worked_on(sent):
    done = []

    async def agent(records):
        for event, value in records:
            async with dead_letters.dead_lettered_if_it_fails("count", event):
                if value == "bad":
                    raise KeyError("line")
                done.append(value)

    asyncio.run(agent([(_event(b"cam-1", 1), "a"), (_event(b"cam-1", 2), "bad"), (_event(b"cam-1", 3), "c")]))
    assert done == ["a", "c"]
    [(key, value)] = sent["dead-letters"]
    letter = decode(DeadLetter, value)
    assert key == b"cam-1" and letter.stage == "count" and letter.offset == 2
    assert letter.reason == "internal error: KeyError('line')"
    [(_, value)] = sent["camera-events"]
    told = decode(CameraEvent, value)
    assert told.kind == CameraEventKind.records_rejected and "internal error" in told.reason


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
