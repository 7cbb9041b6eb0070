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


@app.agent(topics.crossings, name="count")
async def count(stream):
    async with Acknowledger(stream, "count") as acks:
        async for event, crossing in valid_records(stream, Crossing, acks):
            update = None
            async with acks.dead_lettered_if_it_fails(event):  # the counting, not the sending: a failed send is
                update = count_tables.count_crossing(crossing)   # no fault of the record's (it is counted by then)
            if update is not None:
                await acks.send(event, topics.counts, encode(update), timestamp=crossing.at)


@app.agent(topics.zone_events, name="zone-stats")
async def zone_stats(stream):
    async with Acknowledger(stream, "zone-stats") as acks:
        async for event, zone_event in valid_records(stream, ZoneEvent, acks):
            stats = None
            async with acks.dead_lettered_if_it_fails(event):
                stats = count_tables.zone_stats(zone_event)
            if stats is not None:
                await acks.send(event, topics.zone_stats, encode(stats), timestamp=zone_event.at)
