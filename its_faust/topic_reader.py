"""Reading a topic from outside a worker: a topic's records from a moment on, its log ends, a group's lag.

Used by everything that reads the pipeline beside the workers: ``run`` and the demo (their results),
the API (its rings, its readiness), the ``cameras`` and ``tail`` commands, replay, and the workers'
own start-up checks (a table's changelog ends).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from its_faust import unreadable_batches

unreadable_batches.install()  # every reader here (the CLI's, the API's) goes past a batch no client can read

# A fetch of several partitions is answered by the embedded broker only when its wait runs out
# (see its_faust.kafka_transport), so short-lived readers of a whole topic wait briefly; long-lived
# ones wait as workers do, since polling every 10 ms costs the broker CPU for every partition of
# every fetch. A fetch of one partition it answers sooner, but not at once: measured with one
# record every 33 ms, within half the wait (delivery p50 131 ms, at most 252 ms at 500; p50 26 ms,
# at most 53 ms at 100). Readers of one camera keep 500: ``run`` returns a frame's credit when its
# track arrives, and returning them sooner put more frames in the queue before detection (p50
# latency 250 -> 380 ms) with no gain in frames per second (3 paired runs on 2 cores: 2 slower, 1 faster).
WHOLE_TOPIC_FETCH_WAIT_MS = 10
ONE_PARTITION_FETCH_WAIT_MS = 500


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives ``key``: every producer here uses it."""
    return DefaultPartitioner()(key, list(range(partitions)), list(range(partitions)))


class TopicMissing(ValueError):
    """The topic is not on the broker (yet)."""


class TopicReader:
    """Reads one topic from the offsets it had when started (or from the beginning).

    With ``keys``, only the partitions that hold those keys' records are read (one camera's
    records are all in one partition): cheaper, and for one key prompt on the embedded broker.
    """

    def __init__(self, bootstrap: str, topic: str, *, from_beginning: bool = False, keys: Collection[bytes] | None = None,
                 many_partitions_wait_ms: int = WHOLE_TOPIC_FETCH_WAIT_MS):
        self.bootstrap = bootstrap
        self.topic = topic
        self.from_beginning = from_beginning
        self.keys = set(keys) if keys is not None else None
        fetch_max_wait_ms = ONE_PARTITION_FETCH_WAIT_MS if self.keys and len(self.keys) == 1 else many_partitions_wait_ms
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
            fetch_max_wait_ms=fetch_max_wait_ms,
            # If the broker ever answers "offset out of range", re-read rather than jump to the end:
            # a reader that skips records would report frames as lost; readers here dedup by (camera, seq).
            auto_offset_reset="earliest",
        )

    async def start(self) -> "TopicReader":
        await self.consumer.start()
        partitions = self.consumer.partitions_for_topic(self.topic)
        for _ in range(50):
            if partitions:
                break
            await self.consumer._client.force_metadata_update()
            partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            await self.consumer.stop()
            raise TopicMissing(f"topic {self.topic} does not exist on the broker (no worker or producer has created it yet)")
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        if self.keys is not None and tps:
            tps = [TopicPartition(self.topic, p) for p in sorted({partition_for(k, len(tps)) for k in self.keys})]
        self.consumer.assign(tps)
        if self.from_beginning:
            await self.consumer.seek_to_beginning(*tps)
        else:
            await self.consumer.seek_to_end(*tps)
            for tp in tps:  # resolve the positions now, before anything new is produced
                await self.consumer.position(tp)
        return self

    async def poll(self, timeout_ms: int = 200):
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=1000)
        return [m for msgs in batches.values() for m in msgs]

    async def batches_to_end(self):
        """Batches of messages up to the topic's end as it is now (then stops, unlike ``poll``).

        The end is read from the log (:func:`log_ends`: the broker's own figure can fall short of the
        last record batch), so a camera that keeps producing elsewhere in the topic does not keep the
        reader going. A partition that reached its end is paused meanwhile, and resumed at the end.
        """
        tps = list(self.consumer.assignment())
        ends = await read_log_ends(self.bootstrap, tps)
        empty_polls = 0
        try:
            while True:
                reached = [tp for tp in tps if await self.consumer.position(tp) >= ends[tp]]
                self.consumer.pause(*reached)
                if len(reached) == len(tps) or empty_polls >= 5:  # 5: records below the end are gone (retention)
                    return
                batch = await self.poll(600)
                empty_polls = 0 if batch else empty_polls + 1
                if batch:
                    yield batch
        finally:
            self.consumer.resume(*tps)

    async def read_to_end(self):
        """Every message up to the topic's end as it is now."""
        return [m async for batch in self.batches_to_end() for m in batch]

    async def stop(self) -> None:
        await self.consumer.stop()


