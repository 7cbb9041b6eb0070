"""Send input that a stage cannot use to the dead-letter topic, whole, with the reason.

``valid_records`` is how every agent but detect reads its stream: in log order through the
intake, decoded, and what does not decode (or whose camera_id is not its key) dead-lettered.
"""

from __future__ import annotations

import logging
import time
from typing import AsyncIterator, TypeVar

from faust.types import EventT

from its_faust import topics
from its_faust.codecs import SchemaError, decode, encode
from its_faust.intake import Intake
from schemas import DeadLetter
from schemas.base import Record

R = TypeVar("R", bound=Record)

log = logging.getLogger(__name__)


async def dead_letter(stage: str, event: EventT, reason: str) -> None:
    message = event.message
    log.warning(
        "%s: dead-lettered %s[%s]@%s: %s", stage, message.topic, message.partition, message.offset, reason
    )
    record = DeadLetter(
        stage=stage,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value or b"",
        reason=reason,
        failed_at=time.time(),
    )
    await topics.dead_letters.send(key=message.key, value=encode(record))


async def valid_records(
    stream, record_type: type[R], stage: str, *, ack: bool = True
) -> AsyncIterator[tuple[EventT, R]]:
    """The stream's events, in log order (:mod:`its_faust.intake`), with their decoded records;
    the rest go to the dead-letter topic.

    Every per-camera topic is keyed by camera id, and actors keep state under the
    key, so a record whose camera_id is not its key is bad input too.

    An event is acknowledged once the agent's body is done with it (when it asks for the
    next one), as Faust would; a body that raises leaves it unacknowledged, to come again.
    Acknowledging by hand (``noack``) is what keeps the events the intake refused from
    counting as done: Faust's own acknowledgement would count them. With ``ack=False`` the
    caller acknowledges the events yielded (:mod:`tables.checkpoints` does, once their state
    is written); dead-lettered ones are acknowledged here.
    """
    intake = Intake.for_stream(stream.app, stage, stream)
    events = stream.noack()
    async for event in events.events():
        if not await intake.admit(event):
            continue  # out of order or a copy: released, it comes again (or came already)
        try:
            record = decode(record_type, event.value)
            if event.key != record.camera_id.encode():
                raise SchemaError(f"key {event.key!r} is not the record's camera_id {record.camera_id!r}")
        except SchemaError as exc:
            await dead_letter(stage, event, str(exc))
            await events.ack(event)
            continue
        yield event, record
        if ack:
            await events.ack(event)
