"""Configuring cameras from outside a worker: parse, check, send commands, wait until they apply.

Used by ``its-faust cameras ...``, the API's camera routes, ``run --line/--config``, ``demo``
and ``replay --source``. Commands are
checked here against the camera's current configuration (read back from
``its.camera-configs``) so a user gets the precise error at once; the configure
agent checks them again, since other clients may race.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field

from its_faust.codecs import decode_or_none, encode
from its_faust.topic_reader import TopicReader
from its_faust.topic_names import CAMERA_COMMANDS, CAMERA_CONFIGS, DEAD_LETTERS, FRAMES, TRACKS, ensure_topics
from schemas import DeadLetter, FrameRecord, TrackRecord
from schemas.base import error_text
from schemas.control import AddLine, CameraCommand, CameraConfig, Change
from schemas.geometry import Calibration, CountingLine, Zone, out_of_view

log = logging.getLogger(__name__)


def validation_message(exc) -> str:
    """A pydantic error as one line that says where: ``zones.0.points: zone polygon is not simple...``."""
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        msg = error_text(e)
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


class CommandFailed(RuntimeError):
    """A command was rejected or did not apply in time; ``str()`` says why."""


class NoWorkerApplied(CommandFailed):
    """No worker applied the commands in time. They stay on the commands topic: a worker that starts later
    applies them."""


def parse_line(spec: str, default_name: str = "line1", count: str = "both") -> CountingLine:
    """``x1,y1,x2,y2[:name]`` -> a counting line (ValueError with the reason otherwise)."""
    coords, colon, name = spec.partition(":")
    if colon and not name:
        raise ValueError(f"line {spec!r}: a name after ':', or no ':'")
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


def command(camera_id: str, change: Change, issued_by: str = "cli") -> CameraCommand:
    return CameraCommand(camera_id=camera_id, issued_at=time.time(), issued_by=issued_by, change=change)


async def read_configs(bootstrap: str, settings) -> dict[str, CameraConfig]:
    """Every camera's latest configuration: ``its.camera-configs`` read from its beginning to its end."""
    await ensure_topics(bootstrap, settings)  # on a fresh broker no worker may have created them yet
    reader = await TopicReader(bootstrap, settings.topic(CAMERA_CONFIGS), from_beginning=True).start()
    configs: dict[str, CameraConfig] = {}
    try:
        for message in await reader.read_to_end():
            config = decode_or_none(CameraConfig, message.value)
            if config and (config.camera_id not in configs or config.version >= configs[config.camera_id].version):
                configs[config.camera_id] = config
    finally:
        await reader.stop()
    return configs


class CameraRemoved(Exception):
    """The camera a source would send frames as was removed: nothing would count them."""


class RemovalWatch:
    """Checks camera ``camera_id`` before its source sends frames, then watches for its removal.

    A camera that is not configured is warned about (a misspelt id: its frames would be tracked, with
    nothing to count them, under a name nobody reads); one removed already is CameraRemoved. Once it is
    removed, ``removed`` is set: its source would go on taking a worker's time for nothing."""

    def __init__(self, bootstrap: str, settings, camera_id: str):
        self.bootstrap, self.settings, self.camera_id = bootstrap, settings, camera_id
        self.removed = asyncio.Event()
        self.config: CameraConfig | None = None  # as it was at the start
        self._follower: TopicReader | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> "RemovalWatch":
        # Following from the end first, then the whole topic: a removal in between is seen by one or the other.
        self._follower = await TopicReader(self.bootstrap, self.settings.topic(CAMERA_CONFIGS),
                                           keys=[self.camera_id.encode()]).start()
        try:
            configs = await read_configs(self.bootstrap, self.settings)
            config = configs.get(self.camera_id)
            if config is not None and config.removed:
                raise CameraRemoved(f"camera {self.camera_id!r} was removed (`its-faust cameras add {self.camera_id}` "
                                    "adds it again)")
        except BaseException:
            await self._follower.stop()
            raise
        self.config = config
        if config is None:
            known = sorted(c.camera_id for c in configs.values() if not c.removed)
            log.warning("camera %r is not configured: its frames are tracked, but it has no lines or zones and is "
                        "listed nowhere (`its-faust cameras add %s`); configured: %s",
                        self.camera_id, self.camera_id, ", ".join(known) or "none")
        self._task = asyncio.create_task(self._follow())
        return self

    async def _follow(self) -> None:
        while True:
            try:
                messages = await self._follower.poll(1000)
            except KafkaError as exc:  # the broker away for a while: go on following once it is back
                log.warning("camera %r: cannot read its configuration (%r); trying again", self.camera_id, exc)
                await asyncio.sleep(5)
                continue
            for message in messages:
                config = decode_or_none(CameraConfig, message.value)
                if config is not None and config.camera_id == self.camera_id and config.removed:
                    log.warning("camera %r was removed: its source stops", self.camera_id)
                    self.removed.set()
                    return

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._follower:
            await self._follower.stop()


