"""Record batches no client can read are skipped and named, instead of stopping whoever reads them.

A Kafka client decodes a fetched record batch whole: it decompresses it and parses its records. One it cannot
(bytes that do not decompress, a checksum that does not match) made aiokafka raise
out of every fetch of its partition, and the exception ended the process. A client's one corrupt batch on
``its.frames`` stopped every worker, and each worker started after it, for good (a trial; the embedded broker
stores a batch as it is sent, where Apache Kafka checks it first). Every process here reads through aiokafka's
``PartitionRecords``; :func:`install` makes it set such a batch aside: its offsets are recorded
(:func:`covering`), an error is logged once, and reading goes on after it. The intake of the stage that reads
the partition (:mod:`its_faust.intake`) then moves past those offsets at once and dead-letters the batch by
topic, partition and offsets, with the reason.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass

from aiokafka.errors import UnsupportedCodecError

log = logging.getLogger(__name__)

KEPT = 1000  # unreadable batches remembered; a later one past it forgets the oldest


@dataclass(frozen=True)
class UnreadableBatch:
    topic: str
    partition: int
    first: int  # its first offset
    end: int  # the offset after its last
    reason: str

    def __str__(self) -> str:
        return (f"{self.topic}[{self.partition}] offsets {self.first}-{self.end - 1}: a record batch that cannot be "
                f"read ({self.reason})")


_lock = threading.Lock()  # (aiokafka reads in Faust's consumer thread; the intake asks from the event loop)
_found: dict[tuple[str, int, int], UnreadableBatch] = {}


def covering(topic: str, partition: int, offset: int) -> UnreadableBatch | None:
    """The unreadable batch this process met that holds ``offset`` of the partition, if any."""
    with _lock:
        for batch in _found.values():
            if batch.topic == topic and batch.partition == partition and batch.first <= offset < batch.end:
                return batch
    return None


def _record(batch: UnreadableBatch) -> None:
    with _lock:
        key = (batch.topic, batch.partition, batch.first)
        if key in _found:
            return  # met again (a re-read): said once
        _found[key] = batch
        while len(_found) > KEPT:
            del _found[next(iter(_found))]
    log.error("skipped %s; reading goes on after it", batch)


class _ReadBatch:
    """A batch whose records were read in full: the same attributes, its records from a list."""

    def __init__(self, batch, records: list):
        self._batch = batch
        self._records = iter(records)

    def __getattr__(self, name):
        return getattr(self._batch, name)

    def validate_crc(self) -> bool:
        return True  # checked before its records were read (asked after, aiokafka's own batch refuses to answer)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._records)


class _ReadableOnly:
    """A fetched partition's batches (aiokafka's ``MemoryRecords``), each read in full before it is handed on,
    and those that cannot be read left out (and past, for the partition's next fetch).

    Not left out, but raised as aiokafka raises it: a batch of a codec whose library this process lacks (every
    batch of that codec would go, readable by others), and a batch whose framing is broken (where it ends is
    unknown). A batch whose CRC does not match is fetched once more before it is left out: bytes can be damaged
    on their way, where the broker's copy is whole."""

    def __init__(self, records, tp):
        self._records = records
        self._tp = tp
        self._owner = None  # a weak reference to the PartitionRecords (a strong one held every fetch until a GC)
        self._ready = None
        self._next = None  # a batch read ahead of its turn (to bound an unreadable one before it)
        self._stopped = False

    def _batch(self):
        if self._next is not None:
            batch, self._next = self._next, None
            return batch
        return self._records.next_batch() if self._records.has_next() else None

    def has_next(self) -> bool:
        while self._ready is None and not self._stopped:
            batch = self._batch()
            if batch is None:
                break
            try:
                if not batch.validate_crc():
                    raise _CrcMismatch("its CRC does not match its bytes")
                self._ready = _ReadBatch(batch, list(batch))
            except (MemoryError, RecursionError, UnsupportedCodecError):
                raise  # the process's trouble, not the batch's (a codec whose library it lacks: others read it)
            except Exception as exc:  # (what a decoder raises on bytes it cannot take varies: any of it)
                if not hasattr(batch, "base_offset"):
                    raise  # a message set of before Kafka 0.11 (v0, v1): as aiokafka has it
                if isinstance(exc, _CrcMismatch) and _first_crc_failure(self._tp, batch.base_offset):
                    self._stopped = True  # read again from it by the next fetch
                    break
                self._skip(batch, exc)
            else:
                if _crc_failures:
                    _crc_read_cleanly(self._tp, getattr(batch, "base_offset", None))
        return self._ready is not None

    def _skip(self, batch, exc: Exception) -> None:
        # Its header's own end, but never past the next batch of this fetch (a damaged header may say anything).
        end = max(batch.base_offset + 1, batch.next_offset)
        self._next = self._batch()
        if self._next is not None:
            end = min(end, max(batch.base_offset + 1, self._next.base_offset))
        _record(UnreadableBatch(self._tp.topic, self._tp.partition, batch.base_offset, end, f"{type(exc).__name__}: {exc}"))
        owner = self._owner() if self._owner is not None else None
        if owner is not None:
            owner.next_fetch_offset = max(owner.next_fetch_offset, end)

    def next_batch(self):
        ready, self._ready = self._ready, None
        return ready


class _CrcMismatch(ValueError):
    pass


_crc_failures: dict[tuple[str, int, int], None] = {}  # batches whose CRC failed once (a second time: skipped)


def _first_crc_failure(tp, base_offset: int) -> bool:
    key = (tp.topic, tp.partition, base_offset)
    with _lock:
        if key in _crc_failures:
            return False
        _crc_failures[key] = None
        while len(_crc_failures) > KEPT:
            del _crc_failures[next(iter(_crc_failures))]
    log.warning("%s[%d] offset %d: a record batch whose CRC does not match its bytes; fetching it again",
                tp.topic, tp.partition, base_offset)
    return True


def _crc_read_cleanly(tp, base_offset: int | None) -> None:
    """A batch fetched again whole: its CRC failure was on the way (a later one is retried afresh)."""
    with _lock:
        _crc_failures.pop((tp.topic, tp.partition, base_offset), None)


_installed = False


def install() -> None:
    """Every aiokafka consumer in this process skips unreadable batches (idempotent)."""
    global _installed
    if _installed:
        return
    from aiokafka.consumer.fetcher import PartitionRecords

    from aiokafka import codec

    lacking = [name for name in ("snappy", "lz4", "zstd") if not getattr(codec, f"has_{name}")()]
    if lacking:  # (their batches stop the readers, as they always did: not skipped, since others can read them)
        log.error("this process cannot read record batches compressed with %s: install cramjam "
                  "(pip install 'aiokafka[snappy,lz4,zstd]')", ", ".join(lacking))
    original = PartitionRecords.__init__

    def __init__(self, tp, records, *args, **kwargs):
        readable = _ReadableOnly(records, tp)
        original(self, tp, readable, *args, **kwargs)
        readable._owner = weakref.ref(self)  # (its generator reads batches only once iterated: after this)

    PartitionRecords.__init__ = __init__
    PartitionRecords.unpatched_init = original  # (tests compare the two)
    _installed = True
