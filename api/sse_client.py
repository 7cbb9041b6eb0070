"""A small SSE client (httpx), for tests, the fan-out benchmark and scripts."""

from __future__ import annotations

from typing import AsyncIterator

import httpx


async def sse_events(client: httpx.AsyncClient, url: str, last_event_id: str | None = None) -> AsyncIterator[dict]:
    """Yields ``{"event", "id", "data"}`` per event (comments are skipped)."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    async with client.stream("GET", url, headers=headers, timeout=httpx.Timeout(30.0, read=None)) as response:
        response.raise_for_status()
        event: dict = {}
        async for line in response.aiter_lines():
            if not line:
                if "data" in event or "event" in event:
                    yield event
                event = {}
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "data" and "data" in event:
                    event["data"] += "\n" + value
                else:
                    event[field] = value
