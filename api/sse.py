"""Server-sent events from a topic ring: resumable by Kafka position, with heartbeats and a drop notice.

An event's ``id`` is the reader's position after it: the next offset of every
partition, ``"p:o,p:o,..."``. A browser that reconnects sends it back as
``Last-Event-ID`` and continues from exactly there (no gap, no duplicate), on
this API process or any other, as long as the ring still holds those offsets.
Older positions get one ``dropped`` event saying how many events are gone, then
the feed goes on; so does a position the topic's log no longer reaches (the broker
lost it: an in-memory broker restarted), from the log's new start. A client that reads slowly only holds its own cursor: the
ring is shared and bounded, and the others are unaffected. A feed of one camera reads past the
other cameras' records: its heartbeats carry the position then (an SSE event without data sets
the browser's last id all the same), or a quiet camera's client would resume from far back, and
be told of the other cameras' records it never wanted as ``dropped``.

Several feeds in one stream (:func:`merged`): a browser opens at most six connections to
one host, and a page holding one per feed had none left for anything else. Its ``id`` is
every feed's position, ``"name=p:o,...;name=p:o,..."``, and resumes each of them.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import AsyncIterator, Callable, Collection, Mapping

import anyio
from aiokafka.errors import KafkaError

from api.topic_ring import Message, TopicRing


class BadCursor(ValueError):
    """A position to resume after (Last-Event-ID, or the last_event_id parameter) that is not one of ours; its
    message follows the name of what gave it."""


def format_cursor(cursor: dict[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(cursor.items()))


def quoted_in_brief(text: str, chars: int = 100) -> str:
    """Client input quoted in an error: its start, if long (a header of kilobytes was echoed whole)."""
    return repr(text) if len(text) <= chars else f"{text[:chars]!r}... ({len(text)} characters)"


def parse_cursor(text: str | None) -> dict[int, int] | None:
    if not text:
        return None
    try:
        pairs = [part.split(":") for part in text.split(",")]
        cursor = {int(p): int(o) for p, o in pairs}
    except ValueError:
        raise BadCursor(f"{quoted_in_brief(text)} is not a position this API gave (partition:offset,...)") from None
    if any(p < 0 or o < 0 for p, o in cursor.items()):
        raise BadCursor(f"{quoted_in_brief(text)} has a negative partition or offset")
    return cursor


async def events(
    ring: TopicRing,
    cursor: dict[int, int] | None,
    match: Callable[[Message], bool],
    event_name: str,
    heartbeat_s: float,
    on_sent: Callable[[int], None] = lambda n: None,
    on_dropped: Callable[[int], None] = lambda n: None,
    past_the_log: Collection[int] = (),
) -> AsyncIterator[dict]:
    """SSE event dicts for sse-starlette: the matching messages from ``cursor`` (default: from now) on.

    ``past_the_log``: partitions where ``cursor`` is beyond the end of the log (see :func:`past_the_log`)."""
    position = dict(ring.next) if cursor is None else {p: cursor.get(p, ring.held_from(p)) for p in ring.partitions}
    resets = dict(ring.resets)
    given = format_cursor(position)  # the id the client has last been given
    yield {"event": "hello", "id": given, "data": json.dumps({"topic": ring.topic})}
    for p in past_the_log:
        position[p] = ring.held_from(p)
        yield _log_lost(ring, p, position, given=True)
    last_yield = time.monotonic()
    while True:
        sent = read = 0
        for p in ring.partitions:
            if ring.resets[p] != resets[p]:
                resets[p] = ring.resets[p]
                position[p] = ring.held_from(p)
                yield _log_lost(ring, p, position)
            held_from = ring.held_from(p)
            if position[p] < held_from:
                missed = held_from - position[p]
                position[p] = held_from
                on_dropped(missed)
                yield {"event": "dropped", "id": format_cursor(position),
                       "data": json.dumps({"partition": p, "events": missed,
                                           "reason": "older than what this API process holds; resume from here"})}
            for m in ring.read(p, position[p]):
                read += 1
                position[p] = m.offset + 1
                if match(m):
                    sent += 1
                    given = format_cursor(position)
                    yield {"event": event_name, "id": given, "data": m.value.decode()}
        if sent:
            on_sent(sent)
            last_yield = time.monotonic()
        elif time.monotonic() - last_yield >= heartbeat_s:
            heartbeat = {"comment": "heartbeat"}  # keeps idle connections (and proxies) alive
            if format_cursor(position) != given:  # read past records this feed does not send
                given = heartbeat["id"] = format_cursor(position)
            yield heartbeat
            last_yield = time.monotonic()
        if not read:
            await ring.wait_new(max(0.05, heartbeat_s - (time.monotonic() - last_yield)))


def _log_lost(ring: TopicRing, partition: int, position: dict[int, int], given: bool = False) -> dict:
    """``given``: the position the client gave is past the log's end (else: the log was seen to start over)."""
    reason = ("the position given is past the end of the broker's log: the broker lost the log (an in-memory broker "
              "restarted, or the topic was recreated), or no API gave this position; resume from the log's start"
              if given else "the broker lost the log of this position (an in-memory broker restarted, or the topic "
              "was recreated); resume from the log's new start")
    return {"event": "dropped", "id": format_cursor(position),
            "data": json.dumps({"partition": partition, "events": None, "reason": reason})}


