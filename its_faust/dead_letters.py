"""Send input that a stage cannot use to the dead-letter topic, whole, with the reason.

``valid_records`` is how every agent but detect reads its stream: in log order through the
intake, decoded, and what does not decode (or whose camera_id is not its key) dead-lettered.

Every dead letter is on the topic; the log warns of the first of each stage and key at once and
then of one every ``QUIET_S`` with how many came since (:mod:`its_faust.throttle`; what is left
unsaid after that, a timer says), since a producer with a fault in its records sends every one of them with it (30 warnings a
second from one camera). Each such warning about a camera's records is also a ``records_rejected``
event on its camera-events, so that whoever watches the camera (the API, the dashboard) sees why
its frames go nowhere.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable, TypeVar

from faust.types import EventT

from its_faust import topics
from its_faust.app import app
from its_faust.codecs import SchemaError, decode_keyed, encode
from its_faust.intake import Intake
from its_faust.throttle import Throttle
from its_faust.topic_names import MAX_RECORD_BYTES
from schemas import CameraEvent, CameraEventKind, DeadLetter
from schemas.base import CAMERA_ID_PATTERN, Record

if TYPE_CHECKING:
    from its_faust.delivery import Acknowledger

R = TypeVar("R", bound=Record)

log = logging.getLogger(__name__)
QUIET_S = 10.0
# A dead letter carries the record in base64 (4/3 of its size) with room for the rest: a record that would make
# it larger than the topic takes (a frame of a very large camera) is named, not copied.
LARGEST_KEPT_VALUE = MAX_RECORD_BYTES * 2 // 3
_CAMERA_ID = re.compile(CAMERA_ID_PATTERN)
# (stage, key, the camera the record names where that is not its key) -> when to warn; a broken producer may invent
# a key a record: the 1000 heard last are kept.
_quiet: Throttle[tuple[str, bytes | None, str | None]] = Throttle(QUIET_S, keep=1000)


async def dead_letter(stage: str, event: EventT, reason: str) -> Awaitable:
    """The event's record, whole, on the dead-letter topic with the stage and the reason; then, if due, a
    warning and the camera's ``records_rejected`` event (after: the record matters more than its report).
    Returns the dead letter's delivery: the event is acknowledged only after it (:mod:`its_faust.delivery`)."""
    message = event.message
    value = message.value or b""
    if len(value) > LARGEST_KEPT_VALUE:  # base64 in JSON: it would not fit the topic's largest record
        reason += (f" (the record, {len(value)} bytes, is left out: too large for the dead-letter topic; it is at "
                   f"{message.topic}[{message.partition}]@{message.offset} while the topic keeps it)")
        value = b""
    record = DeadLetter(
        stage=stage,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=value,
        reason=reason,
        failed_at=time.time(),
    )
    delivery = await topics.dead_letters.send(key=message.key, value=encode(record))
    # Keyed wrongly, or not at all: the camera the record names is told too (its sender watches that one).
    named = _camera_named_in(value)
    named = named if named is not None and named.encode() != message.key else None
    told = _quiet.hit((stage, message.key, named), time.monotonic(), reason)
    if told is not None:
        unsaid = told - 1
        log.warning("%s: dead-lettered %s[%s]@%s: %s%s", stage, message.topic, message.partition, message.offset, reason,
                    f" ({unsaid} more from key {message.key!r} since the last warning, all on the topic)" if unsaid else "")
        said = f"{stage} dead-lettered a record: {reason}" + (f"; {unsaid} more since the last report" if unsaid else "")
        await _tell_the_cameras(message.key, named, said)
    return delivery


async def _tell_the_cameras(key: bytes | None, named: str | None, said: str) -> None:
    await _tell_the_camera(key, said)
    if named is not None:
        await _tell_the_camera(named.encode(), f"{said} (sent under the key {key!r}, not the camera id)")


def _camera_named_in(value: bytes) -> str | None:
    """The camera id a refused record's JSON names in ``camera_id``, if any."""
    try:
        named = json.loads(value).get("camera_id")
    except (ValueError, AttributeError, RecursionError):  # not JSON (or not UTF-8), not an object, nested too deep
        return None
    return named if isinstance(named, str) and _CAMERA_ID.fullmatch(named) else None


@app.timer(interval=2.0, name="dead-letter-warnings")
async def _say_the_unsaid_now() -> None:
    await say_the_unsaid()


async def say_the_unsaid() -> None:
    """What was held back for a whole period, told: a warning, and the camera's event, each with the count."""
    for (stage, key, named), unsaid, reason in _quiet.overdue(time.monotonic()):
        log.warning("%s: %d more dead-lettered from key %r since the last warning (the last: %s)", stage, unsaid, key,
                    reason)
        await _tell_the_cameras(key, named, f"{stage} dead-lettered {unsaid} more record(s) since the last report; "
                                            f"the last: {reason}")


async def _tell_the_camera(key: bytes | None, reason: str) -> None:
    """A ``records_rejected`` event for the camera whose records these are; none for a key that is no camera id."""
    try:
        camera_id = key.decode() if key else ""
    except UnicodeDecodeError:
        return
    if _CAMERA_ID.fullmatch(camera_id):
        await topics.send_camera_event(
            CameraEvent(camera_id=camera_id, kind=CameraEventKind.records_rejected, at=time.time(), reason=reason))


async def valid_records(
    stream, record_type: type[R], acks: Acknowledger, *, ack: bool = True,
    admitted: Callable[[EventT], None] | None = None,
) -> AsyncIterator[tuple[EventT, R]]:
    """The stream's events, in log order (:mod:`its_faust.intake`), with their decoded records;
    the rest go to the dead-letter topic.

    A record whose camera_id is not its key is bad input too (:func:`its_faust.codecs.decode_keyed`).

    An event is done once the agent's body is done with it (when it asks for the next one), as
    Faust would have it, and ``acks`` acknowledges it once what the body sent for it through
    ``acks`` is delivered; a body that raises leaves it unacknowledged, to come again.
    Acknowledging by hand (``noack``) is what keeps the events the intake refused from
    counting as done: Faust's own acknowledgement would count them. With ``ack=False`` the
    caller acknowledges the events yielded (:mod:`tables.checkpoints` does, once their state
    is written); dead-lettered ones are acknowledged here. ``admitted`` is called with every event
    the intake admits, dead-lettered or not, before it is decoded.
    """
    intake = Intake.for_stream(stream.app, acks.stage, stream)
    async for event in stream.noack().events():
        if not await intake.admit(event):
            continue  # out of order or a copy: released, it comes again (or came already)
        if admitted is not None:
            admitted(event)
        try:
            record = decode_keyed(record_type, event.key, event.value)
        except SchemaError as exc:
            await acks.dead_letter(event, str(exc))
            acks.done(event)
            continue
        yield event, record
        if ack:
            acks.done(event)