class ShapesInView:
    """Warns of the camera's lines, zones and calibration that its source's frames do not reach, at the first frame
    sent and whenever their size changes: a camera whose source changed (another clip, a stream at another
    resolution) kept lines drawn for the old frames, which counted nothing, without a word (a trial)."""

    def __init__(self, config: CameraConfig | None):
        self.config = config
        self._size: tuple[int, int] | None = None

    def __call__(self, stats) -> None:
        if stats.frame_size == self._size or self.config is None:
            return
        self._size = stats.frame_size
        width, height = self._size
        shapes = [*self.config.lines, *self.config.zones, *([self.config.calibration] if self.config.calibration else [])]
        for shape in shapes:
            reason = out_of_view(shape, width, height)
            if reason:
                undo = (f" (`its-faust cameras remove-{'line' if isinstance(shape, CountingLine) else 'zone'} "
                        f"{self.config.camera_id} {shape.name}`)" if isinstance(shape, (CountingLine, Zone)) else "")
                log.warning("camera %r: %s, as its source sends them now%s", self.config.camera_id, reason, undo)


async def newest_frame_size(bootstrap: str, settings, camera_id: str,
                            look_back: tuple[int, ...] = (500, 5_000, 50_000)) -> tuple[int, int] | None:
    """(width, height) of the camera's newest tracked frame on its partition of ``its.tracks``; None when
    none is there (nothing tracked yet, or not lately). It looks back from the partition's end over the
    last ``look_back[0]`` records, then as far as each next figure while none is found: a camera idle on
    a partition that other cameras keep busy is further back, and most changes are to a running one."""
    newest = await _newest_message(bootstrap, settings.topic(TRACKS), camera_id, look_back)
    record = decode_or_none(TrackRecord, newest.value) if newest else None
    return (record.width, record.height) if record else None


class CameraSentAlready(Exception):
    """Another producer is sending the camera's frames now."""


# A camera's newest frame this recent, and one newer still a moment later: another producer sends it now.
SENT_WITHIN_S = 5.0
SENT_RECHECK_S = 3.0
SENT_LOOK_BACK = 100  # records of its partition: whole frames, up to some 300 KB each at 1080p


async def check_not_sent_already(bootstrap: str, settings, camera_id: str, recheck_s: float = SENT_RECHECK_S) -> None:
    """CameraSentAlready when another producer is sending the camera's frames now.

    Two producers on one camera id fight over its seqs (each numbers its frames from its own start): only the one
    started last is tracked, the other's frames skipped as already seen without a word, and once the later one
    stops, the camera stays untracked until the other's seqs pass its last (for as long as they were started
    apart, at the other's frame rate: hours). Frames still coming ``recheck_s`` after the first look are
    another producer's; a producer that has just died (restarted by its supervisor) sends none."""
    topic = settings.topic(FRAMES)
    first = await _newest_message(bootstrap, topic, camera_id, (SENT_LOOK_BACK,))
    if first is None or time.time() - first.timestamp / 1000 > SENT_WITHIN_S:
        return
    log.info("camera %r sent a frame %.1f s ago: checking that no other producer is sending it (%.0f s)", camera_id,
             max(time.time() - first.timestamp / 1000, 0), recheck_s)
    await asyncio.sleep(recheck_s)
    newest = await _newest_message(bootstrap, topic, camera_id, (SENT_LOOK_BACK,))
    if newest is None or newest.offset <= first.offset:
        return
    frame = decode_or_none(FrameRecord, newest.value)
    numbered = f", seq {frame.seq}" if frame else ""
    raise CameraSentAlready(
        f"camera {camera_id!r} is being sent already: its frames keep coming from another producer (the newest "
        f"{max(time.time() - newest.timestamp / 1000, 0):.1f} s ago{numbered}). Two producers on one camera id fight "
        "over its seqs, and only the one started last is tracked; stop the other, or send this one as another "
        "--camera")


