"""Server-sent events from a topic ring: resumable by Kafka position, with heartbeats and a drop notice.

An event's ``id`` is the reader's position after it: the next offset of every
partition, ``"p:o,p:o,..."``. A browser that reconnects sends it back as
``Last-Event-ID`` and continues from exactly there (no gap, no duplicate), on
this API process or any other, as long as the ring still holds those offsets.
Older positions get one ``dropped`` event saying how many events are gone, then
the feed goes on. A client that reads slowly only holds its own cursor: the
ring is shared and bounded, and the others are unaffected.
"""

from __future__ import annotations

import json
import time
from typing import AsyncIterator, Callable

from api.hub import Message, TopicRing


class BadCursor(ValueError):
    """A Last-Event-ID that is not one of ours."""


def format_cursor(cursor: dict[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(cursor.items()))


def parse_cursor(text: str | None) -> dict[int, int] | None:
    if not text:
        return None
    try:
        pairs = [part.split(":") for part in text.split(",")]
        cursor = {int(p): int(o) for p, o in pairs}
    except ValueError:
        raise BadCursor(f"Last-Event-ID {text!r} is not a position this API gave (partition:offset,...)") from None
    if any(p < 0 or o < 0 for p, o in cursor.items()):
        raise BadCursor(f"Last-Event-ID {text!r} has a negative partition or offset")
    return cursor


async def events(
    ring: TopicRing,
    cursor: dict[int, int] | None,
    match: Callable[[Message], bool],
    event_name: str,
    heartbeat_s: float,
    on_sent: Callable[[int], None] = lambda n: None,
    on_dropped: Callable[[int], None] = lambda n: None,
) -> AsyncIterator[dict]:
    """SSE event dicts for sse-starlette: the matching messages from ``cursor`` (default: from now) on."""
    position = dict(ring.next) if cursor is None else {p: cursor.get(p, ring.held_from(p)) for p in ring.partitions}
    yield {"event": "hello", "id": format_cursor(position), "data": json.dumps({"topic": ring.topic})}
    last_yield = time.monotonic()
    while True:
        sent = read = 0
        for p in ring.partitions:
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
                    yield {"event": event_name, "id": format_cursor(position), "data": m.value.decode()}
        if sent:
            on_sent(sent)
            last_yield = time.monotonic()
        elif time.monotonic() - last_yield >= heartbeat_s:
            yield {"comment": "heartbeat"}  # keeps idle connections (and proxies) alive
            last_yield = time.monotonic()
        if not read:
            await ring.wait_new(max(0.05, heartbeat_s - (time.monotonic() - last_yield)))
