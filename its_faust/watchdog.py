"""Stalled-partition watchdog: a partition this worker owns that stops moving is reported and re-sought.

Faust has a known failure after some rebalances (faust-streaming issue #629 and
kin): a partition stays assigned but its stream receives nothing, so one camera
silently stops while the others carry on. Every ``interval_s`` this checks each
assigned partition of every agent's source topic (frames, detections, tracks, crossings,
zone events, camera commands): when it has messages the group has not committed and
its committed offset has not moved for ``stall_s``, it is logged, resumed and
sought back to its committed offset (redelivered frames are harmless: the camera
actors are idempotent by seq). The stalls seen before were messages Faust dropped
around a rebalance, which the agents' intake (:mod:`its_faust.intake`) now re-reads
at once; this is the last resort. The one earlier re-seek that did not restore the
flow used ``Consumer.seek``, which touches aiokafka from the wrong thread; the
re-seek now runs in the consumer's thread. A partition that stalls again after a
re-seek is logged as an error and makes the worker ``stuck``: its liveness file goes
(:mod:`its_faust.worker`), so Kubernetes' liveness probe restarts it (kill and
replacement is tested to lose nothing). A rebalance gives every partition a new chance.

Partitions also stop moving when the broker is down. That is said as such (once, and once it is back), and
such stalls are neither re-sought nor counted towards ``stuck``: restarting workers would not bring a broker
back, and a worker waits for it by itself. The same goes for a stage waiting for its storage (the disk full,
:mod:`tables.storage`).
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)


def agent_source_topics(app) -> set[str]:
    """The topics the app's agents read (found by autodiscovery after the app is built: asked each time)."""
    return {name for agent in app.agents.values() for name in getattr(agent.channel, "topics", ())}


class StallWatchdog:
    def __init__(self, app, topics: list[str] | None = None, stall_s: float = 15.0, broker_url: str | None = None):
        """Watch ``topics``; by default every topic one of the app's agents reads. With ``broker_url``, a stall is
        first checked against the broker: one that does not answer is the cause."""
        self.app = app
        self.topics = set(topics) if topics is not None else None
        self.stall_s = stall_s
        self.broker_url = broker_url
        self.broker_down: str | None = None  # why the broker did not answer at the last stall; None: it did
        self.storage_waiting = False  # a stage waited for this worker's storage at the last stall
        self._last: dict = {}  # tp -> (committed offset, since when unchanged)
        self._reseeks: dict = {}  # tp -> re-seeks since its committed offset last moved
        self.recoveries = 0

    async def broker_answers(self) -> bool:
        """Whether the broker answers a Kafka request; said once when it stops answering and once when it is back."""
        if self.broker_url is None:
            return True
        from its_faust import broker  # looked up when asked (tests stand in for the broker there)

        try:
            await asyncio.to_thread(broker.wait_reachable, self.broker_url, 2.0)
        except broker.BrokerError as exc:
            if self.broker_down is None:
                log.warning("partitions stopped moving: %s; the worker goes on once it is back", exc)
            self.broker_down = str(exc)
            return False
        if self.broker_down is not None:
            log.warning("the broker %s answers again", self.broker_url)
            self.broker_down = None
        return True

    def storage_waits(self) -> bool:
        """Whether a stage of this worker waits for its storage (the disk full); said once, and once it is over."""
        from tables import storage

        if storage.waiting and not self.storage_waiting:
            log.warning("partitions stopped moving: %s waiting for this worker's storage; they go on once it takes "
                        "writes again", ", ".join(sorted(storage.waiting)))
        self.storage_waiting = bool(storage.waiting)
        return self.storage_waiting

    @property
    def stuck(self) -> list:
        """Partitions a re-seek did not start again (each has stalled twice since it last moved)."""
        return sorted(tp for tp, n in self._reseeks.items() if n >= 2)

    async def check(self) -> None:
        now = time.monotonic()
        broker_answers = None  # asked once a check at most: each ask may take 2 s
        if self.broker_down is not None:
            # Asked again until it answers: the partitions moving once it is back ask nothing, and a broker left
            # "down" was never said to be back, nor its next outage said at all (a trial: a broker hung 20 s, then 90).
            broker_answers = await self.broker_answers()
            if broker_answers:
                # Back: each partition gets its stall_s from now (one still at the broker's return was re-sought).
                self._last = {tp: (committed, now) for tp, (committed, _) in self._last.items()}
        app, consumer = self.app, self.app.consumer
        if app.in_recovery or app.rebalancing or not consumer.flow_active:
            self._last.clear()
            self._reseeks.clear()
            return
        watched = self.topics if self.topics is not None else agent_source_topics(app)
        owned = {tp for tp in consumer.assignment() if tp.topic in watched}
        for tp in list(self._last):
            if tp not in owned:
                del self._last[tp]
                self._reseeks.pop(tp, None)
        for tp in owned:
            # Faust's own bookkeeping of what it committed (no public accessor).
            committed = consumer._committed_offset.get(tp)
            highwater = consumer.highwater(tp) or 0
            if committed is None:  # nothing committed yet: no safe offset to go back to
                continue
            previous, since = self._last.get(tp, (None, now))
            if committed != previous or highwater <= committed:
                if committed != previous:
                    self._reseeks.pop(tp, None)
                self._last[tp] = (committed, now)
                continue
            # Still, with work waiting: the broker is asked at once (a check's first such partition asks for all),
            # not once it has been still for stall_s, so that a broker hung 20 s is said to be within a check or
            # two, not taken at its return for a stalled partition and re-sought.
            if broker_answers is None:
                broker_answers = await self.broker_answers()
            if not broker_answers:
                self._last[tp] = (committed, now)  # not the partition's doing: it waits for the broker
                continue
            if now - since >= self.stall_s:
                if self.storage_waits():
                    self._last[tp] = (committed, now)  # nor this: a stage waits for the disk (tables.storage)
                    continue
                self.recoveries += 1
                self._reseeks[tp] = self._reseeks.get(tp, 0) + 1
                # A stall after a re-seek is an error worth paging on: the worker is stuck, and restarted
                # where an orchestrator watches its liveness (kill + replacement is tested to lose nothing).
                log.log(
                    logging.WARNING if self._reseeks[tp] == 1 else logging.ERROR,
                    "partition %s[%s] stalled for %.0fs at offset %s (%s behind): resuming and seeking back",
                    tp.topic, tp.partition, now - since, committed, highwater - committed,
                )
                consumer._buffered_partitions.discard(tp)
                consumer.resume_partitions([tp])
                try:
                    # seek_wait runs in the consumer's thread (Consumer.seek would touch aiokafka from this
                    # one); the thread may itself be what is stuck: never let the watchdog hang with it.
                    await asyncio.wait_for(consumer.seek_wait({tp: committed}), timeout=5.0)
                except asyncio.TimeoutError:
                    log.error("partition %s[%s]: seek did not complete within 5s", tp.topic, tp.partition)
                self._last[tp] = (committed, now)


def install(app, settings, broker_url: str) -> StallWatchdog:
    watchdog = StallWatchdog(app, stall_s=settings.stall_after_s, broker_url=broker_url)

    @app.timer(interval=max(1.0, settings.stall_after_s / 3), name="stall-watchdog")
    async def _check() -> None:
        await watchdog.check()

    return watchdog
