"""Configuring cameras from outside a worker: parse, check, send commands, wait until they apply.

Used by ``its-faust cameras ...`` and by ``its-faust run --line``. Commands are
checked here against the camera's current configuration (read back from
``its.camera-configs``) so a user gets the precise error at once; the configure
agent checks them again, since other clients may race.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer

from its_faust.codecs import SchemaError, decode, encode
from its_faust.results import TopicReader
from its_faust.topic_names import CAMERA_COMMANDS, CAMERA_CONFIGS, DEAD_LETTERS
from schemas import DeadLetter
from schemas.control import AddLine, CameraCommand, CameraConfig, Change
from schemas.geometry import CountingLine


class CommandFailed(RuntimeError):
    """A command was rejected or did not apply in time; ``str()`` says why."""


def parse_line(spec: str, default_name: str = "line1", count: str = "both") -> CountingLine:
    """``x1,y1,x2,y2[:name]`` -> a counting line (ValueError with the reason otherwise)."""
    coords, _, name = spec.partition(":")
    parts = coords.split(",")
    if len(parts) != 4:
        raise ValueError(f"line {spec!r}: expected x1,y1,x2,y2[:name]")
    try:
        x1, y1, x2, y2 = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"line {spec!r}: coordinates must be numbers") from None
    return CountingLine(name=name or default_name, x1=x1, y1=y1, x2=x2, y2=y2, count=count)


def parse_points(specs: list[str] | tuple[str, ...]) -> list[tuple[float, float]]:
    """``["x,y", ...]`` -> points."""
    points = []
    for spec in specs:
        parts = spec.split(",")
        if len(parts) != 2:
            raise ValueError(f"point {spec!r}: expected x,y")
        try:
            points.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise ValueError(f"point {spec!r}: coordinates must be numbers") from None
    return points


def line_changes(specs: list[str]) -> list[AddLine]:
    return [AddLine(line=parse_line(spec, default_name=f"line{i}")) for i, spec in enumerate(specs, 1)]


def command(camera_id: str, change: Change, issued_by: str = "cli") -> CameraCommand:
    return CameraCommand(camera_id=camera_id, issued_at=time.time(), issued_by=issued_by, change=change)


async def read_configs(bootstrap: str, settings, timeout_s: float = 1.0) -> dict[str, CameraConfig]:
    """Every camera's latest configuration, from the beginning of ``its.camera-configs``."""
    reader = await TopicReader(bootstrap, settings.topic(CAMERA_CONFIGS), from_beginning=True).start()
    configs: dict[str, CameraConfig] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in await reader.poll(100):
                try:
                    config = decode(CameraConfig, message.value)
                except SchemaError:
                    continue
                if config.camera_id not in configs or config.version >= configs[config.camera_id].version:
                    configs[config.camera_id] = config
    finally:
        await reader.stop()
    return configs


async def send_commands(bootstrap: str, settings, commands: list[CameraCommand], timeout_s: float = 30.0) -> CameraConfig:
    """Send commands (of one camera), wait until the last one has applied; CommandFailed if any was rejected."""
    if not commands:
        raise ValueError("no commands to send")
    camera_id = commands[-1].camera_id
    wanted = {c.command_id for c in commands}
    configs = await TopicReader(bootstrap, settings.topic(CAMERA_CONFIGS)).start()
    rejections = await TopicReader(bootstrap, settings.topic(DEAD_LETTERS)).start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for c in commands:
            await producer.send_and_wait(settings.topic(CAMERA_COMMANDS), key=c.camera_id.encode(), value=encode(c))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in await rejections.poll(50):
                letter = _decode_or_none(DeadLetter, message.value)
                if letter and letter.stage == "configure":
                    rejected = _decode_or_none(CameraCommand, letter.value)
                    if rejected is not None and rejected.command_id in wanted:
                        raise CommandFailed(f"{rejected.change.op} on {rejected.camera_id}: {letter.reason}")
            for message in await configs.poll(50):
                config = _decode_or_none(CameraConfig, message.value)
                if config and config.camera_id == camera_id and config.last_command_id == commands[-1].command_id:
                    return config
            await asyncio.sleep(0)
        raise CommandFailed(f"camera {camera_id}: no worker applied the commands within {timeout_s:.0f}s (is one running?)")
    finally:
        await producer.stop()
        await configs.stop()
        await rejections.stop()


def _decode_or_none(record_type, payload):
    try:
        return decode(record_type, payload)
    except SchemaError:
        return None


def ensure_lines(config: CameraConfig | None, camera_id: str, lines: list[CountingLine]) -> list[Change]:
    """The changes that give the camera exactly these lines (added if missing, replaced if different)."""
    from schemas.control import AddCamera, RemoveLine

    changes: list[Change] = []
    if config is None or config.removed:
        changes.append(AddCamera(name=camera_id))
        config = None
    for line in lines:
        existing = config.line(line.name) if config else None
        if existing == line:
            continue
        if existing is not None:
            changes.append(RemoveLine(name=line.name))
        changes.append(AddLine(line=line))
    return changes
