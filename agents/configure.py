"""Control: camera commands -> each camera's configuration (table ``camera-config``, topic ``its.camera-configs``).

Commands of one camera arrive in order on one partition. A command that cannot
apply is dead-lettered with the reason and changes nothing. A redelivered
command (its offset is not past the one last applied) is skipped, so each
command applies exactly once however often it is delivered.
"""

from __future__ import annotations

import logging

from its_faust import topics
from its_faust.app import app
from its_faust.codecs import encode
from its_faust.dead_letters import valid_records
from its_faust.delivery import Acknowledger, refusal, send
from schemas.control import CameraCommand
from tables.camera_config import CommandRejected, apply
from tables.config_table import config_table, current_config

log = logging.getLogger(__name__)


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
                    log.debug("configure: %s command at offset %s already applied", command.camera_id, offset)
                    continue
                try:
                    new = apply(config, command).model_copy(update={"applied_offset": offset})
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
