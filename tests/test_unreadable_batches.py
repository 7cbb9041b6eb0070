"""A record batch no client can read is set aside; the records around it are read (its_faust/unreadable_batches.py)."""

from __future__ import annotations

import struct

import aiokafka.record.default_records as default_records
import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import READ_UNCOMMITTED, PartitionRecords
from aiokafka.record.memory_records import MemoryRecords

from its_faust import unreadable_batches

GZIP = 1


def batch(base_offset: int, values: list[bytes], compression: int = 0) -> bytes:
    builder = default_records._DefaultRecordBatchBuilderPy(
        magic=2, compression_type=compression, is_transactional=0, producer_id=-1, producer_epoch=-1,
        base_sequence=-1, batch_size=1 << 20)
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=1000, key=b"cam-1", value=value, headers=[])
    built = builder.build()
    struct.pack_into(">q", built, 0, base_offset)  # (the broker's to set; outside the CRC)
    return bytes(built)


def read(data: bytes, tp=TopicPartition("its.frames", 0), fetch_offset: int = 0) -> tuple[list, int]:
    records = PartitionRecords(tp, MemoryRecords(data), [], fetch_offset, None, None, True, READ_UNCOMMITTED)
    return [(r.offset, r.value) for r in records], records.next_fetch_offset


@pytest.fixture
def corrupt_gzip(monkeypatch):
    """A gzip batch whose bytes do not decompress (a broken client; the embedded broker stores it as sent)."""
    unreadable_batches.install()
    monkeypatch.setattr(unreadable_batches, "_found", {})
    with monkeypatch.context() as m:
        m.setattr(default_records, "gzip_encode", lambda data, *a, **k: b"\x1f\x8b not gzip at all" + bytes(200))
        yield lambda base, values: batch(base, values, GZIP)


def test_the_batches_around_an_unreadable_one_are_read_and_it_is_named(corrupt_gzip, caplog):
    data = batch(0, [b"a", b"b"]) + corrupt_gzip(2, [b"x" * 1000, b"y" * 1000, b"z" * 1000]) + batch(5, [b"c"])
    assert read(data) == ([(0, b"a"), (1, b"b"), (5, b"c")], 6)
    found = unreadable_batches.covering("its.frames", 0, 3)
    assert (found.first, found.end) == (2, 5) and "BadGzipFile" in found.reason, found
    assert unreadable_batches.covering("its.frames", 0, 5) is None and unreadable_batches.covering("its.frames", 1, 3) is None
    assert "its.frames[0] offsets 2-4: a record batch that cannot be read" in caplog.text
    read(data)  # fetched again (another reader, a re-read): said once
    assert caplog.text.count("cannot be read") == 1


def test_a_fetch_that_ends_in_an_unreadable_batch_goes_on_after_it(corrupt_gzip):
    # Else the partition's next fetch starts at it again, and again.
    assert read(batch(0, [b"a"]) + corrupt_gzip(1, [b"x" * 1000])) == ([(0, b"a")], 2)
    assert read(corrupt_gzip(7, [b"x" * 1000, b"y" * 1000]), fetch_offset=7) == ([], 9)


def test_a_batch_whose_crc_does_not_match_is_set_aside():
    unreadable_batches.install()
    bad = bytearray(batch(1, [b"b"]))
    bad[-1] ^= 0xFF  # a byte of its record changed after the CRC was taken
    assert read(batch(0, [b"a"]) + bytes(bad) + batch(2, [b"c"]), tp=TopicPartition("its.crc", 0)) == ([(0, b"a"), (2, b"c")], 3)
    assert "CRC" in unreadable_batches.covering("its.crc", 0, 1).reason


def test_readable_batches_are_read_as_aiokafka_reads_them():
    unreadable_batches.install()
    data = batch(0, [b"a"]) + batch(1, [b"b" * 1000, b"c"], GZIP)
    assert read(data, fetch_offset=1) == ([(1, b"b" * 1000), (2, b"c")], 3)
