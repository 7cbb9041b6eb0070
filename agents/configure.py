"""Control: camera commands -> each camera's configuration (table ``camera-config``, topic ``its.camera-configs``).

Commands of one camera arrive in order on one partition. A command that cannot
apply is dead-lettered with the reason and changes nothing. A redelivered
command (its offset is not past the one last applied) is skipped, so each
command applies exactly once however often it is delivered; but on a commands log
started again (`tables.camera_config.applied_before`) new commands apply.
"""

from __future__ import annotations

import asyncio
import logging
import time

from its_faust import topics
from its_faust.app import app
from its_faust.codecs import encode
from its_faust.dead_letters import valid_records
from its_faust.delivery import Acknowledger, refusal, send
from schemas.control import CameraCommand
from tables.camera_config import CommandRejected, applied_before, apply
from tables.config_table import config_table, current_config

log = logging.getLogger(__name__)
# A line or zone counts from when its command was issued (tables.camera_config.AsAdded), on the sender's clock, and no
# later than when this stage applied it: a sender this far ahead of the worker's clock is said.
AHEAD_OF_WORKER_S = 5.0


@app.agent(topics.camera_commands, name="configure")
async def configure(stream):
    async with Acknowledger(stream, "configure") as acks:
        async for event, command in valid_records(stream, CameraCommand, acks):
            offset = event.message.offset
            new = None
            # A bug, or a stored configuration this version cannot read: dead-lettered, not a poison pill.
            async with acks.dead_lettered_if_it_fails(event):
                config = current_config(event.key)
                if config is not None and offset <= config.applied_offset:
                    # Delivered again (a worker replaced before it committed), or a commands log started again?
                    # One issued after the configuration's last change is asked about (a broker round trip).
                    later = command.issued_at > config.updated_at
                    log_end = await _log_end(event) if later else None
                    if applied_before(config, command, offset, log_end):
                        if later:  # (a log created anew, and grown past the old offsets before it was read)
                            log.warning("configure: %s: a command at offset %d, not past the last one applied (%d), "
                                        "skipped as delivered again, though issued after the configuration's last "
                                        "change; if the commands topic was created anew, send it again",
                                        command.camera_id, offset, config.applied_offset)
                        else:
                            log.debug("configure: %s command at offset %s already applied", command.camera_id, offset)
                        continue
                    log.warning("configure: %s: its commands log was started again (a command at offset %d, the log "
                                "ending at %s, %d applied before); applying it", command.camera_id, offset, log_end,
                                config.applied_offset)
                now = time.time()
                try:
                    new = apply(config, command, now=now).model_copy(update={"applied_offset": offset})
                except CommandRejected as exc:
                    await acks.dead_letter(event, f"rejected: {exc}")
            if new is None:
                continue
            value = encode(new)
            # Published before the table says the command is done; a configuration the broker refuses (too large)
            # refuses the command.
            refused = await refusal("configure", event, [await send(event, topics.camera_configs, value)])
            if refused is not None:
                await acks.dead_letter(event, refused)
                continue
            config_table[event.key] = value
            log.info("configure: %s v%d after %s", command.camera_id, new.version, command.change.op)
            ahead_s = command.issued_at - now
            if command.change.op in ("add_line", "add_zone") and ahead_s > AHEAD_OF_WORKER_S:
                log.warning("configure: %s: its %s was issued %.0f s ahead of this worker's clock: it counts from now "
                            "(in replay too); check the sender's clock", command.camera_id,
                            command.change.op.removeprefix("add_"), ahead_s)


async def _log_end(event) -> int | None:
    """Where the event's partition ends now, as the broker says; None if it could not be asked."""
    tp = event.message.tp
    try:
        ends = await asyncio.wait_for(app.consumer.highwaters(tp), 5.0)
    except Exception as exc:  # skipped as a redelivery, as before this was asked
        log.warning("configure: the end of %s[%d] could not be asked (%r)", tp.topic, tp.partition, exc)
        return None
    return ends.get(tp)
