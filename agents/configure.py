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
from its_faust.dead_letters import dead_letter, dead_lettered_if_it_fails, valid_records
from schemas.control import CameraCommand
from tables.camera_config import CommandRejected, apply
from tables.config_table import config_table, current_config

log = logging.getLogger(__name__)


@app.agent(topics.camera_commands, name="configure")
async def configure(stream):
    async for event, command in valid_records(stream, CameraCommand, "configure"):
        offset = event.message.offset
        new = None
        # A bug, or a stored configuration this version cannot read: dead-lettered, not a poison pill.
        async with dead_lettered_if_it_fails("configure", event):
            config = current_config(event.key)
            if config is not None and offset <= config.applied_offset:
                log.debug("configure: %s command at offset %s already applied", command.camera_id, offset)
                continue
            try:
                new = apply(config, command).model_copy(update={"applied_offset": offset})
            except CommandRejected as exc:
                await dead_letter("configure", event, f"rejected: {exc}")
        if new is None:
            continue
        value = encode(new)
        ack = await topics.camera_configs.send(key=event.key, value=value)
        await ack  # published before the table says the command is done
        config_table[event.key] = value
        log.info("configure: %s v%d after %s", command.camera_id, new.version, command.change.op)
