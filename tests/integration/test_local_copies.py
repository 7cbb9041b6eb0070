"""A worker's RocksDB table copies against a real broker: a copy the broker's changelog no longer reaches is dropped."""

from __future__ import annotations

import asyncio

import rocksdict
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from its_faust.broker import EmbeddedBroker, bootstrap_servers
from tables.local_copies import (
    OFFSET_KEY, LocalCopy, changelog_ends, drop_stale_copies, from_another_log, local_copies, records_at, stale,
)


def _copy(path, table: str, changelog: str, partition: int, applied: int | None, value: bytes = b"{}") -> LocalCopy:
    """A RocksDB copy as Faust leaves it: a row, and the last changelog offset it applied."""
    db = rocksdict.Rdict(str(path))
    db[b"cam-1"] = value
    if applied is not None:
        db[OFFSET_KEY] = str(applied).encode()
    db.close()
    return LocalCopy.at(table, changelog, partition, path)


async def _changelog_with(bootstrap: str, topic: str, messages: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(messages):
            await producer.send_and_wait(topic, value=f"state-{i}".encode(), key=b"cam-1", partition=0)
    finally:
        await producer.stop()


def test_copies_past_the_end_of_their_changelog_are_stale_and_the_rest_are_not(tmp_path, monkeypatch):
    # Kafka answers a consumer's first metadata request (no topics named) with no topics, so its cache
    # knows none; Tansu answers with all. Taking Kafka's side here: the ends must not come from that cache.
    monkeypatch.setattr(AIOKafkaConsumer, "partitions_for_topic", lambda self, topic: None)
    with EmbeddedBroker() as broker:
        bootstrap = bootstrap_servers(broker.url)
        asyncio.run(_changelog_with(bootstrap, "t-changelog", 5))  # offsets 0-4 in partition 0
        copies = [
            _copy(tmp_path / "a.db", "behind", "t-changelog", 0, applied=3),  # offset 4 is still to apply
            _copy(tmp_path / "b.db", "caught-up", "t-changelog", 0, applied=4),
            _copy(tmp_path / "c.db", "ahead", "t-changelog", 0, applied=5),  # offset 5 was never written here
            _copy(tmp_path / "d.db", "other-partition", "t-changelog", 1, applied=0),  # partition 1 is empty
            _copy(tmp_path / "e.db", "gone", "lost-changelog", 0, applied=59),  # the topic is not on the broker
            _copy(tmp_path / "f.db", "never-applied", "lost-changelog", 1, applied=None),
            _copy(tmp_path / "g.db", "unknown-partition", "t-changelog", 7, applied=9),  # the broker told no end
        ]
        (tmp_path / "h.db").mkdir()  # a folder a crash left without a database in it: not judged, left to Faust
        assert LocalCopy.at("unreadable", "lost-changelog", 2, tmp_path / "h.db") is None
        broker_ends = asyncio.run(changelog_ends(bootstrap, {c.changelog for c in copies}))
    assert broker_ends.ends == {("t-changelog", 0): 5, ("t-changelog", 1): 0}
    assert "t-changelog" in broker_ends.topics and "lost-changelog" not in broker_ends.topics
    assert [(c.table, c.applied, end) for c, end in stale(copies, broker_ends)] == [
        ("ahead", 5, 5), ("other-partition", 0, 0), ("gone", 59, 0),
    ]


def test_a_copy_from_a_lost_log_is_told_by_the_record_it_applied_last_even_when_the_new_log_is_longer(tmp_path):
    """After an in-memory broker restart another worker may write more to the new changelog than this
    copy ever applied: offsets then look fine, the rows do not."""
    with EmbeddedBroker() as broker:
        bootstrap = bootstrap_servers(broker.url)
        for topic in ("n1-changelog", "n2-changelog", "n3-changelog"):  # each: key cam-1, state-0 ... state-5
            asyncio.run(_changelog_with(bootstrap, topic, 6))
        copies = [
            _copy(tmp_path / "a.db", "same-log", "n1-changelog", 0, applied=4, value=b"state-4"),
            _copy(tmp_path / "b.db", "same-log-caught-up", "n2-changelog", 0, applied=5, value=b"state-5"),
            _copy(tmp_path / "c.db", "lost-log", "n3-changelog", 0, applied=3, value=b"tracks of another day"),
        ]
        records = asyncio.run(records_at(bootstrap, {("n1-changelog", 0): 4, ("n3-changelog", 0): 3}))
        assert {k: (r.offset, r.value) for k, r in records.items()} == {
            ("n1-changelog", 0): (4, b"state-4"), ("n3-changelog", 0): (3, b"state-3"),
        }
        dropped = asyncio.run(drop_stale_copies(copies, bootstrap))
    assert [c.table for c in dropped] == ["lost-log"]
    assert copies[0].path.exists() and copies[1].path.exists() and not copies[2].path.exists()
    assert from_another_log(copies[:2], {}) == []  # no record fetched: nothing is judged


async def _changelog_in_one_batch(bootstrap: str, topic: str, messages: int) -> None:
    """``messages`` records (key cam-1, state-0 ...) in one record batch, as Faust's table writes come."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=500)
    await producer.start()
    try:
        sent = [await producer.send(topic, value=f"state-{i}".encode(), key=b"cam-1", partition=0) for i in range(messages)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def test_a_copy_the_broker_calls_ahead_but_the_log_reaches_is_kept_and_marked_back(tmp_path):
    """The embedded broker gives a partition's end as its last batch's first offset + 1. A worker's copy
    that applied that batch's later records was dropped and rebuilt on every restart, with a warning that
    blamed a lost log; Faust's own check (applied offset at most the broker's end - 1) then stopped it."""
    with EmbeddedBroker() as broker:
        bootstrap = bootstrap_servers(broker.url)
        asyncio.run(_changelog_with(bootstrap, "b-changelog", 0))
        asyncio.run(_changelog_in_one_batch(bootstrap, "b-changelog", 5))  # offsets 0-4, one batch
        broker_end = asyncio.run(changelog_ends(bootstrap, ["b-changelog"])).end("b-changelog", 0)
        copies = [
            _copy(tmp_path / "a.db", "same-log", "b-changelog", 0, applied=4, value=b"state-4"),
            _copy(tmp_path / "b.db", "lost-log", "b-changelog", 0, applied=4, value=b"tracks of another day"),
            _copy(tmp_path / "c.db", "past-the-log", "b-changelog", 0, applied=5, value=b"state-5"),
        ]
        dropped = asyncio.run(drop_stale_copies(copies, bootstrap))
    assert broker_end == 1  # what this test is about: the broker's figure falls short of the log's end, 5
    assert sorted(c.table for c in dropped) == ["lost-log", "past-the-log"]
    kept = LocalCopy.at("same-log", "b-changelog", 0, copies[0].path)
    assert kept.applied == broker_end - 1 and kept.read(b"cam-1") == b"state-4"  # Faust's check passes; rows kept


def test_a_worker_drops_the_tracker_copy_a_restarted_in_memory_broker_no_longer_has(tmp_path, monkeypatch):
    """What a worker does before Faust starts: before, Faust stopped it with a ConsistencyError."""
    monkeypatch.chdir(tmp_path)  # the data dir (.its-faust) is relative to the working directory
    import tables.tracker_table  # noqa: F401  (registers the camera-tracker table)
    from its_faust.app import app, settings

    tracker = app.tables["camera-tracker"]
    stale_path = tracker.data.partition_path(2)
    stale_path.parent.mkdir(parents=True, exist_ok=True)
    _copy(stale_path, "camera-tracker", "its-faust-camera-tracker-changelog", 2, applied=59)
    with EmbeddedBroker() as broker:  # a fresh broker: its changelogs are empty
        copies = local_copies(app, settings.partitions)
        assert [(c.table, c.partition) for c in copies] == [("camera-tracker", 2)]
        dropped = asyncio.run(drop_stale_copies(copies, bootstrap_servers(broker.url)))
    assert [(c.table, c.partition) for c in dropped] == [("camera-tracker", 2)]
    assert not stale_path.exists()


def test_a_copy_rocksdb_cannot_read_is_dropped_for_the_partition_to_be_rebuilt(tmp_path, caplog):
    """A damaged copy (a power loss, a disk's bad block) stopped the worker at every start, every camera with it (a
    trial: a truncated .sst, a MANIFEST or CURRENT overwritten); the changelog has what it held."""
    import os

    good, damaged, in_place = (tmp_path / f"camera-tracker-{p}.db" for p in (1, 2, 3))
    for p, path in enumerate((good, damaged, in_place), 1):
        _copy(path, "camera-tracker", "its-faust-camera-tracker-changelog", p, applied=5)
    (damaged / "CURRENT").write_text("garbage\n")
    db = rocksdict.Rdict(str(in_place))  # many rows in a table file, then 16 bytes of one block overwritten
    for i in range(20000):
        db[f"cam-{i:06d}".encode()] = os.urandom(100)
    db.flush()
    db.close()
    table_file = max(in_place.glob("*.sst"), key=lambda f: f.stat().st_size)
    with open(table_file, "r+b") as f:
        f.seek(table_file.stat().st_size // 2)
        f.write(b"\xff" * 16)
    with caplog.at_level("WARNING"):
        assert LocalCopy.at("camera-tracker", "its-faust-camera-tracker-changelog", 2, damaged) is None
        assert LocalCopy.at("camera-tracker", "its-faust-camera-tracker-changelog", 3, in_place) is None
        assert LocalCopy.at("camera-tracker", "its-faust-camera-tracker-changelog", 1, good).applied == 5
    assert not damaged.exists() and not in_place.exists() and good.exists()
    assert (tmp_path / "camera-tracker-2.db.damaged" / "CURRENT").exists()  # set aside, for a look
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and all("the partition is rebuilt from the broker's changelog" in w for w in warnings)
    assert "CURRENT file corrupted" in warnings[0] and "block checksum mismatch" in warnings[1], warnings
    incomplete = tmp_path / "camera-tracker-4.db"  # not damaged: a folder RocksDB never wrote (left to Faust)
    incomplete.mkdir()
    assert LocalCopy.at("camera-tracker", "its-faust-camera-tracker-changelog", 4, incomplete) is None
    assert incomplete.exists() and "left to Faust" in caplog.records[-1].getMessage()
