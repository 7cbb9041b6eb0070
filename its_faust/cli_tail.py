"""``its-faust tail TOPIC``: follow one of the pipeline's topics, a line a record (:mod:`its_faust.topic_tail`)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys

import click

from its_faust.cli_support import fail, running_broker, settings_or_fail, stop_on_terminate
from its_faust.topic_names import ALL, WORKERS


class TopicName(click.Choice):
    """One of the pipeline's topics, by its name without the prefix; the whole name (``its.tracks``) works too."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and "." in value and value.split(".", 1)[1].lower() in self.choices:
            value = value.split(".", 1)[1]
        return super().convert(value, param, ctx)


@click.command()
@click.argument("topic", type=TopicName(ALL, case_sensitive=False), metavar="TOPIC")
@click.option("--camera", "cameras", multiple=True, metavar="ID", help="Only this camera's records (the key); repeatable.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record the broker holds.")
@click.option("--last", type=click.IntRange(min=0), metavar="N", help="Start with the newest N records.")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Keep waiting for new records, or stop at the end the topic had at the start.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Stop after N records.")
@click.option("--json", "as_json", is_flag=True, help="Each record whole, as one JSON object a line (topic, partition, "
              "offset, timestamp, key, value).")
@click.option("--broker", "broker_url", help="kafka://host:port (default: ITS_FAUST_BROKER_URL).")
def tail(topic: str, cameras: tuple[str, ...], from_beginning: bool, last: int | None, follow: bool, limit: int | None,
         as_json: bool, broker_url: str | None) -> None:
    """Show the records of one of the pipeline's topics as they arrive, a line each (Ctrl-C stops).

    TOPIC is one of: frames, detections, tracks, camera-events, dead-letters, camera-commands,
    camera-configs, crossings, counts, zone-events, zone-stats, alerts, workers (the topic's name
    without its prefix, or with it: its.tracks; workers: each worker's reports, keyed by host:pid).
    Each line starts with the record's Kafka time, local: for tracks, crossings, counts, zone
    events and stats and alerts the frame's scene time (a video file's own clock, which can be
    ahead of or behind the wall clock), for the others when the record was sent. A record that is not what its topic should hold is shown as it is. A broker that stops
    answering for 10 s ends the tail with an error; a topic not created yet is waited for
    (following) or an error (--no-follow). Examples:

    \b
      its-faust tail dead-letters --last 20 --no-follow   why recent input was rejected
      its-faust tail camera-events --camera cam-1          what a camera reports
      its-faust tail workers --last 4 --no-follow          which worker holds which partitions
      its-faust tail tracks --json | jq .value.objects     for other tools
    """
    from its_faust.topic_tail import BrokerGone, human_line, json_line
    from its_faust.topic_tail import tail as run_tail

    if last is not None and from_beginning:
        fail("give --from-beginning or --last, not both")
    if not follow and last is None and not from_beginning:
        fail("--no-follow shows what the topic holds already: give --from-beginning or --last N with it")
    name = topic.lower()
    bootstrap = running_broker(broker_url, "tail needs the broker that holds the topic")
    settings = settings_or_fail()
    line = json_line if as_json else (lambda message: human_line(name, message))

    def emit(message) -> None:
        click.echo(line(message))

    _note_keys_no_camera_has(name, cameras)
    keys = [c.encode() for c in cameras] or None
    stop_on_terminate()  # started with & from a script, it still stops on that script's Ctrl-C
    # The Kafka client logs each failed retry of a lost broker (dozens of lines a second); the tail
    # itself notices a broker gone and says so in one line (topic_tail.BrokerWatch).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        shown = asyncio.run(_tail_once_it_exists(
            lambda: run_tail(bootstrap, settings.topic(name), emit, keys=keys, from_beginning=from_beginning,
                             last=last, follow=follow, limit=limit), follow))
    except KeyboardInterrupt:
        return
    except BrokenPipeError:  # the reader went away (| head): nothing more to say, and nowhere to say it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's last flush of stdout would fail too
        return
    except ValueError as exc:  # the topic does not exist yet (and not following: nothing to wait for)
        fail(exc)
    except BrokerGone as exc:
        fail(exc)
    if not follow and not as_json:
        click.echo(f"({shown} record{'' if shown == 1 else 's'})", err=True)
    if not follow and not shown and cameras and name != WORKERS:
        _note_configured_cameras(bootstrap, settings, cameras)


def _note_configured_cameras(bootstrap: str, settings, cameras: tuple[str, ...]) -> None:
    """Nothing shown for the cameras asked for: which are configured, and one close to each asked for that is not
    (a mistyped id showed "(0 records)" and nothing else, a trial)."""
    import difflib

    from its_faust.cameras import read_configs

    try:
        configs = asyncio.run(read_configs(bootstrap, settings))
    except Exception:  # (a note: the tail itself is done)
        return
    configured = sorted(c.camera_id for c in configs.values() if not c.removed)
    for camera in cameras:
        if camera in configured:
            continue
        close = difflib.get_close_matches(camera, configured, n=1) or [c for c in configured if c.lower() == camera.lower()]
        hint = f"; did you mean {close[0]!r}? (ids are case-sensitive)" if close else ""
        listed = ", ".join(configured[:20]) + (f" and {len(configured) - 20} more" if len(configured) > 20 else "")
        click.echo(f"its-faust: note: no camera {camera!r} is configured{hint}; the configured cameras: "
                   f"{listed or 'none'}", err=True)


def _note_keys_no_camera_has(topic: str, cameras: tuple[str, ...]) -> None:
    """A key that is no camera id matches only what a producer keyed wrongly (the dead letters of such, or
    the records before they were refused); said, not refused, since that may be what is sought. Without
    the note, a typo waited for ever with nothing shown."""
    from schemas.base import CAMERA_ID_PATTERN

    if topic == WORKERS:  # keyed by worker, host:pid
        return
    for camera in cameras:
        if not re.fullmatch(CAMERA_ID_PATTERN, camera):
            click.echo(f"its-faust: note: {camera!r} is not a camera id (1-64 letters, digits, '_', '.' or '-'): "
                       "only records a producer keyed so wrongly match it", err=True)


async def _tail_once_it_exists(tail, follow: bool) -> int:
    """Following a topic not created yet (tail started before the worker that creates it) waits for it,
    as it would wait for records, instead of ending in an error; said once."""
    from its_faust.topic_reader import TopicMissing

    told = False
    while True:
        try:
            return await tail()
        except TopicMissing as exc:
            if not follow:
                raise
            if not told:
                click.echo(f"its-faust: {exc}: waiting for it (Ctrl-C stops)", err=True)
                told = True
            await asyncio.sleep(2.0)
