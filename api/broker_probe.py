"""Does the broker answer? Asked every few seconds, so that the API knows when it stopped and can say so at once.

The topic readers cannot tell: a Kafka consumer whose broker is gone keeps returning empty fetches, which look like
a quiet system. A probe is a Kafka request of its own (ApiVersions, as ``its_faust.broker.wait_reachable`` sends),
to each bootstrap address in turn until one answers: one broker of a cluster down is not the broker down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from its_faust import broker

log = logging.getLogger(__name__)


class BrokerProbe:
    def __init__(self, bootstrap: str, every_s: float = 2.0, timeout_s: float = 2.0):
        self.addresses = broker.bootstrap_servers(bootstrap).split(",")
        self.every_s, self.timeout_s = every_s, timeout_s
        self.answered_at: float | None = time.time()  # Unix seconds of the last answer (started: as of now)
        self.trouble: str | None = None  # why the last probe got no answer; None: it answered
        self.came_back = 0  # how many times it answered again after not answering
        # The last outages, (from its last answer, to its next one or None while it lasts), Unix seconds.
        self.outages: deque[list] = deque(maxlen=50)
        self._task: asyncio.Task | None = None

    @property
    def up(self) -> bool:
        return self.trouble is None

    async def probe(self) -> None:
        problems = []
        for address in self.addresses:
            try:
                await asyncio.to_thread(broker.wait_reachable, f"kafka://{address}", self.timeout_s)
            except broker.BrokerError as exc:
                problems.append(str(exc))
                continue
            now = time.time()
            if self.trouble is not None:
                log.warning("api: the broker answers again (%s)", address)
                self.outages[-1][1] = now
                self.came_back += 1
            self.answered_at, self.trouble = now, None
            return
        if self.trouble is None:
            log.warning("api: the broker does not answer: %s", "; ".join(problems))
            self.outages.append([self.answered_at, None])
        self.trouble = "; ".join(problems)

    def away_between(self, since: float, now: float) -> float:
        """Seconds between ``since`` and ``now`` (Unix) in which the broker did not answer."""
        return sum(max(0.0, min(end or now, now) - max(start, since)) for start, end in self.outages)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="broker-probe")

    async def _run(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(self.every_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