def check_partitions(ring: TopicRing, cursor: dict[int, int]) -> None:
    unknown = sorted(set(cursor) - set(ring.partitions))
    if unknown:
        raise BadCursor(f"names partition(s) {unknown} that {ring.topic} does not have "
                        f"(it has {len(ring.partitions)})")


async def past_the_log(ring: TopicRing, cursor: dict[int, int]) -> set[int]:
    """Partitions where ``cursor`` is beyond the log's end. A position only ahead of this API process (another
    one gave it, and reads faster) is fine: it is asked of the broker only then."""
    asked_at = time.monotonic()
    ahead = [p for p, o in cursor.items() if o > ring.next.get(p, 0)]
    if not ahead:
        return set()
    try:
        ends = await ring.log_ends()
        if any(p in ends and cursor[p] > ends[p] for p in ahead):  # past an end read earlier: the log may have grown
            ends = await ring.log_ends(read_since=asked_at)
    except KafkaError:  # the broker is away: the feed waits for it, as any feed does
        return set()
    return {p for p in ahead if p in ends and cursor[p] > ends[p]}  # (an end not confirmed: not judged)


def format_positions(positions: Mapping[str, str]) -> str:
    """Several feeds' positions as one event id: ``name=p:o,...;name=p:o,...``."""
    return ";".join(f"{name}={cursor}" for name, cursor in positions.items())


def parse_positions(text: str | None, names: Collection[str]) -> dict[str, dict[int, int] | None]:
    """The feeds' cursors in an id :func:`format_positions` gave; a feed it does not name (or names with no
    position) starts from now."""
    if not text:
        return {}
    cursors: dict[str, dict[int, int] | None] = {}
    for part in text.split(";"):
        name, sep, cursor = part.partition("=")
        if not sep or name not in names:
            raise BadCursor(f"part {quoted_in_brief(part)} names no feed of this stream (its feeds: {', '.join(names)})")
        cursors[name] = parse_cursor(cursor)
    return cursors


async def merged(streams: Mapping[str, AsyncIterator[dict]], queue_size: int = 64) -> AsyncIterator[dict]:
    """The events of several :func:`events` streams as they come, each id the position of all of them.

    Each stream is read by a task of its own into a bounded queue: a slow client holds them all back,
    as it would hold back one feed. A stream that fails ends this one with its error."""
    queue: asyncio.Queue = asyncio.Queue(queue_size)

    def labelled(name: str, event: dict) -> dict:
        if event.get("event") in ("hello", "dropped"):  # say which feed it is about
            return {**event, "data": json.dumps({"feed": name, **json.loads(event["data"])})}
        return event

    async def pump(name: str, stream: AsyncIterator[dict]) -> None:
        try:
            async for event in stream:
                await queue.put((name, event, None))
        except Exception as exc:  # handed on: raised where the client reads
            await queue.put((name, None, exc))

    tasks: list[asyncio.Task] = []
    try:
        # Every stream's hello (its first event) first: from then on each id holds every feed's position.
        hellos = {name: await anext(stream) for name, stream in streams.items()}
        positions = {name: hello["id"] for name, hello in hellos.items()}
        for name, hello in hellos.items():
            yield {**labelled(name, hello), "id": format_positions(positions)}
        tasks = [asyncio.create_task(pump(name, stream)) for name, stream in streams.items()]
        while True:
            name, event, error = await queue.get()
            if error is not None:
                raise error
            if "id" not in event:
                yield event  # a heartbeat (one with an id moves its feed's position, as an event does)
                continue
            positions[name] = event["id"]
            yield {**labelled(name, event), "id": format_positions(positions)}
    finally:
        # Shielded: a client that left cancels this generator's scope, and every await here would be
        # cancelled again, leaving feeds open (and counted as clients) until garbage collection.
        with anyio.CancelScope(shield=True):
            await _cancelled(tasks)
            for stream in streams.values():  # each stops where it is (a pump held it at a yield)
                await stream.aclose()


async def _cancelled(tasks: list[asyncio.Task]) -> None:
    """Cancel the tasks and wait until they have ended, cancelling again those that go on: an await that swallows
    one cancellation (Python 3.11's ``wait_for``, say) would otherwise keep its feed read for ever, and every feed
    of its stream open, since they are closed only after."""
    pending = [task for task in tasks if not task.done()]
    while pending:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.5)
        pending = [task for task in pending if not task.done()]
