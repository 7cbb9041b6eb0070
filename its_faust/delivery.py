"""An event is acknowledged only once the broker holds the records sent for it.

Faust's ``send`` only buffers a record; its delivery is a future. Faust flushes its
producer before it commits offsets, but a record the broker refused there is only
logged, and the offset of the event that made it is committed all the same: the
record is lost, and nothing downstream ever says so. An :class:`Acknowledger`
acknowledges a stage's events in the order they were done, each once every record
sent for it is delivered:

* a record the broker refuses for what it is (too large, a timestamp out of the range
  the topic allows: see docs/architecture.md on brokers that limit timestamps) dead-letters
  the event that made it, with the broker's reason, and the stage goes on. The broker
  refuses a whole batch for one record in it, so each record of a refused batch is first
  sent again on its own (:class:`LoneSender`): only one refused again is at fault;
* any other failure (the broker away past the producer's request timeout, the
  producer closed) fails the agent: the event and those after it stay
  unacknowledged, and the restarted agent reads them again (:mod:`its_faust.intake`).

The stages that keep state (track, analyze) acknowledge through
:mod:`tables.checkpoints` instead, which settles their outputs with the same
:func:`refusal`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka import AIOKafkaProducer
from faust.exceptions import ProducerSendError
from faust.types import EventT

from its_faust import topics
from its_faust.app import app
from its_faust.background import tied_to_current_task
from its_faust.dead_letters import dead_letter
from its_faust.topic_names import MAX_RECORD_BYTES

log = logging.getLogger(__name__)

# The broker (or the producer, for its own size limit) refused the record itself: sent again it is refused again.
REFUSED_RECORD = (CorruptRecordException, InvalidTimestampError, MessageSizeTooLargeError, RecordListTooLargeError,
                  RecordTooLargeError)


class DeliveryFailed(RuntimeError):
    """A record was not delivered for a reason that is not the record's: its event must come again."""


_UNSETTLED = object()


@dataclass
class Sent:
    """A record sent for an event, on its way to the broker (and what it was, to send it again alone)."""

    topic: str
    delivery: Awaitable
    key: bytes | None = None
    value: bytes = b""
    timestamp: float | None = None
    in_batch: bool = True  # False: the producer refused it before it joined a batch
    refused: Any = field(default=_UNSETTLED, repr=False)  # once settled: None (delivered) or why it was refused


async def send(event: EventT, topic, value: bytes, timestamp: float | None = None) -> Sent:
    """``value`` on ``topic`` under the event's key."""
    try:
        delivery = await topic.send(key=event.key, value=value, timestamp=timestamp)
    except ProducerSendError as exc:  # (Faust's wrapping of the producer's errors)
        if not isinstance(exc.__cause__, REFUSED_RECORD):
            raise
        # The producer's own size check refused it before sending: settled as the broker's refusal would be.
        delivery = asyncio.get_running_loop().create_future()
        delivery.set_exception(exc.__cause__)
        return Sent(topic.get_topic_name(), delivery, event.key, value, timestamp, in_batch=False)
    return Sent(topic.get_topic_name(), delivery, event.key, value, timestamp)


async def sent_to_dead_letters(stage: str, event: EventT, reason: str) -> Sent:
    """The event to the dead-letter topic (:func:`its_faust.dead_letters.dead_letter`)."""
    return Sent(topics.dead_letters.get_topic_name(), await dead_letter(stage, event, reason))


async def refusal(stage: str, event: EventT, sent: Iterable[Sent]) -> str | None:
    """Once every record ``sent`` for the event is settled: None if the broker holds them all, or why it
    refused one (the event is then to be dead-lettered with it); :class:`DeliveryFailed` if one failed for
    another reason. A dead letter refused too is logged: nothing more can keep that record."""
    refused = None
    for record in sent:
        why = await _settled(stage, event, record)
        refused = refused or why
    return refused


async def _settled(stage: str, event: EventT, record: Sent) -> str | None:
    """:func:`refusal` of one record, settled once: a camera's next frame waits for it and the flush after
    it again, and a refused record sent again on its own twice would land twice."""
    if record.refused is not _UNSETTLED:
        return record.refused
    message = event.message
    why = None
    try:
        try:
            await asyncio.shield(record.delivery)  # shielded: a cancelled wait must not cancel the producer's send
        except REFUSED_RECORD as exc:
            if record.topic == topics.dead_letters.get_topic_name():
                log.error("%s: the dead letter of %s[%s]@%s was refused (%r): the record is acknowledged without one",
                          stage, message.topic, message.partition, message.offset, exc)
            elif not record.in_batch:
                raise
            else:
                # The broker refuses a whole batch for one record in it (and the producer fails every record of
                # that batch with it): only the record refused again on its own is at fault.
                log.warning("%s: a batch with the record made from %s[%s]@%s on %s was refused (%r): sending it "
                            "again on its own", stage, message.topic, message.partition, message.offset, record.topic,
                            exc)
                await alone.send(record)
    except REFUSED_RECORD as exc:
        why = f"the broker refused the record it made on {record.topic}: {_why(exc)}"
    except Exception as exc:
        raise DeliveryFailed(
            f"{stage}: a record made from {message.topic}[{message.partition}]@{message.offset} was not "
            f"delivered to {record.topic} ({exc!r}); it and the records after it are read again") from exc
    record.refused = why
    return why


