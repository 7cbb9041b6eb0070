"""Stage 4: crossings and zone events -> windowed statistics (``its.counts``, ``its.zone-stats``).

Counts per line, direction and class, and entries, exits, dwell and speeds per
zone, in 1-minute and 15-minute tumbling windows plus running totals
(:mod:`tables.count_tables`); each update is published with the window it fell in.
"""

from __future__ import annotations

from its_faust import topics
from its_faust.app import app
from its_faust.codecs import encode
from its_faust.dead_letters import dead_lettered_if_it_fails, valid_records
from schemas.analytics import Crossing, ZoneEvent
from tables import count_tables


@app.agent(topics.crossings, name="count")
async def count(stream):
    async for event, crossing in valid_records(stream, Crossing, "count"):
        update = None
        async with dead_lettered_if_it_fails("count", event):  # the counting, not the sending: a failed send is
            update = count_tables.count_crossing(crossing)      # no fault of the record's (it is counted by then)
        if update is not None:
            await topics.counts.send(key=event.key, value=encode(update), timestamp=crossing.at)


@app.agent(topics.zone_events, name="zone-stats")
async def zone_stats(stream):
    async for event, zone_event in valid_records(stream, ZoneEvent, "zone-stats"):
        stats = None
        async with dead_lettered_if_it_fails("zone-stats", event):
            stats = count_tables.zone_stats(zone_event)
        if stats is not None:
            await topics.zone_stats.send(key=event.key, value=encode(stats), timestamp=zone_event.at)