async def log_ends(consumer: AIOKafkaConsumer, tps: list[TopicPartition], timeout_s: float = 2.0,
                   confirmed: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
    """Each partition's end: the offset after its last record, read from the log.

    The embedded broker answers ListOffsets with its last record batch's first offset + 1,
    short of the end by the rest of that batch (the pipeline's producers send many records
    per batch). The batch at that offset is fetched, and its last record gives the end. Takes
    over ``consumer``'s assignment. (Faust checks its tables' local copies against the
    broker's own figure: ``tables.local_copies`` marks copies back to it.) ``confirmed``, when
    given, gets the partitions whose end the log itself gave (empty ones too); for the others
    the fetch brought nothing within ``timeout_s``, and their figure is the broker's, maybe short.
    """
    ends = await consumer.end_offsets(tps) if tps else {}
    todo = {tp for tp, end in ends.items() if end > 0}
    consumer.assign(list(ends))
    for tp in todo:
        consumer.seek(tp, ends[tp] - 1)
    deadline = time.monotonic() + timeout_s
    while todo and time.monotonic() < deadline:
        for tp, messages in (await consumer.getmany(*todo, timeout_ms=200)).items():
            if messages:
                ends[tp] = max(ends[tp], messages[-1].offset + 1)
                todo.discard(tp)
        for tp in list(todo):  # a last batch no client can read brings no record: it ends where it ends
            unreadable = unreadable_batches.covering(tp.topic, tp.partition, ends[tp] - 1)
            if unreadable is not None:
                ends[tp] = max(ends[tp], unreadable.end)
                todo.discard(tp)
    if confirmed is not None:
        confirmed.update(tp for tp in ends if tp not in todo)
    return ends


async def read_log_ends(bootstrap: str, tps: list[TopicPartition],
                        confirmed: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
    """:func:`log_ends` with a consumer of its own (a reader's positions stay as they are)."""
    if not tps:
        return {}  # (a consumer assigned no partitions is cancelled in its own stop)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=WHOLE_TOPIC_FETCH_WAIT_MS, max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    try:
        return await log_ends(consumer, tps, confirmed=confirmed)
    finally:
        await consumer.stop()


async def find_near(bootstrap: str, topic: str, partitions: int, key: bytes, at_s: float, matches,
                    before_s: float = 10.0, after_s: float = 60.0, scan: int = 20_000):
    """The first record of ``key`` that ``matches`` among its records stamped from ``at_s - before_s`` to
    ``at_s + after_s`` (Kafka timestamps), in the partition the key goes to; None if none within ``scan``
    records. For one record long gone from a reader's memory (an alert's frame): the place is found by time,
    by a binary search over offsets (the embedded broker does not look offsets up by time) that compares
    only the key's own records, whose times grow with their offsets (cameras sharing a partition may each
    run on a clock of their own: a file's scene time), then read from there."""
    tp = TopicPartition(topic, partition_for(key, partitions))
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=WHOLE_TOPIC_FETCH_WAIT_MS, max_partition_fetch_bytes=1 << 20)
    await consumer.start()
    try:
        end = (await log_ends(consumer, [tp]))[tp]
        begin = (await consumer.beginning_offsets([tp]))[tp]
        since_ms, until_ms = int((at_s - before_s) * 1000), int((at_s + after_s) * 1000)
        lo, hi = begin, end  # the first offset of the key's records stamped since_ms or later
        while lo < hi:
            mid = (lo + hi) // 2
            record = await _keyed_record_from(consumer, tp, mid, hi, key)
            if record is None:  # none of the key's in [mid, hi): the place is before mid, or the scan finds it
                hi = mid
            elif record.timestamp < since_ms:
                lo = record.offset + 1
            else:
                hi = mid
        async for record in _keyed_records(consumer, tp, lo, end, key, scan):
            if record.timestamp > until_ms:
                return None
            if matches(record):
                return record
        return None
    finally:
        await consumer.stop()


async def _keyed_record_from(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, end: int, key: bytes):
    """The key's first record at ``offset`` or after it, before ``end``, within 2,000 records; None if none."""
    async for record in _keyed_records(consumer, tp, offset, end, key, 2000):
        return record
    return None


async def _keyed_records(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, end: int, key: bytes, scan: int):
    """The key's records from ``offset`` to ``end``, among the next ``scan`` records of the partition."""
    consumer.seek(tp, offset)
    read = 0
    while read < scan and await consumer.position(tp) < end:
        records = (await consumer.getmany(tp, timeout_ms=1000, max_records=200)).get(tp, [])
        if not records:
            return
        read += len(records)
        for record in records:
            if record.offset >= end:
                return
            if record.key == key:
                yield record


def _group_reader(bootstrap: str, group_id: str) -> AIOKafkaConsumer:
    # A consumer that names the group but never subscribes reads its commits without joining it.
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
                            fetch_max_wait_ms=WHOLE_TOPIC_FETCH_WAIT_MS, max_partition_fetch_bytes=8 << 20)


