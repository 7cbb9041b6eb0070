"""Faust's Kafka transport: a fetch wait we choose, paused changelogs left unfetched, and offsets never committed early.

**Fetch wait.** Faust hard-codes ``fetch_max_wait_ms=1500`` for worker consumers. Real
Kafka answers a fetch as soon as data arrives, but the embedded Tansu broker answers a
fetch of several partitions only when the wait runs out (one partition: within half the wait), which
made every stage move in ~0.7 s bursts (10 fps instead of 45). The wait is a trade on
Tansu: a fetch costs the broker about 0.06 ms of CPU per partition in it, so at 10 ms a
worker's polling alone took a third of a core (broker and worker together, idle, when
fetches still carried the changelogs: see below), and at 100 ms a fifteenth; a frame's
latency grows by about half the wait (measured at 20 fps: p50 140 ms at 10, 193 ms at 100).
The default (``Settings.fetch_max_wait_ms``) is 100; the profiles that need Apache Kafka
use 500, where a long wait costs nothing.

**Changelog fetching.** Faust pauses recovered changelog partitions only in its own
bookkeeping, so aiokafka kept fetching them with every request (36 of a worker's 60
partitions). Changelog partitions are paused and resumed in aiokafka whenever Faust pauses
and resumes them; stream partitions are left as Faust has them.

**Commits.** Around a rebalance Faust 0.15 can commit past a message no agent processed
(seen here as frames that were never detected while the frames after them were, the
"mid-stream join" loss; faust-streaming #629 and kin), through three paths:

* messages are dropped inside the consumer (queues cleared on revocation, a stale fetch
  batch delivered after a re-seek, fetched messages below the "read offset" discarded)
  while the ones after them are delivered;
* a jump in offsets is taken for a hole in the log and the missing offsets are counted
  as done (``Consumer._add_gap``), while here it means a message was dropped;
* revocation forgets the committed offset, and without it the first run of acknowledged
  offsets is committed even when the message before it was never acknowledged (and with
  it, one unacknowledged message at the head is still tolerated: ``min(acked) -
  committed > 1``).

For the topics agents read through an intake (:mod:`its_faust.intake`), which puts each
partition's messages back in order, this consumer counts only the acknowledgements of
messages the intake admitted in the current generation (agents acknowledge by hand:
Faust's compiled stream iterator acknowledges without calling ``Consumer.ack``), keeps
no read offsets, never fills gaps, and commits only a run that starts exactly at the
committed offset. A message Faust dropped therefore holds its partition's commits where
they are until the intake has re-read and the agent processed it.

**Changelog ends.** Faust's recovery takes a changelog partition's end from ListOffsets,
which the embedded Tansu broker answers with its last record batch's first offset + 1;
Faust's table writes send many records per batch. A worker whose copy (active or standby)
had applied that batch's later records then looked ahead of the log, and Faust stopped it
with a ConsistencyError: one join in three crashed a worker already running. The ends of
changelog partitions are read from the log itself (:func:`its_faust.topic_reader.log_ends`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import weakref

from aiokafka import TopicPartition
from faust.transport.consumer import ensure_TPset
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from its_faust import unreadable_batches
from its_faust.settings import get_settings

log = logging.getLogger(__name__)
unreadable_batches.install()  # a batch no client can read is skipped and dead-lettered, not the worker's end

WAIT_EMPTY_GIVE_UP_S = 15.0  # see _Consumer.wait_empty


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # Read by its Fetcher at start(); the settings the app was made with (the module's, where it has none).
        consumer._fetch_max_wait_ms = (getattr(transport.app, "its_settings", None) or get_settings()).fetch_max_wait_ms
        return consumer

    async def on_thread_stop(self) -> None:
        """Stop the consumer, even when the broker went first.

        aiokafka's ``Fetcher.close()`` awaits the fetch tasks it has just cancelled, and one that
        was waiting out its retry back-off (the broker gone) re-raises the CancelledError. That
        ended this thread before it told the worker it had stopped, and the worker waited for it
        for ever, deaf to further signals: seen when a broker was stopped before its workers.
        """
        try:
            await super().on_thread_stop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this stop itself was cancelled: not ours to swallow
            log.warning("consumer: stopped while a fetch waited to retry (broker unreachable); closing its connections")
            consumer = self._consumer
            if consumer is not None:
                try:
                    await consumer._client.close()
                except Exception as exc:  # its connections are gone with the broker
                    log.debug("consumer: closing its client failed: %r", exc)

    def close(self) -> None:
        """Close the client on this thread's loop, which owns its connections.

        Faust (on a rebalance that arrives while the worker stops) schedules the closing on
        the app's loop instead: another thread's loop touching this loop's sockets, which
        uvloop (libuv is not thread-safe) does not forgive the way asyncio's loop mostly did.
        """
        consumer = self._consumer
        if consumer is None:
            return
        consumer._closed = True
        for closing in (consumer._client.close(), consumer._coordinator.close()):
            try:
                asyncio.run_coroutine_threadsafe(closing, self.thread_loop)
            except RuntimeError:  # the thread's loop is closed already: so are its connections
                closing.close()

    def verify_event_path(self, now: float, tp) -> None:
        """Faust's slow-processing report, less the changelog partitions paused here on purpose.

        Faust reports every assigned partition aiokafka has not fetched for
        ``stream_processing_timeout`` (5 min); recovered changelogs are never fetched again
        (see "Changelog fetching" above), so without this every worker logged each of them,
        36 false errors every few seconds, from five minutes after its start.
        """
        # Faust's own set of paused partitions (this runs on the app's loop, which keeps it); a
        # changelog in it is paused in aiokafka too (see pause_partitions below).
        if self.consumer._is_changelog_tp(tp) and tp in self.consumer._paused_partitions:
            return None
        return super().verify_event_path(now, tp)

    def set_fetching(self, tps, fetching: bool) -> None:
        """Pause or resume ``tps`` in aiokafka itself. Runs on this thread's loop (resuming settles a future of it)."""
        consumer = self._consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        tps = [TopicPartition(tp.topic, tp.partition) for tp in tps if (tp.topic, tp.partition) in assigned]
        if tps:
            (consumer.resume if fetching else consumer.pause)(*tps)


