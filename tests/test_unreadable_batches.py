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
    monkeypatch.setattr(unreadable_batches, "_crc_failures", {})
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


def test_a_batch_whose_crc_does_not_match_is_fetched_again_then_set_aside(monkeypatch):
    unreadable_batches.install()
    monkeypatch.setattr(unreadable_batches, "_found", {})
    monkeypatch.setattr(unreadable_batches, "_crc_failures", {})
    bad = bytearray(batch(1, [b"b"]))
    bad[-1] ^= 0xFF  # a byte of its record changed after the CRC was taken
    data, tp = batch(0, [b"a"]) + bytes(bad) + batch(2, [b"c"]), TopicPartition("its.crc", 0)
    assert read(data, tp=tp) == ([(0, b"a")], 1)  # damaged on its way, maybe: the next fetch starts at it
    assert unreadable_batches.covering("its.crc", 0, 1) is None
    assert read(data[len(batch(0, [b"a"])):], tp=tp, fetch_offset=1) == ([(2, b"c")], 3)  # the same again: set aside
    assert "CRC" in unreadable_batches.covering("its.crc", 0, 1).reason


def test_an_unreadable_batch_is_skipped_no_further_than_the_next_batch_whatever_its_header_says(corrupt_gzip):
    bad = bytearray(corrupt_gzip(1, [b"x" * 1000]))
    bad[23:27] = (10**6).to_bytes(4, "big")  # its last offset delta: a million (its CRC no longer matches)
    data = bytes(bad) + batch(2, [b"c"])
    assert read(data, fetch_offset=1) == ([], 1)  # fetched again first (see above)
    assert read(data, fetch_offset=1) == ([(2, b"c")], 3)  # not to offset 1000002, past "c"
    assert unreadable_batches.covering("its.frames", 0, 1).end == 2


def test_a_batch_of_a_codec_this_process_lacks_stops_the_reader_as_before(monkeypatch):
    """Skipped, every snappy batch would be lost to a process installed without cramjam, though others read them."""
    import aiokafka.codec

    unreadable_batches.install()
    monkeypatch.setattr(unreadable_batches, "_found", {})
    data = batch(0, [b"a" * 1000], compression=2)  # snappy
    monkeypatch.setattr(aiokafka.codec, "cramjam", None)
    with pytest.raises(Exception, match="snappy"):
        read(data)
    assert unreadable_batches.covering("its.frames", 0, 0) is None


def test_a_fetch_read_is_freed_at_once_not_held_until_a_garbage_collection():
    import gc
    import weakref

    unreadable_batches.install()
    gc.disable()
    try:
        records = PartitionRecords(TopicPartition("t", 0), MemoryRecords(batch(0, [b"a"])), [], 0, None, None, True,
                                   READ_UNCOMMITTED)
        list(records)
        gone = weakref.ref(records._records)
        del records
        assert gone() is None  # (a cycle through the wrapper held every fetched buffer until the collector ran)
    finally:
        gc.enable()


def test_readable_batches_are_read_as_aiokafka_reads_them():
    unreadable_batches.install()
    data = batch(0, [b"a"]) + batch(1, [b"b" * 1000, b"c"], GZIP)
    assert read(data, fetch_offset=1) == ([(1, b"b" * 1000), (2, b"c")], 3)


def _control_batch(base: int) -> bytes:
    """A transaction's commit marker: a control batch (attributes bit 5), its CRC taken again."""
    from aiokafka.record.util import calc_crc32c

    builder = default_records._DefaultRecordBatchBuilderPy(
        magic=2, compression_type=0, is_transactional=1, producer_id=7, producer_epoch=0, base_sequence=-1,
        batch_size=1 << 20)
    builder.append(0, timestamp=1000, key=struct.pack(">hh", 0, 1), value=b"", headers=[])
    out = bytearray(builder.build())
    struct.pack_into(">q", out, 0, base)
    struct.pack_into(">h", out, 21, struct.unpack_from(">h", out, 21)[0] | 0x20)
    struct.pack_into(">I", out, 17, calc_crc32c(bytes(out[21:])))
    return bytes(out)


def test_readable_fetches_read_exactly_as_aiokafka_reads_them():
    """Records, offsets and where the next fetch starts, after each record, in every way aiokafka reads a fetch."""
    from aiokafka.consumer.fetcher import READ_COMMITTED
    from aiokafka.record.memory_records import _MemoryRecordsPy

    unreadable_batches.install()
    two = batch(0, [b"a"]) + batch(1, [b"x" * 500, b"y"])
    fetches = [(batch(0, [b"a", b"b"]) + batch(2, [b"c"], GZIP) + batch(3, [b"d"] * 3), 0),
               (batch(0, [b"a", b"b", b"c"], GZIP) + batch(3, [b"d"]), 1),  # from within a batch
               (batch(0, [b"a"]) + _control_batch(1) + batch(2, [b"b"]), 0), (batch(0, [b"a"]) + _control_batch(1), 0),
               (batch(0, []) + batch(1, [b"a"]), 0),
               *[(two[:cut], 0) for cut in range(len(batch(0, [b"a"])), len(two), 7)]]  # a last batch cut short

    def steps(init, memory_records, data, fetch_offset, isolation):
        records = PartitionRecords.__new__(PartitionRecords)
        init(records, TopicPartition("t", 0), memory_records(data), [], fetch_offset, None, None, True, isolation)
        seen = []
        while True:
            record = next(records, None)
            seen.append((None if record is None else (record.offset, record.value), records.next_fetch_offset))
            if record is None:
                return seen

    for data, fetch_offset in fetches:
        for memory_records in (MemoryRecords, _MemoryRecordsPy):
            for isolation in (READ_UNCOMMITTED, READ_COMMITTED):
                args = (memory_records, data, fetch_offset, isolation)
                assert steps(PartitionRecords.__init__, *args) == steps(PartitionRecords.unpatched_init, *args)


def test_a_batch_damaged_only_on_its_way_is_read_and_a_later_damage_retried_afresh(monkeypatch):
    unreadable_batches.install()
    monkeypatch.setattr(unreadable_batches, "_found", {})
    monkeypatch.setattr(unreadable_batches, "_crc_failures", {})
    good, tp = batch(1, [b"b"]), TopicPartition("its.crc2", 0)
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    assert read(bytes(bad), tp=tp, fetch_offset=1) == ([], 1)
    assert read(good, tp=tp, fetch_offset=1) == ([(1, b"b")], 2)  # fetched again whole
    assert read(bytes(bad), tp=tp, fetch_offset=1) == ([], 1)  # damaged again later: fetched again first, as before
    assert unreadable_batches.covering("its.crc2", 0, 1) is None


def test_a_legacy_message_set_that_cannot_be_read_stops_the_reader_as_before(monkeypatch):
    from aiokafka.record.legacy_records import LegacyRecordBatchBuilder

    unreadable_batches.install()
    monkeypatch.setattr(unreadable_batches, "_found", {})
    builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
    builder.append(0, timestamp=1000, key=b"k", value=b"v")
    damaged = bytearray(builder.build())
    damaged[-1] ^= 0xFF
    with pytest.raises(Exception) as raised:
        read(bytes(damaged))
    assert not isinstance(raised.value, AttributeError), raised.value  # aiokafka's own error, not the wrapper's