async def _newest_message(bootstrap: str, topic: str, camera_id: str, look_back: tuple[int, ...]):
    """The newest message of the camera on its partition of ``topic``, looking back from the partition's end over
    the last ``look_back[0]`` records, then as far as each next figure while none is found; None if none."""
    key = camera_id.encode()
    try:
        reader = await TopicReader(bootstrap, topic, keys=[key]).start()
    except ValueError:  # no such topic yet: nothing sent
        return None
    newest = None
    try:
        (tp,) = reader.consumer.assignment()
        end = await reader.consumer.position(tp)
        seen_from = None  # the records from here on were looked at already
        for depth in look_back:
            start = max(end - depth, 0)
            reader.consumer.seek(tp, start)
            newest = await _newest_of(reader, key, before=seen_from)
            if newest is not None or start == 0:
                break
            seen_from = start
    finally:
        await reader.stop()
    return newest


async def _newest_of(reader: TopicReader, key: bytes, before: int | None):
    """The newest message with ``key`` from the reader's position on, up to offset ``before`` (the end if None)."""
    newest = None
    async with contextlib.aclosing(reader.batches_to_end()) as batches:
        async for batch in batches:
            for message in batch:
                if before is not None and message.offset >= before:
                    return newest
                if message.key == key:
                    newest = message
    return newest


async def send_commands(bootstrap: str, settings, commands: list[CameraCommand], timeout_s: float = 30.0) -> CameraConfig:
    """Send commands (of one camera), wait until the last one has applied; CommandFailed if any was rejected."""
    if not commands:
        raise ValueError("no commands to send")
    async with contextlib.AsyncExitStack() as stack:  # whatever started is stopped, even if a later start fails
        configs = await TopicReader(bootstrap, settings.topic(CAMERA_CONFIGS)).start()
        stack.push_async_callback(configs.stop)
        rejections = await TopicReader(bootstrap, settings.topic(DEAD_LETTERS)).start()
        stack.push_async_callback(rejections.stop)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        stack.push_async_callback(producer.stop)
        return await _send_and_wait(settings, producer, configs, rejections, commands, timeout_s)


async def _send_and_wait(settings, producer, configs, rejections, commands: list[CameraCommand], timeout_s: float) -> CameraConfig:
    """Send the commands, then watch the configurations (and the dead letters) until the last one applied."""
    camera_id = commands[-1].camera_id
    for c in commands:
        await producer.send_and_wait(settings.topic(CAMERA_COMMANDS), key=c.camera_id.encode(), value=encode(c))

    async def check_rejections() -> None:
        for message in await rejections.poll(50):
            letter = decode_or_none(DeadLetter, message.value)
            if letter and letter.stage == "configure":
                # By the raw bytes: a command the worker could not even decode is still ours.
                ours = [c for c in commands if c.command_id.encode() in letter.value]
                if ours:
                    raise CommandFailed(f"{ours[0].change.op} on {ours[0].camera_id}: {letter.reason}")

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await check_rejections()
        for message in await configs.poll(50):
            config = decode_or_none(CameraConfig, message.value)
            if config and config.camera_id == camera_id and config.last_command_id == commands[-1].command_id:
                await check_rejections()  # an earlier command of the batch may have been refused
                return config
        await asyncio.sleep(0)
    raise NoWorkerApplied(f"camera {camera_id}: no worker applied the commands within {timeout_s:.0f}s (is one running?); "
                          "they stay queued, and a worker that starts applies them (sent again meanwhile, an add is "
                          "refused then as a duplicate: retry with --exist-ok, or ?exist_ok=true over HTTP)")