async def dead_letter_if_refused(stage: str, event: EventT, sent: Iterable[Sent]) -> None:
    """Wait for ``sent`` (:func:`refusal`); if the broker refused one, dead-letter the event with why."""
    refused = await refusal(stage, event, sent)
    if refused is not None:
        await refusal(stage, event, [await sent_to_dead_letters(stage, event, refused)])


class LoneSender:
    """Sends a record again on a producer of its own, one at a time, so that it is the only record of its
    request: the broker's answer is about it alone. Opened at the first refusal and closed once unused for
    ``idle_s``: refusals are rare."""

    def __init__(self, bootstrap: list[str] | None = None, idle_s: float = 60.0):
        self.bootstrap = bootstrap  # None: the worker's brokers
        self.idle_s = idle_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._closer: asyncio.TimerHandle | None = None

    async def send(self, record: Sent) -> None:
        """Raises what the broker answered if it did not take the record."""
        async with self._lock:
            if self._closer is not None:
                self._closer.cancel()
            if self._producer is None:
                bootstrap = self.bootstrap or [f"{url.host}:{url.port or 9092}" for url in app.conf.broker]
                producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=MAX_RECORD_BYTES, linger_ms=0)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            try:
                timestamp_ms = int(record.timestamp * 1000) if record.timestamp is not None else None
                await self._producer.send_and_wait(record.topic, record.value, key=record.key, timestamp_ms=timestamp_ms)
            finally:
                self._closer = asyncio.get_running_loop().call_later(
                    self.idle_s, lambda: asyncio.ensure_future(self.close()))

    async def close(self) -> None:
        async with self._lock:
            if self._producer is not None:
                producer, self._producer = self._producer, None
                await producer.stop()


alone = LoneSender()


class Acknowledger:
    """One stage's acknowledgements, each after the deliveries of what its event sent.

    Use it as ``async with Acknowledger(stream, stage) as acks``: for each event, ``send`` (and
    ``dead_letter``) what it makes, then ``done(event)``. The waiting is done by a task beside the
    agent, so the agent goes on with the next event meanwhile; if that task fails, so does the agent.
    """

    def __init__(self, stream, stage: str):
        self.stream = stream
        self.stage = stage
        self._sent: dict[int, list[Sent]] = {}  # id(event) -> the records made for it
        self._done: asyncio.Queue[tuple[EventT, list[Sent]]] = asyncio.Queue()
        self._task: asyncio.Future | None = None

    async def __aenter__(self) -> "Acknowledger":
        self._task = tied_to_current_task(self._acknowledge_in_order(), f"{self.stage}: acknowledging its events")
        return self

    async def __aexit__(self, *exc_info) -> None:
        if self._task is not None:
            self._task.cancel()

    async def send(self, event: EventT, topic, value: bytes, timestamp: float | None = None) -> None:
        """``value`` on ``topic`` under the event's key, as a record the event made."""
        self._sent.setdefault(id(event), []).append(await send(event, topic, value, timestamp))

    async def dead_letter(self, event: EventT, reason: str) -> None:
        """The event to the dead-letter topic, as a record it made."""
        self._sent.setdefault(id(event), []).append(await sent_to_dead_letters(self.stage, event, reason))

    @asynccontextmanager
    async def dead_lettered_if_it_fails(self, event: EventT) -> AsyncIterator[None]:
        """Around the work on one event: an exception (a bug, a stored value this version cannot read)
        dead-letters the event with it, and the agent goes on with the next. Raised, it would stop the
        agent, and the event, never acknowledged, would stop it again each time it came back."""
        try:
            yield
        except Exception as exc:
            message = event.message
            log.exception("%s: the record at %s[%s]@%s failed", self.stage, message.topic, message.partition,
                          message.offset)
            await self.dead_letter(event, f"internal error: {exc!r}")

    def done(self, event: EventT) -> None:
        """The stage is done with the event: acknowledge it once what it sent is delivered."""
        self._done.put_nowait((event, self._sent.pop(id(event), [])))

    async def _acknowledge_in_order(self) -> None:
        while True:
            event, sent = await self._done.get()
            await dead_letter_if_refused(self.stage, event, sent)
            await self.stream.ack(event)


def _why(exc: Exception) -> str:
    description = getattr(exc, "description", "")
    why = f"{exc} ({description.rstrip('.')})" if description else str(exc)
    if isinstance(exc, InvalidTimestampError):
        why += "; records carry their scene's time, which the topic's message.timestamp.* configs must allow"
    return why
