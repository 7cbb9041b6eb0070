"""Stage 4: crossings -> counts per line, direction and class, in windowed tables (``its.counts``)."""

from __future__ import annotations

from its_faust import topics
from its_faust.app import app
from its_faust.codecs import encode
from its_faust.dead_letters import valid_records
from schemas.analytics import Crossing
from tables.count_tables import count


@app.agent(topics.crossings, name="count")
async def count_crossings(stream):
    async for event, crossing in valid_records(stream, Crossing, "count"):
        update = count(crossing)
        await topics.counts.send(key=event.key, value=encode(update), timestamp=crossing.captured_at)