class CameraSetup(BaseModel):
    """What a camera should be configured with, as ``run`` and ``replay`` take it (``--line``, ``--config``).

    As a file: ``{"lines": [...], "zones": [...], "calibration": {...}, "speed_limit_kmh": 50}``; a
    hand-count file's single ``"line"`` is accepted too, and its other keys are ignored.
    """

    model_config = ConfigDict(extra="forbid")

    lines: list[CountingLine] = Field(default_factory=list)
    zones: list[Zone] = Field(default_factory=list)
    calibration: Calibration | None = None
    speed_limit_kmh: float | None = Field(None, gt=0, le=400)

    @classmethod
    def from_json(cls, data) -> "CameraSetup":
        if not isinstance(data, dict):
            raise ValueError("a camera config is a JSON object")
        known = {"lines", "zones", "calibration", "speed_limit_kmh"}
        if "line" in data and "clip" in data:  # a hand-count file (tests/data/counts)
            data = {"lines": [data["line"]]}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)}; expected some of {sorted(known)}")
        return cls.model_validate({k: v for k, v in data.items() if v is not None})

    def check(self) -> "CameraSetup":
        for kind, names in (("line", [l.name for l in self.lines]), ("zone", [z.name for z in self.zones])):
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names must differ: {names}")
        return self

    def check_in_view(self, width: int, height: int, source: str = "the source") -> "CameraSetup":
        """ValueError naming the first line, zone or calibration wholly outside ``source``'s ``width`` x ``height``
        frames; a warning for a line reaching far past them (x and y swapped, a line drawn for another frame size)."""
        for shape in [*self.lines, *self.zones, *([self.calibration] if self.calibration else [])]:
            reason = out_of_view(shape, width, height)
            if reason:
                raise ValueError(f"{source}: {reason}")
        for line in self.lines:
            xs, ys = (line.x1, line.x2), (line.y1, line.y2)
            if min(xs) < -0.1 * width or max(xs) > 1.1 * width or min(ys) < -0.1 * height or max(ys) > 1.1 * height:
                log.warning("%s: line %r reaches far past the %dx%d frame (x %g to %g, y %g to %g): x runs across "
                            "and y down: were they swapped, or the line drawn for another frame size?", source, line.name, width, height, min(xs), max(xs),
                            min(ys), max(ys))
        if self.calibration is not None:
            for line in self.lines:
                outside = uncalibrated_share(line, self.calibration)
                if outside > 0:
                    # (a speed trial's line over all four lanes: the fast lane's vehicles, outside, were the ones
                    # left out of the line's mean and p85, with nothing said)
                    log.warning("%s: %.0f%% of line %r lies outside the calibrated road (the calibration's four "
                                "image points): vehicles crossing it there get no speed, and the line's speed figures "
                                "leave them out; calibrate the whole stretch the line spans", source, 100 * outside,
                                line.name)
        return self


def uncalibrated_share(line: CountingLine, calibration: Calibration, samples: int = 21) -> float:
    """How much of ``line`` lies outside ``calibration``'s image quadrilateral (0 to 1), where no speed is measured."""
    from tables.zones import inside

    area = [tuple(p) for p in calibration.image_points]
    mx, my = (line.x1 + line.x2) / 2, (line.y1 + line.y2) / 2

    def in_area(x: float, y: float) -> bool:
        # On the area's edge (a line drawn from edge to edge of the calibrated road) is in: a pixel inwards is.
        d = max(1.0, ((mx - x) ** 2 + (my - y) ** 2) ** 0.5)
        return inside(area, (x, y)) or inside(area, (x + (mx - x) / d, y + (my - y) / d))

    points = [(line.x1 + (line.x2 - line.x1) * i / (samples - 1), line.y1 + (line.y2 - line.y1) * i / (samples - 1))
              for i in range(samples)]
    return sum(1 for x, y in points if not in_area(x, y)) / samples


def check_speed_limit(whole: CameraSetup | CameraConfig) -> None:
    """A speed limit needs a calibration: judged on what the camera will run with, the camera's own and what
    was given together (a --config with a limit alone, for a calibrated camera, was refused)."""
    if whole.speed_limit_kmh is not None and whole.calibration is None:
        raise ValueError("a speed limit needs a calibration (speeds come from it)")


