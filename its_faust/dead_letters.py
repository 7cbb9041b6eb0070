"""Send input that a stage cannot use to the dead-letter topic, whole, with the reason."""

from __future__ import annotations

import logging
import time

from faust.types import EventT

from its_faust import topics
from its_faust.codecs import encode
from schemas import DeadLetter

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
