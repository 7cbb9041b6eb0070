"""Faust's Kafka transport, with a fetch wait we choose and offsets that are never committed early.

**Fetch wait.** Faust hard-codes ``fetch_max_wait_ms=1500`` for worker consumers. Real
Kafka answers a fetch as soon as data arrives, but the embedded Tansu broker answers a
fetch of several partitions only when the wait runs out (one partition: at once), which
made every stage move in ~0.7 s bursts (10 fps instead of 45). The wait is a trade on
Tansu: each fetch of a worker's ~25 partitions costs the broker ~3.5 ms of CPU, so at
10 ms a worker's polling alone took a third of a core (broker and worker together, idle),
and at 100 ms a fifteenth; a frame's latency grows by about half the wait (measured at
20 fps: p50 140 ms at 10, 193 ms at 100). The default (``Settings.fetch_max_wait_ms``)
is 100; the profiles that need Apache Kafka use 500, where a long wait costs nothing.

**Commits.** Around a rebalance Faust 0.15 can commit past a message no agent processed
(seen here as frames that were never detected while the frames after them were, the
"mid-stream join" loss; faust-streaming #629 and kin), through three paths:

* a message that reaches a stream while flow is suspended, or from an older generation,
  is skipped *and acknowledged* (``Stream._c_aiter``: ``do_ack or value is skipped``);
* a jump in offsets is taken for a hole in the log (compaction, transaction markers) and
  the missing offsets are counted as done (``Consumer._add_gap``), while here it means
  a message was dropped in the consumer around a re-seek;
* revocation forgets the committed offset, and without it the first run of acknowledged
  offsets is committed even when the message before it was never acknowledged (and with
  it, one unacknowledged message at the head is still tolerated: ``min(acked) -
  committed > 1``).

Our topics have no holes (no compaction, no transactions), so this consumer counts only
the acknowledgements of messages an agent admitted (:mod:`its_faust.intake`) in the
current generation, never fills gaps, and commits only a run that starts exactly at the
committed offset. A message Faust dropped therefore holds its partition's commits where
they are until the agent's intake has rewound and processed it.
"""

from __future__ import annotations

import logging
import weakref

from faust.transport.drivers import aiokafka as faust_aiokafka

from its_faust.settings import get_settings

log = logging.getLogger(__name__)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = get_settings().fetch_max_wait_ms  # read by its Fetcher at start()
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.admitted: weakref.WeakSet = weakref.WeakSet()  # messages an agent's intake let through
        self.guarded_topics: set[str] = set()  # topics read through an intake
        self._committed_before_revoke: dict = {}
        self.generation_start: dict = {}  # tp -> offset its intake started from in this generation

    def _new_consumer_thread(self):
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def ack(self, message) -> bool:
        if message.topic in self.guarded_topics and (
            message not in self.admitted or message.generation_id != self.app.consumer_generation_id
        ):
            return False  # skipped by Faust, not processed by us: it must come again
        return super().ack(message)

    async def _add_gap(self, tp, offset_from: int, offset_to: int) -> None:
        if tp.topic in self.guarded_topics:
            log.debug("%s[%s]: offsets %s-%s not seen in order; not counted as done", tp.topic, tp.partition, offset_from, offset_to)
            return
        await super()._add_gap(tp, offset_from, offset_to)

    def _new_offset(self, tp) -> int | None:
        if tp.topic not in self.guarded_topics:
            return super()._new_offset(tp)
        acked = self._acked[tp]
        if not acked:
            return None
        acked.sort()
        start = self._committed_offset.get(tp)
        if start is None:
            start = self._committed_before_revoke.get(tp, self.generation_start.get(tp))
        if start is not None:
            stale = [o for o in acked if o < start]
            if stale:
                del acked[: len(stale)]
                self._acked_index[tp].difference_update(stale)
            if not acked or acked[0] != start:
                return None  # the next message to commit has not been processed yet
        end = 0
        while end + 1 < len(acked) and acked[end + 1] == acked[end] + 1:
            end += 1
        done = acked[: end + 1]
        del acked[: end + 1]
        self._acked_index[tp].difference_update(done)
        return done[-1] + 1

    async def on_partitions_revoked(self, revoked) -> None:
        # Faust forgets these before it commits what its streams finish during the revocation.
        self._committed_before_revoke = {tp: self._committed_offset.get(tp) for tp in revoked}
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned, generation_id: int = 0) -> None:
        # The new generation reads from the committed offsets: acknowledgements that landed
        # after the revocation belong to the old one.
        for tp in assigned:
            self._acked.pop(tp, None)
            self._acked_index.pop(tp, None)
            self._gap.pop(tp, None)
            self.generation_start.pop(tp, None)
        self._committed_before_revoke = {}
        await super().on_partitions_assigned(assigned, generation_id)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