class _ReadOffsets(dict):
    """Faust's per-partition read offsets, kept for every topic but the guarded ones.

    Faust drops a fetched message below its read offset and takes a jump above it for a
    hole in the log; for guarded topics the intake does the first (copies) and must see
    the messages a jump would skip, so there Faust sees no read offset at all.
    """

    def __init__(self, guarded: set[str]):
        super().__init__()
        self.guarded = guarded

    def __missing__(self, tp):
        return None

    def __setitem__(self, tp, offset) -> None:
        if tp.topic not in self.guarded:
            super().__setitem__(tp, offset)

    def update(self, *args, **kwargs) -> None:
        for tp, offset in dict(*args, **kwargs).items():
            self[tp] = offset


class _Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.guarded_topics: set[str] = set()  # topics read through an intake
        self.admitted: weakref.WeakSet = weakref.WeakSet()  # their messages an intake let through
        self.generation_start: dict = {}  # tp -> where this generation reads from (guarded topics)
        self._committed_before_revoke: dict = {}
        self._read_offset = _ReadOffsets(self.guarded_topics)
        self.last_ack_at = time.monotonic()

    def _new_consumer_thread(self):
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # -- what is fetched --------------------------------------------------------------------

    def pause_partitions(self, tps) -> None:
        tps = ensure_TPset(tps)
        super().pause_partitions(tps)
        self._set_changelog_fetching(tps, fetching=False)

    def resume_partitions(self, tps) -> None:
        tps = ensure_TPset(tps)
        super().resume_partitions(tps)
        self._set_changelog_fetching(tps, fetching=True)

    def _set_changelog_fetching(self, tps, fetching: bool) -> None:
        # See "Changelog fetching" above. Stream partitions stay as Faust has them: the intakes'
        # ordering relies on that.
        changelogs = [tp for tp in tps if self._is_changelog_tp(tp)]
        if changelogs:
            try:  # (before the thread runs its loop, the call waits in it)
                self._thread.thread_loop.call_soon_threadsafe(self._thread.set_fetching, changelogs, fetching)
            except RuntimeError:  # the consumer thread's loop has just closed: nothing left to fetch
                pass

    # -- where changelogs end ---------------------------------------------------------------

    async def highwaters(self, *partitions):
        """The broker's ends, but a changelog's read from the log (see "Changelog ends" above)."""
        ends = dict(await super().highwaters(*partitions))
        changelogs = [tp for tp, end in ends.items() if end and self._is_changelog_tp(tp)]
        if not changelogs:
            return ends
        from aiokafka.errors import KafkaError

        from its_faust.topic_reader import read_log_ends

        bootstrap = ",".join(f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker)
        try:
            from_log = await read_log_ends(bootstrap, [TopicPartition(tp.topic, tp.partition) for tp in changelogs])
        except (KafkaError, OSError) as exc:  # recovery goes on with the broker's figures, as Faust's own would
            log.warning("changelog ends: could not read them from the log (%r); using the broker's", exc)
            return ends
        for tp in changelogs:
            end = from_log.get(TopicPartition(tp.topic, tp.partition), 0)
            if end > ends[tp]:
                log.debug("changelog %s[%d] ends at %d, not %d as the broker says", tp.topic, tp.partition, end, ends[tp])
                ends[tp] = end
        return ends

    # -- what counts as done ----------------------------------------------------------------

    def ack(self, message) -> bool:
        self.last_ack_at = time.monotonic()
        if message.topic in self.guarded_topics and (
            message not in self.admitted or message.generation_id != self.app.consumer_generation_id
        ):
            return False  # not processed by an agent in this generation: it must come again
        return super().ack(message)

    async def wait_empty(self) -> None:
        """Faust's wait for the messages agents took to be acknowledged (before a rebalance's commit, and on
        stopping), given up once none has been for ``WAIT_EMPTY_GIVE_UP_S``.

        A failed agent's messages are never acknowledged: the exception Faust keeps as the crash's reason holds
        them, through its traceback. A worker told to stop then waited for ever, logging "wait_empty: Waiting
        for tasks" every 10 s (a disk-full trial: killed after minutes), and a rebalance would have too. What is
        not acknowledged is not committed: whoever has the partition next reads it again. While a stage waits
        for the disk (:mod:`tables.storage`) it is not waited for at all: a rebalance held 15 s by a worker whose
        disk is full would have that worker dropped from the group (past its rebalance timeout), and rejoining,
        start the next rebalance, over and over."""
        from tables import storage  # (tables imports the app's modules: here, not at the top)

        self.last_ack_at = time.monotonic()
        while not self.should_stop and self._unacked_messages:
            gc.collect()  # (as Faust's: a message held only by a reference cycle leaves the weak set)
            await self.commit()
            self._clean_unacked_messages()
            if not self._unacked_messages:
                break
            if storage.waiting:  # a stage waits for the disk: what it holds will not be acknowledged soon
                log.warning("%d message(s) taken by agents are not acknowledged while %s wait(s) for this worker's "
                            "storage: not waited for; they are read again by the partition's next owner",
                            len(self._unacked_messages), ", ".join(sorted(storage.waiting)))
                break
            if time.monotonic() - self.last_ack_at > WAIT_EMPTY_GIVE_UP_S:
                log.warning("%d message(s) taken by agents are not acknowledged, none for %.0f s (held by an agent that "
                            "failed?): not waited for; they are read again by the partition's next owner",
                            len(self._unacked_messages), WAIT_EMPTY_GIVE_UP_S)
                break
            await self._wait_for_ack(timeout=1)
        await self.commit_and_end_transactions()

    def release(self, message) -> None:
        """Forget a message an intake refused: nothing waits for it, and it does not count as done."""
        with ack_lock:
            message.acked = True  # a late ack of this copy must not count either
        self._unacked_messages.discard(message)
        notify(self._waiting_for_ack)

    def count_missing_as_done(self, tp, first: int, end: int) -> None:
        """Offsets ``first`` to ``end - 1`` hold no message (transaction markers, retention)."""
        index = self._acked_index[tp]
        missing = [o for o in range(first, end) if o not in index]
        index.update(missing)
        self._acked[tp].extend(missing)

    async def _add_gap(self, tp, offset_from: int, offset_to: int) -> None:
        if tp.topic not in self.guarded_topics:  # (with no read offsets, guarded ones never get here)
            await super()._add_gap(tp, offset_from, offset_to)

    def _new_offset(self, tp) -> int | None:
        if tp.topic not in self.guarded_topics:
            return super()._new_offset(tp)
        acked = self._acked[tp]
        if not acked:
            return None
        acked.sort()
        start = self.next_to_commit(tp)
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

    def next_to_commit(self, tp) -> int | None:
        """The offset a commit of ``tp`` must start from: where this generation reads from, then on."""
        for known in (self._committed_offset.get(tp), self._committed_before_revoke.get(tp), self.generation_start.get(tp)):
            if known is not None:
                return known
        return None

    # -- rebalances -------------------------------------------------------------------------

    async def perform_seek(self) -> None:
        await super().perform_seek()
        # Faust keeps no committed offset for a partition never committed (nor for offset 0):
        # then this generation reads from the log's start.
        unknown = [tp for tp in self.assignment() if tp.topic in self.guarded_topics
                   and self._committed_offset.get(tp) is None and tp not in self.generation_start]
        if unknown:
            for tp, offset in (await self.earliest_offsets(*unknown)).items():
                self.generation_start.setdefault(tp, offset)

    async def on_partitions_revoked(self, revoked) -> None:
        # Faust forgets these before it commits what its streams finish during the revocation.
        self._committed_before_revoke = {tp: self.next_to_commit(tp) for tp in revoked}
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