async def _group_offsets_on(consumer: AIOKafkaConsumer, topics: list[str],
                            partitions: set[int] | None = None) -> dict[tuple[str, int], tuple[int, int]]:
    tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])
           if partitions is None or p in partitions]
    ends = await log_ends(consumer, tps)
    # Paused: a consumer kept open would go on fetching every partition it was assigned (the frames too).
    consumer.pause(*consumer.assignment())
    return {(tp.topic, tp.partition): (await consumer.committed(tp) or 0, end) for tp, end in ends.items()}


async def group_offsets(bootstrap: str, group_id: str, topics: list[str],
                        partitions: set[int] | None = None) -> dict[tuple[str, int], tuple[int, int]]:
    """Per (topic, partition), of every partition or these: (offset the consumer group has committed, end offset)."""
    consumer = _group_reader(bootstrap, group_id)
    await consumer.start()
    try:
        return await _group_offsets_on(consumer, topics, partitions)
    finally:
        await consumer.stop()


class GroupOffsetsReader:
    """:func:`group_offsets` for a process that asks often (the API's /ready and /metrics): one consumer kept
    open instead of one per call, and one answer shared by the calls within ``fresh_s`` of it."""

    def __init__(self, bootstrap: str, group_id: str, topics: list[str], fresh_s: float = 1.0):
        self.bootstrap, self.group_id, self.topics, self.fresh_s = bootstrap, group_id, topics, fresh_s
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._last: tuple[float, dict] | None = None  # (monotonic time, answer)
        self.consumers_opened = 0

    async def read(self) -> dict[tuple[str, int], tuple[int, int]]:
        async with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < self.fresh_s:
                return self._last[1]
            try:
                if self._consumer is None:
                    self._consumer = _group_reader(self.bootstrap, self.group_id)
                    self.consumers_opened += 1
                    await self._consumer.start()
                elif not all(self._consumer.partitions_for_topic(t) for t in self.topics):
                    # A topic created since? Its assignment narrowed the metadata to the topics it had: all
                    # of them again (asking for the missing one by name could create it on the broker).
                    await self._consumer._client.set_topics([])
                answer = await _group_offsets_on(self._consumer, self.topics)
            except BaseException:  # (a timeout's cancel too) the consumer may be mid-request: a new one next time
                self._drop()
                raise
            self._last = (time.monotonic(), answer)
            return answer

    def _drop(self) -> None:
        consumer, self._consumer, self._last = self._consumer, None, None
        if consumer is not None:
            asyncio.ensure_future(consumer.stop())  # not awaited: a broker that hangs must not hang the caller

    async def close(self) -> None:
        async with self._lock:
            consumer, self._consumer = self._consumer, None
            if consumer is not None:
                await consumer.stop()


async def group_lag(bootstrap: str, group_id: str, topics: list[str]) -> dict[str, dict[int, int]]:
    """Per topic and partition: messages the consumer group has not committed yet."""
    lag: dict[str, dict[int, int]] = {}
    for (topic, partition), (done, end) in (await group_offsets(bootstrap, group_id, topics)).items():
        lag.setdefault(topic, {})[partition] = end - done
    return lag
