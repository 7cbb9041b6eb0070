"""Folding camera commands into a camera's configuration (pure: no Faust here).

``apply(config, command)`` is the whole rule book: it either returns the new
configuration or raises :class:`CommandRejected` with the reason, leaving the
old one as it was. The configure agent and ``its-faust cameras`` (to check a
command before it is sent) both use it.
"""

from __future__ import annotations

from datetime import datetime, timezone

from schemas.control import (
    AddCamera,
    AddLine,
    AddZone,
    CameraCommand,
    CameraConfig,
    RemoveCamera,
    RemoveLine,
    RemoveZone,
    SetCalibration,
    SetSpeedLimit,
    UpdateCamera,
)
from schemas.geometry import CountingLine, Zone


class CommandRejected(ValueError):
    """The command cannot apply to the camera as it is; ``str()`` is the reason.

    ``missing``: what the command names (the camera, a line or zone of it) does not exist,
    rather than conflicting with what does (an HTTP API answers 404 for the one, 409 for the other).
    ``add_first``: the camera is unknown and the change needs it added first (a CLI can say how).
    """

    def __init__(self, reason: str, *, missing: bool = False, add_first: bool = False):
        super().__init__(reason)
        self.missing = missing
        self.add_first = add_first


# What a camera added or removed has of lines, zones and their settings: nothing.
_NO_GEOMETRY = {"lines": [], "line_versions": {}, "line_added_at": {}, "zones": [], "zone_versions": {},
                "zone_added_at": {}, "calibration": None, "speed_limit_kmh": None}


def apply(config: CameraConfig | None, command: CameraCommand, now: float | None = None) -> CameraConfig:
    """``now``: the applier's clock (the configure stage's). A line or zone counts from when its command was issued
    (:class:`AsAdded`), but from no later than ``now``: a sender's clock ahead would hold it back for as long."""
    change = command.change
    added_at = command.issued_at if now is None else min(command.issued_at, now)
    exists = config is not None and not config.removed
    if isinstance(change, AddCamera):
        if exists:
            raise CommandRejected(f"camera {command.camera_id!r} already exists (name {config.name!r}, source "
                                  f"{config.source or ''!r}): update it, or remove it first")
        fields = {"name": change.name or command.camera_id, "source": change.source, "removed": False,
                  **_NO_GEOMETRY}
    elif not exists:
        removing = isinstance(change, RemoveCamera)
        if config is not None:  # removed: said so, not "unknown" (a second DELETE looked like a typo)
            hint = "nothing to remove" if removing else "add it again first"
            raise CommandRejected(f"camera {command.camera_id!r} was removed: {hint}", missing=True,
                                  add_first=not removing)
        hint = "nothing to remove" if removing else "add it first"
        raise CommandRejected(f"unknown camera {command.camera_id!r}: {hint}", missing=True, add_first=not removing)
    elif isinstance(change, UpdateCamera):
        fields = {k: v for k, v in (("name", change.name), ("source", change.source)) if v is not None}
        if fields.get("name") == "":  # as when it was added: a camera without a name shows its id
            fields["name"] = command.camera_id
    elif isinstance(change, RemoveCamera):
        fields = {"removed": True, **_NO_GEOMETRY}
    elif isinstance(change, AddLine):
        if config.line(change.line.name):
            raise CommandRejected(f"camera {command.camera_id!r} already has a line {change.line.name!r} "
                                  f"({_described(config.line(change.line.name))}): remove it first")
        fields = {"lines": [*config.lines, change.line],
                  "line_versions": {**config.line_versions, change.line.name: config.version + 1},
                  "line_added_at": {**config.line_added_at, change.line.name: added_at}}
    elif isinstance(change, RemoveLine):
        if not config.line(change.name):
            raise CommandRejected(f"camera {command.camera_id!r} has no line {change.name!r}", missing=True)
        fields = {"lines": [line for line in config.lines if line.name != change.name],
                  "line_versions": {k: v for k, v in config.line_versions.items() if k != change.name},
                  "line_added_at": {k: v for k, v in config.line_added_at.items() if k != change.name}}
    elif isinstance(change, AddZone):
        if config.zone(change.zone.name):
            raise CommandRejected(f"camera {command.camera_id!r} already has a zone {change.zone.name!r} "
                                  f"({_described(config.zone(change.zone.name))}): remove it first")
        fields = {"zones": [*config.zones, change.zone],
                  "zone_versions": {**config.zone_versions, change.zone.name: config.version + 1},
                  "zone_added_at": {**config.zone_added_at, change.zone.name: added_at}}
    elif isinstance(change, RemoveZone):
        if not config.zone(change.name):
            raise CommandRejected(f"camera {command.camera_id!r} has no zone {change.name!r}", missing=True)
        fields = {"zones": [zone for zone in config.zones if zone.name != change.name],
                  "zone_versions": {k: v for k, v in config.zone_versions.items() if k != change.name},
                  "zone_added_at": {k: v for k, v in config.zone_added_at.items() if k != change.name}}
    elif isinstance(change, SetCalibration):
        fields = {"calibration": change.calibration}
    elif isinstance(change, SetSpeedLimit):
        fields = {"speed_limit_kmh": change.kmh}
    else:  # pragma: no cover - the schema's union is closed
        raise CommandRejected(f"unknown change {type(change).__name__}")
    base = config.model_dump(by_alias=True) if config is not None else {"camera_id": command.camera_id}
    base.update(fields)
    base.update(
        version=(config.version if config else 0) + 1,
        last_command_id=command.command_id,
        updated_at=command.issued_at,
    )
    return CameraConfig.model_validate(base)