def with_kept(setup: CameraSetup, config: CameraConfig | None) -> tuple[CameraSetup, list[str]]:
    """``setup`` and what the camera has already and ``setup`` does not replace (``ensure_setup`` leaves
    those as they are, so the workers go on counting them): the whole of what it will run with, and the
    kept parts by name (``line y120``, ``zone lanes``, ``calibration``, ``speed limit``)."""
    if config is None or config.removed:
        return setup, []
    line_names, zone_names = {line.name for line in setup.lines}, {zone.name for zone in setup.zones}
    lines = [line for line in config.lines if line.name not in line_names]
    zones = [zone for zone in config.zones if zone.name not in zone_names]
    kept = [f"line {line.name}" for line in lines] + [f"zone {zone.name}" for zone in zones]
    whole = setup.model_copy(update={"lines": setup.lines + lines, "zones": setup.zones + zones})
    if setup.calibration is None and config.calibration is not None:
        whole.calibration = config.calibration
        kept.append("calibration")
    if setup.speed_limit_kmh is None and config.speed_limit_kmh is not None:
        whole.speed_limit_kmh = config.speed_limit_kmh
        kept.append("speed limit")
    return whole, kept


def replaced_by(setup: CameraSetup, config: CameraConfig | None) -> list[str]:
    """What ``setup`` gives in place of something the camera has under the same name, otherwise defined
    (``line y120``, ``zone lanes``, ``calibration``, ``speed limit``): ``ensure_setup`` replaces them, and a line or
    zone added again counts afresh."""
    if config is None or config.removed:
        return []
    replaced = [f"line {line.name}" for line in setup.lines if config.line(line.name) not in (None, line)]
    replaced += [f"zone {zone.name}" for zone in setup.zones if config.zone(zone.name) not in (None, zone)]
    if setup.calibration is not None and config.calibration not in (None, setup.calibration):
        replaced.append("calibration")
    if setup.speed_limit_kmh is not None and config.speed_limit_kmh not in (None, setup.speed_limit_kmh):
        replaced.append("speed limit")
    return replaced


def beyond_setup(config: CameraConfig | None, setup: CameraSetup) -> list[Change]:
    """The changes that drop what the camera has and ``setup`` does not give (what ``with_kept`` keeps)."""
    from schemas.control import RemoveLine, RemoveZone, SetCalibration, SetSpeedLimit

    if config is None or config.removed:
        return []
    line_names, zone_names = {line.name for line in setup.lines}, {zone.name for zone in setup.zones}
    changes: list[Change] = [RemoveLine(name=line.name) for line in config.lines if line.name not in line_names]
    changes += [RemoveZone(name=zone.name) for zone in config.zones if zone.name not in zone_names]
    if setup.calibration is None and config.calibration is not None:
        changes.append(SetCalibration(calibration=None))
    if setup.speed_limit_kmh is None and config.speed_limit_kmh is not None:
        changes.append(SetSpeedLimit(kmh=None))
    return changes


def ensure_setup(config: CameraConfig | None, camera_id: str, setup: CameraSetup, *, source: str = "") -> list[Change]:
    """The changes that give the camera these lines, zones, calibration and limit (others it has stay),
    and ``source`` as where its frames come from, when given."""
    from schemas.control import AddCamera, AddZone, RemoveLine, RemoveZone, SetCalibration, SetSpeedLimit, UpdateCamera

    changes: list[Change] = []
    if config is None or config.removed:
        changes.append(AddCamera(name=camera_id, source=source))
        config = None
    elif source and config.source != source:
        changes.append(UpdateCamera(source=source))
    for line in setup.lines:
        existing = config.line(line.name) if config else None
        if existing != line:
            changes += ([RemoveLine(name=line.name)] if existing else []) + [AddLine(line=line)]
    for zone in setup.zones:
        existing = config.zone(zone.name) if config else None
        if existing != zone:
            changes += ([RemoveZone(name=zone.name)] if existing else []) + [AddZone(zone=zone)]
    if setup.calibration is not None and (config is None or config.calibration != setup.calibration):
        changes.append(SetCalibration(calibration=setup.calibration))
    if setup.speed_limit_kmh is not None and (config is None or config.speed_limit_kmh != setup.speed_limit_kmh):
        changes.append(SetSpeedLimit(kmh=setup.speed_limit_kmh))
    return changes
