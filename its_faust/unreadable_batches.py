"""Record batches no client can read are skipped and named, instead of stopping whoever reads them.

A Kafka client decodes a fetched record batch whole: it decompresses it and parses its records. One it cannot
(a codec it does not have, bytes that do not decompress, a checksum that does not match) made aiokafka raise
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
from dataclasses import dataclass

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
    and those that cannot be read left out (and past, for the partition's next fetch)."""

    def __init__(self, records, owner, tp):
        self._records = records
        self._owner = owner  # the PartitionRecords: where the partition's next fetch starts
        self._tp = tp
        self._ready = None

    def has_next(self) -> bool:
        while self._ready is None and self._records.has_next():
            batch = self._records.next_batch()
            if batch is None:
                break
            try:
                if not batch.validate_crc():
                    raise ValueError("its CRC does not match its bytes")
                self._ready = _ReadBatch(batch, list(batch))
            except Exception as exc:  # (what a decoder raises on bytes it cannot take varies: any of it)
                end = batch.next_offset
                _record(UnreadableBatch(self._tp.topic, self._tp.partition, batch.base_offset, end,
                                        f"{type(exc).__name__}: {exc}"))
                self._owner.next_fetch_offset = max(self._owner.next_fetch_offset, end)
        return self._ready is not None

    def next_batch(self):
        ready, self._ready = self._ready, None
        return ready


_installed = False


def install() -> None:
    """Every aiokafka consumer in this process skips unreadable batches (idempotent)."""
    global _installed
    if _installed:
        return
    from aiokafka.consumer.fetcher import PartitionRecords

    original = PartitionRecords.__init__

    def __init__(self, tp, records, *args, **kwargs):
        original(self, tp, _ReadableOnly(records, None, tp), *args, **kwargs)
        self._records._owner = self  # (its generator reads batches only once iterated: after this)

    PartitionRecords.__init__ = __init__
    _installed = True