def _described(item: CountingLine | Zone) -> str:
    """A line's or zone's settings as the CLI takes them, for a conflict's message: what is there, so that it
    says what differs."""
    if isinstance(item, CountingLine):
        return f"{item.x1:g},{item.y1:g},{item.x2:g},{item.y2:g}, count {item.count}"
    heading = f", heading {item.heading_deg:g}" if item.heading_deg is not None else ""
    return f"{' '.join(f'{x:g},{y:g}' for x, y in item.points)}, {item.kind}{heading}"


def applied_before(config: CameraConfig | None, command: CameraCommand, offset: int, log_end: int | None) -> bool:
    """Whether the command at ``offset`` of its camera's commands partition is one ``config`` applied already
    (delivered again after a worker's restart), so is skipped. An offset past the last one applied is new.
    One not past it is a redelivery, unless the log is no longer the one ``config`` was built from: another
    command stands at the very offset last applied, or the partition now ends at or before that offset
    (``log_end``, None where it is not known; the commands topic was deleted and created again, or an
    in-memory broker restarted).
    Skipping those, as this once did, ignored every new command silently until the offsets grew past the old ones."""
    if config is None or offset > config.applied_offset:
        return False
    if offset == config.applied_offset and command.command_id != config.last_command_id:
        return False
    return log_end is None or log_end > config.applied_offset


# What every applied command changes, whatever it is: left out when asking whether a command changes anything.
_BOOKKEEPING = {"version", "last_command_id", "updated_at", "applied_offset"}


def changes_nothing(config: CameraConfig | None, command: CameraCommand) -> bool:
    """Whether ``command`` would leave ``config`` as it is, but for its version (the same name, the same speed
    limit again, a calibration removed where there is none): sending it would only count a version up.
    Raises CommandRejected as ``apply`` does."""
    if config is None:
        apply(config, command)
        return False
    after = apply(config, command)
    return after.model_dump(exclude=_BOOKKEEPING) == config.model_dump(exclude=_BOOKKEEPING)


def already_added(config: CameraConfig | None, command: CameraCommand) -> bool:
    """Whether an add command asks for what the camera has already: itself with the same name and
    source, or a line or zone of that name with the same geometry and settings. A set-up script run a
    second time (``cameras add --exist-ok``) finds it so; anything else of that name is still a conflict."""
    if config is None or config.removed:
        return False
    change = command.change
    if isinstance(change, AddCamera):
        return config.name == (change.name or command.camera_id) and (config.source or "") == change.source
    if isinstance(change, AddLine):
        return config.line(change.line.name) == change.line
    if isinstance(change, AddZone):
        return config.zone(change.zone.name) == change.zone
    return False


class AsAdded:
    """A camera's configuration as it was at a moment: only the lines and zones added by then.

    A line counts from when the command that added it was issued (``CameraConfig.line_added_at``), in the workers
    and in replay alike. A frame's moment is when it was tracked (``TrackRecord.tracked_at``, a worker's clock as
    ``issued_at`` is the sender's): its analysis can come seconds later, and with the whole configuration as it is
    then, a new line counted the crossings of frames tracked some 3 s before it was added (those in the analyze
    stage's queue), which replay did not count."""

    def __init__(self, config: CameraConfig):
        self.config = config
        self._cache: dict[tuple, CameraConfig] = {}
        self._added = ([("line", line.name, config.line_added_at.get(line.name, 0.0)) for line in config.lines]
                       + [("zone", zone.name, config.zone_added_at.get(zone.name, 0.0)) for zone in config.zones])
        self._newest = max((added for _, _, added in self._added), default=0.0)

    def added_after(self, at: float) -> dict[str, str]:
        """Each line and zone added after ``at``: when, in ISO 8601 (UTC)."""
        return {f"{kind} {name}": datetime.fromtimestamp(added, timezone.utc).isoformat(timespec="seconds")
                for kind, name, added in self._added if added > at}

    def at(self, at: float) -> CameraConfig:
        if at >= self._newest:  # (every frame but those of the moments after an add)
            return self.config
        later = tuple((kind, name) for kind, name, added in self._added if added > at)
        if later not in self._cache:
            self._cache[later] = self.config.model_copy(update={
                "lines": [line for line in self.config.lines if ("line", line.name) not in later],
                "zones": [zone for zone in self.config.zones if ("zone", zone.name) not in later]})
        return self._cache[later]
