"""``its-faust cameras ...``: configure cameras by sending commands to ``its.camera-commands``.

Every command is validated here first (geometry, and against the camera's
current configuration), so a mistake gets a precise one-line error and nothing
is sent. Then it is sent and the command waits until a worker has applied it.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path

import click
from pydantic import BaseModel, ValidationError

from its_faust.cameras import (
    CommandFailed,
    NoWorkerApplied,
    beyond_setup,
    command,
    ensure_setup,
    newest_frame_size,
    parse_line,
    parse_points,
    read_configs,
    send_commands,
    validation_message,
)
from its_faust.cli_support import fail, running_broker, settings_or_fail, terminal_safe
from schemas.control import (
    AddCamera,
    AddLine,
    AddZone,
    DisplayName,
    RemoveCamera,
    RemoveLine,
    RemoveZone,
    SetCalibration,
    SetSpeedLimit,
    SourceText,
    UpdateCamera,
)
from schemas.geometry import Calibration, Zone, out_of_view
from tables.camera_config import CommandRejected, already_added, changes_nothing
from tables.camera_config import apply as apply_command


def _bootstrap(broker_url: str | None) -> str:
    return running_broker(broker_url, "cameras needs a running broker and worker", "`its-faust broker`, `its-faust worker`",
                          unreachable_code=UNREACHABLE_EXIT_CODE)


# A command not applied by then gets a line saying that it waits for a worker.
WAIT_NOTE_AFTER_S = 3.0
# Sent and queued, but no worker applied it in time: a script can tell it from a refusal (2), which sending
# again would not mend, and from success (0).
QUEUED_EXIT_CODE = 3
# The broker does not answer: nothing was sent, and sending again once it is back may mend it (a refusal, 2, would
# not; a set-up script told them apart by the message alone: a trial).
UNREACHABLE_EXIT_CODE = 4


class _DisplayText(BaseModel):
    name: DisplayName | None = None
    source: SourceText | None = None


def _display_text(name: str | None, source: str | None) -> dict:
    """``--name`` and ``--source`` checked as the API checks them (schemas.control.DisplayName, SourceText)."""
    return _DisplayText(name=name, source=source).model_dump(exclude_none=True)


def _send(camera_id: str, build, broker_url: str | None, timeout_s: float, subject: str = "",
          exist_ok: bool = False) -> None:
    """Build the change (errors are the user's), check it against the current config, send it, wait.
    ``subject`` (``zone 'lanes'``) names what a refused change is about, after the camera;
    ``exist_ok``: an add of what the camera has already, the same, is nothing to change."""
    about = f"{camera_id}: {subject}: " if subject else f"{camera_id}: "
    try:
        change = build()
    except ValidationError as exc:
        fail(about + validation_message(exc))
    except ValueError as exc:
        fail(about + str(exc))
    settings = settings_or_fail()
    bootstrap = _bootstrap(broker_url)
    try:
        cmd = command(camera_id, change, issued_by=getpass.getuser())
    except ValidationError as exc:
        fail(validation_message(exc))

    async def go():
        configs = await read_configs(bootstrap, settings)
        current = configs.get(camera_id)
        if (exist_ok and already_added(current, cmd)) or changes_nothing(current, cmd):  # or a precise error now
            return current, False
        if isinstance(change, AddCamera) and current is None:
            # Ids are case-sensitive: a mistyped one (Cam-1 for cam-1) was another camera, without a word.
            alike = sorted(c for c, config in configs.items() if c.lower() == camera_id.lower() and not config.removed)
            if alike:
                click.echo(f"its-faust: note: {camera_id!r} differs from camera {alike[0]!r} only by case: ids are "
                           "case-sensitive, so this is another camera", err=True)
        await _check_in_view(bootstrap, settings, camera_id, change)
        # A worker starting (loading its model, joining) takes a while to apply it: say what the wait is.
        waiting = asyncio.get_running_loop().call_later(WAIT_NOTE_AFTER_S, lambda: click.echo(
            f"{camera_id}: sent; waiting for a worker to apply it (up to {timeout_s:g} s)", err=True))
        try:
            return await send_commands(bootstrap, settings, [cmd], timeout_s=timeout_s), True
        finally:
            waiting.cancel()

    config, sent = _sent_or_fail(go(), lambda exc: f"{exc} (`its-faust cameras add {camera_id}`)" if exc.add_first
                                 else str(exc))
    if not sent:
        click.echo(f"{camera_id}: {change.op}{_named(change)}: nothing to change, it is so already (config v{config.version})")
        return
    click.echo(f"{camera_id}: {change.op}{_named(change)} applied (config v{config.version})")
    if isinstance(change, SetSpeedLimit) and change.kmh is not None and config.calibration is None:
        click.echo(f"{camera_id}: note: no calibration, so no speeds and no overspeed alerts yet "
                   f"(`its-faust cameras calibrate {camera_id} ...`)")


def _sent_or_fail(sending, rejected):
    """Run ``sending`` (a coroutine); a refusal is one error line (``rejected`` words it), as is a command that
    failed; no worker applying it in time exits QUEUED_EXIT_CODE."""
    try:
        return asyncio.run(sending)
    except CommandRejected as exc:
        fail(rejected(exc))
    except NoWorkerApplied as exc:  # sent, and applied once a worker runs: not refused, and not to be sent again
        fail(str(exc), code=QUEUED_EXIT_CODE)
    except CommandFailed as exc:
        fail(str(exc))


def _named(change) -> str:
    """The line or zone a change is about, by name: an unnamed --line is named for the user (line1, ...)."""
    item = getattr(change, "line", None) or getattr(change, "zone", None)
    name = item.name if item is not None else getattr(change, "name", None)
    kind = "line" if isinstance(change, (AddLine, RemoveLine)) else "zone" if isinstance(change, (AddZone, RemoveZone)) else ""
    return f" {kind} {name!r}" if kind and name else ""


async def _check_in_view(bootstrap: str, settings, camera_id: str, change) -> None:
    """A line, zone or calibration wholly outside the camera's frame is refused, as the API does, once a frame has
    been tracked."""
    shape = (change.line if isinstance(change, AddLine) else change.zone if isinstance(change, AddZone)
             else change.calibration if isinstance(change, SetCalibration) else None)
    size = await newest_frame_size(bootstrap, settings, camera_id) if shape else None
    reason = out_of_view(shape, *size) if size else None
    if reason:
        raise CommandRejected(f"{camera_id}: {reason}")


broker_option = click.option("--broker", "broker_url", help="kafka://host:port (default: ITS_FAUST_BROKER_URL).")
timeout_option = click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=30.0,
                              show_default=True, help="Seconds to wait for a worker to apply the command (none by "
                              "then: exit status 3, the command stays queued and a worker that starts applies it).")
exist_ok_option = click.option("--exist-ok", is_flag=True,
                               help="One of that name that is already so (the same) is not an error: for set-up scripts run again.")


@click.group()
def cameras() -> None:
    """List and configure cameras: counting lines, zones, calibration, speed limit.

    Changes are commands on the its.camera-commands topic; a running worker applies them.
    Exit status: 0 applied (or nothing to change), 2 refused (with why), 3 sent but no worker
    applied it in time (it stays queued), 4 the broker does not answer (nothing sent).
    """


@cameras.command("list")
@broker_option
@click.option("--json", "as_json", is_flag=True, help="Print the full configurations as JSON.")
def list_cameras(broker_url, as_json) -> None:
    """Every camera's current configuration."""
    configs = asyncio.run(read_configs(_bootstrap(broker_url), settings_or_fail()))
    live = sorted((c for c in configs.values() if not c.removed), key=lambda c: c.camera_id)
    if as_json:  # in camera order too: the order configs come in from the partitions is not stable
        click.echo(json.dumps([c.model_dump(mode="json", by_alias=True) for c in live], indent=2))
        return
    if not live:
        click.echo("no cameras (add one: its-faust cameras add CAMERA_ID)")
        return
    click.echo(_table(["CAMERA", "NAME", "VERSION", "LINES", "ZONES", "CALIBRATED", "LIMIT KM/H"], [
        [c.camera_id, terminal_safe(c.name) or "-", f"v{c.version}", ", ".join(l.name for l in c.lines) or "-",
         ", ".join(z.name for z in c.zones) or "-", "yes" if c.calibration else "no", f"{c.speed_limit_kmh:g}"
         if c.speed_limit_kmh else "-"] for c in live]))


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Columns aligned under a header, as kubectl lists things (it printed each camera's fields run together)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows])


@cameras.command("add")
@click.argument("camera_id")
@click.option("--name", default="", help="Display name (default: the id).")
@click.option("--source", default="", help="Where its frames come from, for operators (file, rtsp://...).")
@exist_ok_option
@broker_option
@timeout_option
def add(camera_id, name, source, exist_ok, broker_url, timeout_s) -> None:
    """Add a camera."""
    _send(camera_id, lambda: AddCamera(**_display_text(name=name, source=source)), broker_url, timeout_s,
          exist_ok=exist_ok)


@cameras.command("apply")
@click.argument("camera_id")
@click.argument("config_file", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--keep-others", is_flag=True, help="Keep what the camera has and FILE does not name (lines, zones, "
              "calibration, speed limit); without it they are removed, and the camera is as FILE says.")
@broker_option
@timeout_option
def apply_file(camera_id, config_file, keep_others, broker_url, timeout_s) -> None:
    """Give a camera the lines, zones, calibration and speed limit of FILE, in one go.

    FILE is the JSON `run --config` takes: {"lines": [...], "zones": [...], "calibration": {...},
    "speed_limit_kmh": 50}. The camera is added if it is not configured. Only what differs is sent (a line
    or zone redefined under its name counts afresh); every change is checked first, as a worker will, and
    one refused is an error with nothing sent. Run again, it finds the camera so already and sends nothing.
    """
    from its_faust.cli import _setup_from  # (cli registers this group: imported here, not at the top)

    try:
        setup = _setup_from((), config_file)
    except ValueError as exc:
        fail(str(exc))
    settings = settings_or_fail()
    bootstrap = _bootstrap(broker_url)
    user = getpass.getuser()

    async def go():
        current = (await read_configs(bootstrap, settings)).get(camera_id)
        changes = ([] if keep_others else beyond_setup(current, setup)) + ensure_setup(current, camera_id, setup)
        try:
            commands = [command(camera_id, change, issued_by=user) for change in changes]
        except ValidationError as exc:
            raise CommandRejected(f"{camera_id}: {validation_message(exc)}") from None
        config = current
        for c in commands:  # as the worker will apply them, in order: a refusal now sends nothing
            config = apply_command(config, c)
        size = await newest_frame_size(bootstrap, settings, camera_id)
        for shape in [*setup.lines, *setup.zones, setup.calibration] if size else []:
            reason = shape is not None and out_of_view(shape, *size)
            if reason:
                raise CommandRejected(f"{camera_id}: {reason}")
        if not commands:
            return current, []
        waiting = asyncio.get_running_loop().call_later(WAIT_NOTE_AFTER_S, lambda: click.echo(
            f"{camera_id}: {len(commands)} change(s) sent; waiting for a worker to apply them (up to {timeout_s:g} s)",
            err=True))
        try:
            return await send_commands(bootstrap, settings, commands, timeout_s=timeout_s), changes
        finally:
            waiting.cancel()

    config, changes = _sent_or_fail(go(), lambda exc: f"{exc} (nothing sent)")
    if not changes:
        click.echo(f"{camera_id}: as {config_file} says already: nothing to change (config v{config.version})")
        return
    click.echo(f"{camera_id}: {config_file} applied, {len(changes)} change(s) (config v{config.version}): "
               f"{_what_changed(changes)}")


def _what_changed(changes) -> str:
    """``camera added; line added a, b; line replaced c; zone removed d; calibration set``: what the changes do."""
    def named(kind, change):
        return getattr(change, kind).name if isinstance(change, AddLine if kind == "line" else AddZone) else None

    said = ["camera added"] if any(isinstance(c, AddCamera) for c in changes) else []
    for kind, remove in (("line", RemoveLine), ("zone", RemoveZone)):
        added = [named(kind, c) for c in changes if named(kind, c)]
        removed = [c.name for c in changes if isinstance(c, remove)]
        for what, names in ((" added", [n for n in added if n not in removed]),
                            (" replaced", [n for n in added if n in removed]),
                            (" removed", [n for n in removed if n not in added])):
            if names:
                said.append(f"{kind}{what} {', '.join(names)}")
    for c in changes:
        if isinstance(c, SetCalibration):
            said.append("calibration " + ("set" if c.calibration else "removed"))
        elif isinstance(c, SetSpeedLimit):
            said.append(f"speed limit {c.kmh:g} km/h" if c.kmh is not None else "speed limit removed")
    return "; ".join(said)


@cameras.command("update")
@click.argument("camera_id")
@click.option("--name", help="New display name.")
@click.option("--source", help="New source.")
@broker_option
@timeout_option
def update(camera_id, name, source, broker_url, timeout_s) -> None:
    """Change a camera's name or source."""
    if name is None and source is None:
        raise click.UsageError("nothing to change: give --name or --source")
    _send(camera_id, lambda: UpdateCamera(**_display_text(name=name, source=source)), broker_url, timeout_s)


@cameras.command("remove")
@click.argument("camera_id")
@broker_option
@timeout_option
def remove(camera_id, broker_url, timeout_s) -> None:
    """Remove a camera (its lines, zones and calibration go with it)."""
    _send(camera_id, RemoveCamera, broker_url, timeout_s)


# Coordinates may be negative (a line or zone reaching past the frame's edge): "-5,0,..." is a value
# there, not an unknown option. A mistyped option still fails, as an unexpected argument.
# "-h" is not click's help flag here: ignore_unknown_options would otherwise read the h of ":north" in
# "-5,120,620,120:north" as -h and print the help instead of adding the line. A lone "-h" (no value
# is that) still shows the help, as it does for every other command.
class NegativeNumbersAreValues(click.Command):
    def __init__(self, *args, **kwargs):
        kwargs["context_settings"] = {"ignore_unknown_options": True, "help_option_names": ["--help"],
                                      **(kwargs.get("context_settings") or {})}
        super().__init__(*args, **kwargs)

    def get_help_option(self, ctx: click.Context):
        # Click parses only --help here: as an option it would take the h of "-20,0,300,0:shoulder". -h alone
        # is caught in parse_args; the help says so.
        option = super().get_help_option(ctx)
        if option is not None:
            option.help = "Show this message and exit (-h too)."
        return option

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "-h" in args:
            click.echo(self.get_help(ctx), color=ctx.color)
            ctx.exit()
        return super().parse_args(ctx, args)


@cameras.command("add-line", cls=NegativeNumbersAreValues)
@click.argument("camera_id")
@click.argument("line", metavar="X1,Y1,X2,Y2[:NAME]")
@click.option("--count", type=click.Choice(["both", "in", "out"]), default="both", show_default=True,
              help="Directions to count. Standing at the first end facing the second, left-to-right is 'in'.")
@exist_ok_option
@broker_option
@timeout_option
def add_line(camera_id, line, count, exist_ok, broker_url, timeout_s) -> None:
    """Add a counting line (pixel coordinates of the camera's frames)."""
    _send(camera_id, lambda: AddLine(line=parse_line(line, count=count)), broker_url, timeout_s, exist_ok=exist_ok)


@cameras.command("remove-line")
@click.argument("camera_id")
@click.argument("name")
@broker_option
@timeout_option
def remove_line(camera_id, name, broker_url, timeout_s) -> None:
    """Remove a counting line."""
    _send(camera_id, lambda: RemoveLine(name=name), broker_url, timeout_s)


@cameras.command("add-zone", cls=NegativeNumbersAreValues)
@click.argument("camera_id")
@click.argument("name")
@click.argument("points", nargs=-1, required=True, metavar="X,Y X,Y X,Y...")
@click.option("--lane", is_flag=True, help="A traffic lane: a vehicle stopped in it raises a stopped-vehicle alert.")
@click.option("--heading", type=float,
              help="Allowed direction of travel, degrees clockwise from 'right' on screen; traffic against it raises wrong-way alerts.")
@exist_ok_option
@broker_option
@timeout_option
def add_zone(camera_id, name, points, lane, heading, exist_ok, broker_url, timeout_s) -> None:
    """Add a polygon zone (at least three points, edges must not cross)."""
    _send(
        camera_id,
        lambda: AddZone(zone=Zone(name=name, points=parse_points(points), kind="lane" if lane else "area", heading_deg=heading)),
        broker_url, timeout_s, subject=f"zone {name!r}", exist_ok=exist_ok,
    )


@cameras.command("remove-zone")
@click.argument("camera_id")
@click.argument("name")
@broker_option
@timeout_option
def remove_zone(camera_id, name, broker_url, timeout_s) -> None:
    """Remove a zone."""
    _send(camera_id, lambda: RemoveZone(name=name), broker_url, timeout_s)


@cameras.command("calibrate")
@click.argument("camera_id")
@click.option("--image", "image_points", multiple=True, metavar="X,Y", help="An image point (give four).")
@click.option("--road", "road_points", multiple=True, metavar="X,Y", help="Where it lies on the road, in metres (four, same order).")
@click.option("--clear", is_flag=True, help="Remove the calibration.")
@broker_option
@timeout_option
def calibrate(camera_id, image_points, road_points, clear, broker_url, timeout_s) -> None:
    """Set the image-to-road calibration: four image points and their road-plane positions in metres."""

    if clear and (image_points or road_points):
        raise click.UsageError("--clear removes the calibration: give it alone, or the points without it")

    def build():
        if clear:
            return SetCalibration(calibration=None)
        if len(image_points) != 4 or len(road_points) != 4:
            raise ValueError(f"a calibration is exactly four --image points and four --road points, in the same "
                             f"order (given: {len(image_points)} and {len(road_points)})")
        return SetCalibration(calibration=Calibration(image_points=parse_points(image_points), road_points=parse_points(road_points)))

    _send(camera_id, build, broker_url, timeout_s)


@cameras.command("speed-limit", cls=NegativeNumbersAreValues)
@click.argument("camera_id")
@click.argument("kmh", metavar="KMH|none")
@broker_option
@timeout_option
def speed_limit(camera_id, kmh, broker_url, timeout_s) -> None:
    """Set (or with 'none' remove) the speed limit used for overspeed alerts."""

    def build():
        if kmh.lower() == "none":
            return SetSpeedLimit(kmh=None)
        try:
            value = float(kmh)
        except ValueError:
            raise ValueError(f"speed limit {kmh!r}: a number of km/h, or none") from None
        return SetSpeedLimit(kmh=value)

    _send(camera_id, build, broker_url, timeout_s)
