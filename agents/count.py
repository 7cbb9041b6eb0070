"""Stage 4: crossings and zone events -> windowed statistics (``its.counts``, ``its.zone-stats``).

Counts per line, direction and class, and entries, exits, dwell and speeds per
zone, in 1-minute and 15-minute tumbling windows plus running totals
(:mod:`tables.count_tables`); each update is published with the window it fell in.
"""

from __future__ import annotations

from its_faust import topics
from its_faust.app import app
from its_faust.codecs import encode
from its_faust.dead_letters import valid_records
from its_faust.delivery import Acknowledger
from schemas.analytics import Crossing, ZoneEvent
from tables import count_tables
from tables.storage import GivenUp, written


@app.agent(topics.crossings, name="count")
async def count(stream):
    async with Acknowledger(stream, "count") as acks:
        async for event, crossing in valid_records(stream, Crossing, acks):
            update = None
            # The counting, not the sending: a failed send is no fault of the record's (it is counted by then);
            # nor is a disk that is full (waited for: tables.storage).
            async with acks.dead_lettered_if_it_fails(event):
                try:
                    update = await written(lambda: count_tables.count_crossing(crossing), "count", give_up=_moved(event))
                except GivenUp:
                    pass  # its partition moved while the disk was full: its next owner counts it
            if update is not None:
                await acks.send(event, topics.counts, encode(update), timestamp=crossing.at)


@app.agent(topics.zone_events, name="zone-stats")
async def zone_stats(stream):
    async with Acknowledger(stream, "zone-stats") as acks:
        async for event, zone_event in valid_records(stream, ZoneEvent, acks):
            stats = None
            async with acks.dead_lettered_if_it_fails(event):
                try:
                    stats = await written(lambda: count_tables.zone_stats(zone_event), "zone-stats", give_up=_moved(event))
                except GivenUp:
                    pass
            if stats is not None:
                await acks.send(event, topics.zone_stats, encode(stats), timestamp=zone_event.at)


def _moved(event):
    """Whether the event's partition may have moved since it was read (a new consumer generation)."""
    return lambda: event.message.generation_id != app.consumer_generation_id
