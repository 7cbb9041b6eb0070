"""What the API process knows: the tail of each result topic, in memory, read with aiokafka.

Each :class:`TopicRing` follows one topic with its own consumer (no group:
every API process reads every partition, so any of them can serve any client),
keeps the last ``capacity`` messages of each partition, and wakes whoever waits
for new ones. SSE clients pull from the ring with their own cursor, so one slow
client costs no memory: it just falls behind the ring's start and is told how
many events it missed. At start the ring is filled from the topic's last
``capacity`` messages, so a browser that reconnects to a restarted API process
still resumes exactly. A partition whose log ends before what the ring has read
(an in-memory broker restarted, a topic recreated: the broker then answers that
offset with nothing, for ever) is read again from its start, and ``resets``
counts it, so that feeds and read models start over too.

A ring with ``keep_s`` (the frames, for the live view) holds what arrived in the
last ``keep_s`` seconds instead, within ``capacity`` messages and ``max_bytes`` of
values (shared out between its partitions).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from its_faust.codecs import SchemaError, decode
from its_faust.throttle import Throttle
from its_faust.topic_reader import read_log_ends

log = logging.getLogger(__name__)
RESET_CHECK_S = 5.0  # how often a ring asks whether its partitions' logs still reach what it has read
REFUSAL_LOG_S = 60.0  # refused records are told at most once a minute per partition, with how many
LOG_ENDS_FRESH_S = 1.0  # how long a read of the log ends answers those who ask after it (see log_ends)
FILL_AT_LEAST = 48  # messages a keep_s ring reads at start, however old (a stopped camera's last frames)


R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Message:
    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp: float  # seconds
    record: Any = None  # the value decoded, as a ring that checks its records hands it to its read models

    def decoded(self, schema: type[R]) -> R:
        """The record: as the ring decoded it when it checked it, or decoded now (SchemaError: not one)."""
        return self.record if isinstance(self.record, schema) else decode(schema, self.value)


class TopicRing:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        capacity: int,
        *,
        from_beginning: bool = False,
        on_message: Callable[[Message], None] | None = None,
        on_reset: Callable[[int], None] | None = None,
        fetch_max_wait_ms: int = 100,
        keep_s: float | None = None,
        max_bytes: int | None = None,
        check: Callable[[Message], Any] | None = None,
    ):
        self.bootstrap = bootstrap
        # Decodes a message's record, raising SchemaError for one that is not its topic's. Refused records are
        # neither held nor read models' to see: the feeds pass a record on as it is, and a client that parses it
        # must not get a stranger's garbage.
        self.check = check
        self.refused = 0
        self._refusals: Throttle[int] = Throttle(REFUSAL_LOG_S)
        self.fetch_max_wait_ms = fetch_max_wait_ms  # see Settings.fetch_max_wait_ms
        self.topic = topic
        self.capacity = capacity
        self.keep_s = keep_s
        self.max_bytes = max_bytes
        self._partition_bytes = 0  # max_bytes shared out between the partitions (at start)
        self.from_beginning = from_beginning
        self.on_message = on_message
        self.on_reset = on_reset
        self.resets: dict[int, int] = {}  # per partition: how often its log was found reset
        self.log_lost_at: float | None = None  # when a partition's log was last found lost (wall clock)
        self._next_reset_check = 0.0
        self._failing: set[str] = set()  # what of this ring's reading fails now (said once: _failed)
        self.partitions: list[int] = []
        self._offsets: dict[int, list[int]] = {}
        self._messages: dict[int, list[Message]] = {}
        self._arrivals: dict[int, list[float]] = {}  # with keep_s: when each held message arrived (monotonic)
        self._bytes: dict[int, int] = {}  # with keep_s: the held values' bytes
        self.next: dict[int, int] = {}  # offset after the newest seen, per partition
        # Per partition: from this offset on every message is held or was refused (where reading began, or
        # after the last one trimmed): a reader there has missed nothing, refused records between or not.
        self._seen_from: dict[int, int] = {}
        self._new = asyncio.Event()
        self._log_ends: tuple[float, asyncio.Future] | None = None  # see log_ends
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self.last_fetch_ok: float = 0.0
        self.received = 0

    async def start(self) -> "TopicRing":
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            fetch_max_wait_ms=self.fetch_max_wait_ms, max_partition_fetch_bytes=8 << 20, auto_offset_reset="earliest",
        )
        await consumer.start()
        self._consumer = consumer
        parts = consumer.partitions_for_topic(self.topic)
        for _ in range(50):
            if parts:
                break
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(self.topic)
        self.partitions = sorted(parts or [])
        tps = [TopicPartition(self.topic, p) for p in self.partitions]
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        fill = await self._fill_from(consumer, ends) if self.keep_s is not None else {}
        if self.max_bytes:
            self._partition_bytes = self.max_bytes // max(1, len(tps))
        for tp in tps:
            start = begins[tp] if self.from_beginning else max(begins[tp], fill.get(tp, ends[tp] - self.capacity))
            consumer.seek(tp, start)
            self.next[tp.partition] = self._seen_from[tp.partition] = start
            self._offsets[tp.partition], self._messages[tp.partition], self._arrivals[tp.partition] = [], [], []
            self._bytes[tp.partition] = 0
            self.resets[tp.partition] = 0
        self._next_reset_check = time.monotonic() + RESET_CHECK_S
        self.last_fetch_ok = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"ring:{self.topic}")
        return self

    async def _fill_from(self, consumer: AIOKafkaConsumer, ends: dict) -> dict:
        """Where a ``keep_s`` ring starts: the last ``keep_s`` seconds of each partition (by the records' time), and
        at least its last FILL_AT_LEAST messages, so a camera that stopped still has its last frames to show."""
        try:
            since = await consumer.offsets_for_times({tp: int((time.time() - self.keep_s) * 1000) for tp in ends})
        except Exception as exc:  # a broker that cannot look records up by time: the last few, then
            log.warning("api: %s: no offsets by time from the broker (%r); starting with the last %d records",
                        self.topic, exc, FILL_AT_LEAST)
            since = {}
        out = {}
        for tp, end in ends.items():
            found = since.get(tp)
            recent = found.offset if found is not None and found.timestamp >= 0 else end  # none that recent: the end
            out[tp] = max(min(recent, end - FILL_AT_LEAST), end - self.capacity)
        return out

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._consumer:
            try:
                await self._consumer.stop()
            except asyncio.CancelledError:
                # aiokafka's fetcher awaits the fetch it cancels on close: with the broker away that raises
                # here though nobody cancelled this stop (a real cancel of it goes on).
                if asyncio.current_task().cancelling():
                    raise
                log.info("api: %s reader stopped while its broker was away", self.topic)

    async def _run(self) -> None:
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away for a while: keep trying, readiness says so
                self._failed("reading", exc)
                await asyncio.sleep(1.0)
                continue
            self._works("reading")
            self.last_fetch_ok = time.monotonic()
            if self.last_fetch_ok >= self._next_reset_check:
                self._next_reset_check = self.last_fetch_ok + RESET_CHECK_S
                try:
                    await self._check_for_reset()
                    self._works("checking for a reset log")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._failed("checking for a reset log", exc)
            for tp, records in batches.items():
                for r in records:
                    self._add(Message(tp.partition, r.offset, r.key or b"", r.value or b"", (r.timestamp or 0) / 1000))
            if batches:
                self._wake()

    def _failed(self, what: str, exc: Exception) -> None:
        """Said once while it keeps failing, in a line: a broker away (hung, restarting) is no bug, and each ring's
        tracebacks, again at every try, had filled the API's log (9 every 40 s while a broker hung). Anything but
        the broker's or the network's errors may be a bug: said each time, with its traceback."""
        if not isinstance(exc, (KafkaError, OSError, TimeoutError)):
            log.warning("api: %s: %s failed; trying again", self.topic, what, exc_info=True)
            return
        if what not in self._failing:
            self._failing.add(what)
            kind, detail = type(exc).__name__, str(exc)
            log.warning("api: %s: %s failed (%s); trying again until it works", self.topic, what,
                        f"{kind}: {detail}" if detail and detail != kind else kind)
        log.debug("api: %s: %s failed", self.topic, what, exc_info=True)

    def _works(self, what: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            log.info("api: %s: %s works again", self.topic, what)

    def _wake(self) -> None:
        """Wake whoever waits for new messages (or for a partition that started over)."""
        self._new.set()
        self._new = asyncio.Event()

    async def _check_for_reset(self) -> None:
        """Partitions whose log ends before what this ring has read start over from the log's beginning."""
        tps = [TopicPartition(self.topic, p) for p in self.partitions]
        reported = await self._consumer.end_offsets(tps)
        # The embedded broker's figure can fall short by the rest of its last batch: the log itself decides.
        suspects = [tp for tp in tps if reported[tp] < self.next[tp.partition]]
        confirmed: set[TopicPartition] = set()
        ends = await read_log_ends(self.bootstrap, suspects, confirmed)
        # Only an end the log itself gave: a fetch that brought nothing in time leaves the broker's figure, short
        # of a last batch of several records, and every such partition was taken for lost and read again from its
        # start, every 5 s (a churn trial, once its producer stopped). Asked again at the next check.
        lost = [tp for tp in suspects if tp in confirmed and ends[tp] < self.next[tp.partition]]
        for tp in lost:
            self._reset(tp.partition, ends[tp])
        if lost:
            self._wake()

    def _reset(self, partition: int, end: int) -> None:
        log.warning("api: %s[%d] ends at %d, before offset %d this API has read: the broker lost that log (an "
                    "in-memory broker restarted, or the topic was recreated); reading it again from its start",
                    self.topic, partition, end, self.next[partition])
        self._forget(partition)
        self._consumer.seek(TopicPartition(self.topic, partition), 0)

    def _forget(self, partition: int) -> None:
        self._offsets[partition], self._messages[partition], self._arrivals[partition] = [], [], []
        self._bytes[partition] = 0
        self.next[partition] = self._seen_from[partition] = 0
        self.resets[partition] += 1
        self.log_lost_at = time.time()
        if self.on_reset:
            self.on_reset(partition)

    def _add(self, m: Message) -> None:
        if m.offset < self.next[m.partition]:
            # Kafka answers an offset past a log's end with OFFSET_OUT_OF_RANGE, and the consumer starts the
            # partition again from its beginning: the same lost log as above, seen from the other side. (So
            # also where nothing is held: every record refused, or trimmed by age; the check above misses it
            # once the new log has grown past what was read.)
            log.warning("api: %s[%d] went back from offset %d to %d: the broker lost that log; read again from "
                        "its start", self.topic, m.partition, self.next[m.partition], m.offset)
            self._forget(m.partition)
        checked = self._checked(m) if self.check is not None else m
        if checked is None:
            self.next[m.partition] = m.offset + 1
            return
        offsets, messages = self._offsets[m.partition], self._messages[m.partition]
        offsets.append(m.offset)
        messages.append(m)
        self.next[m.partition] = m.offset + 1
        self.received += 1
        if self.keep_s is not None:
            self._trim_by_age(m.partition)
        elif len(messages) > 2 * self.capacity:  # trim in bulk: amortised O(1) per message
            self._seen_from[m.partition] = offsets[-self.capacity - 1] + 1
            del offsets[: -self.capacity], messages[: -self.capacity]
        if self.on_message:
            try:
                self.on_message(checked)  # (decoded for the read models; the ring holds the bytes only: memory)
            except Exception:  # a read model must not stop the feed
                log.exception("api: read model failed on %s[%d]@%d", self.topic, m.partition, m.offset)

    def _checked(self, m: Message) -> Message | None:
        """``m`` with its record decoded, or None: refused, and told (at most once a minute per partition)."""
        try:
            return replace(m, record=self.check(m))
        except SchemaError as exc:
            problem = str(exc)
        except Exception as exc:  # a check that fails must not stop the ring's reader
            problem = f"not checked: {exc!r}"
        self.refused += 1
        told = self._refusals.hit(m.partition, time.monotonic())
        if told is not None:
            log.warning("api: %s[%d]@%d left out of its feed (%s)%s", self.topic, m.partition, m.offset, problem,
                        f"; {told - 1} more since the last told" if told > 1 else "")
        return None

    def _trim_by_age(self, partition: int) -> None:
        """Drop what arrived over ``keep_s`` ago, and the oldest beyond ``capacity`` messages or the partition's share
        of ``max_bytes``: in bulk, once the oldest held is half as old again (or a quarter too many are held), so a
        message costs amortised O(1)."""
        arrivals, messages, now = self._arrivals[partition], self._messages[partition], time.monotonic()
        arrivals.append(now)
        self._bytes[partition] += len(messages[-1].value)
        budget = self._partition_bytes or None
        if not (now - arrivals[0] > 1.5 * self.keep_s or len(arrivals) > 1.25 * self.capacity
                or (budget and self._bytes[partition] > 1.25 * budget)):
            return
        cut = max(bisect.bisect_left(arrivals, now - self.keep_s), len(arrivals) - self.capacity)
        dropped = sum(len(m.value) for m in messages[:cut])
        while budget and cut < len(messages) - 1 and self._bytes[partition] - dropped > budget:
            dropped += len(messages[cut].value)
            cut += 1
        if cut:
            self._seen_from[partition] = messages[cut - 1].offset + 1
        del self._offsets[partition][:cut], messages[:cut], arrivals[:cut]
        self._bytes[partition] -= dropped

    def read(self, partition: int, from_offset: int, limit: int = 200) -> list[Message]:
        """Messages of a partition from ``from_offset`` on (held ones only; see ``first``)."""
        offsets = self._offsets.get(partition, [])
        start = max(bisect.bisect_left(offsets, from_offset), len(offsets) - self.capacity, 0)
        return self._messages[partition][start : start + limit]

    def held_from(self, partition: int) -> int:
        """The oldest offset a reader can still get from memory (everything before it is only on the broker):
        after the newest message not held, records refused since being no loss."""
        offsets = self._offsets.get(partition, [])
        beyond = len(offsets) - self.capacity  # held in bulk beyond capacity: as good as trimmed
        if beyond > 0:
            return offsets[beyond - 1] + 1
        return self._seen_from.get(partition, self.next.get(partition, 0))

    def latest(self, partition: int, n: int) -> list[Message]:
        return self._messages.get(partition, [])[-n:]

    async def log_ends(self, read_since: float | None = None) -> dict[int, int]:
        """Each partition's log end, read from the broker on a consumer of its own (those it could not confirm left
        out: see _read_confirmed_ends). One read serves every caller
        that asks while it runs or within LOG_ENDS_FRESH_S after (a hundred clients resuming past the log at once
        had opened a hundred connections to the broker); ``read_since`` (monotonic): a read begun then or later,
        for an answer that must not be older. KafkaError when the broker does not answer."""
        now = time.monotonic()
        if not self._log_ends_serve(now, read_since):
            self._log_ends = (now, asyncio.ensure_future(self._read_confirmed_ends()))
        return await asyncio.shield(self._log_ends[1])  # a caller that leaves does not cancel it for the others

    def _log_ends_serve(self, now: float, read_since: float | None) -> bool:
        """Whether the last read of the log ends (running or done) answers a caller asking now."""
        if self._log_ends is None:
            return False
        began, read = self._log_ends
        if read.done() and (read.cancelled() or read.exception() is not None):
            return False  # failed: read again
        if read_since is not None:
            return began >= read_since
        return not read.done() or now - began <= LOG_ENDS_FRESH_S

    async def _read_confirmed_ends(self) -> dict[int, int]:
        """The log ends the log itself gave (see _check_for_reset); a partition whose end it did not is left out."""
        confirmed: set[TopicPartition] = set()
        tps = [TopicPartition(self.topic, p) for p in self.partitions]
        ends = await read_log_ends(self.bootstrap, tps, confirmed)
        return {tp.partition: end for tp, end in ends.items() if tp in confirmed}

    async def wait_new(self, timeout: float) -> bool:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for returns instead of raising when its task is
        # cancelled just as the event is set, and every feed waits on this one event, so a client that left
        # while records came had its feed read on for ever (and its merged stream's close waiting on it).
        try:
            async with asyncio.timeout(timeout):
                await self._new.wait()
            return True
        except TimeoutError:
            return False

    def held(self) -> int:
        return sum(min(len(m), self.capacity) for m in self._messages.values())
