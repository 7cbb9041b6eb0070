"""A worker's local table copies that are ahead of the broker are dropped before the worker starts.

Each table partition's RocksDB copy in the data dir remembers the last changelog offset it
applied. When the broker's changelog ends at or below that offset, the log the copy was
built from is gone: the embedded broker keeps its topics in memory, so restarting it
empties them (as does deleting and recreating topics on Kafka). Faust then stops the
worker with a ConsistencyError ("persisted offset ... is higher than the last offset in
that topic"). The changelog is the tables' source of truth and the local copy only a
cache of it, so such a copy is deleted, with a warning naming it, and the partition is
rebuilt from what the broker has.

Offsets alone cannot tell a copy from a lost log whose new log has already grown past the
copy's offset (another worker wrote more records to it before this one started). For those,
the changelog record at the copy's last applied offset is fetched: a copy from that log
holds exactly its value for its key, one from another log (almost always) does not, and is
dropped the same way.

The embedded broker under-reports a changelog's end: it answers with its last record
batch's first offset + 1, and Faust's table writes send many records per batch. A copy
that applied that batch's later records looks ahead of the log to Faust, though the log
has them. The end is then read from the log itself; a copy the log does reach (and whose
last record it holds) is kept, its applied offset marked back to the broker's figure - 1.
Faust then starts from there: the records after it are applied again to the values the
copy already holds, as a changelog's later records win over its earlier ones.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)

# Where Faust's RocksDB store keeps a partition's last applied changelog offset (faust.stores.rocksdb.Store).
OFFSET_KEY = b"__faust\0offset__"
# What a table's rebuilt partition no longer has, when the broker lost its log (said with the warning).
_WHAT_IS_LOST = {
    "camera-config": ": the configurations of its cameras (lines, zones, calibration) are gone with the broker's "
                     "records; add them again (`its-faust cameras add`, `add-line`, ...)",
}


@dataclass(frozen=True)
class LocalCopy:
    table: str
    changelog: str
    partition: int
    path: Path
    applied: int | None  # the last changelog offset it applied (None: it never applied one)

    @classmethod
    def at(cls, table: str, changelog: str, partition: int, path: Path) -> "LocalCopy | None":
        """The copy in ``path``; None when it cannot be read. A damaged one is moved aside, and Faust rebuilds the
        partition from its changelog (a copy RocksDB found damaged, after a power loss say, had stopped the worker
        at every start, and every camera with it)."""
        try:
            offset = _read(path, OFFSET_KEY, scan=True)
        except Exception as exc:  # rocksdict raises its own errors: a folder without CURRENT, a corrupt file
            if _damaged(exc):
                _set_aside(table, partition, path, exc)
            else:  # not the copy's fault (permissions, no file handles left, a mount away): Faust meets it as it is
                log.warning("table %s partition %d: local copy %s unreadable (%s); left to Faust", table, partition,
                            path, exc)
            return None
        return cls(table, changelog, partition, path, int(offset) if offset is not None else None)

    def read(self, key: bytes) -> bytes | None:
        return _read(self.path, key)

    def mark_applied(self, offset: int) -> None:
        """Record ``offset`` as the last changelog offset this copy applied (as Faust's store writes it)."""
        import rocksdict

        db = rocksdict.Rdict(str(self.path))
        try:
            db[OFFSET_KEY] = str(offset).encode()
        finally:
            db.close()


def _damaged(error: Exception) -> bool:
    """Whether RocksDB found the copy's files damaged (as it words it: "Corruption: block checksum mismatch",
    "Corruption: Sst file size mismatch", "Corruption: CURRENT file corrupted", ...)."""
    return str(error).startswith("Corruption") or "checksum mismatch" in str(error)


def _set_aside(table: str, partition: int, path: Path, error: Exception) -> None:
    """The damaged copy out of Faust's way (beside it, ``.damaged``, for a look; the last one of each partition)."""
    aside = path.with_name(path.name + ".damaged")
    try:
        if aside.exists():
            shutil.rmtree(aside)
        path.rename(aside)
    except OSError as exc:
        log.error("table %s partition %d: local copy %s is damaged (%s), and it cannot be moved aside (%s): remove it "
                  "by hand; the worker rebuilds it from the broker's changelog", table, partition, path, error,
                  exc.strerror or exc)
        return
    log.warning("table %s partition %d: local copy %s is damaged (%s); moved to %s, and the partition is rebuilt from "
                "the broker's changelog", table, partition, path, error, aside.name)


def _read(path: Path, key: bytes, scan: bool = False) -> bytes | None:
    """``key``'s value in the copy at ``path``; ``scan``: every block read first, so that one damaged in place (its
    checksum off, the file's size right) raises here, not in Faust's reads mid-run (a table's copies are megabytes)."""
    import rocksdict

    db = rocksdict.Rdict(str(path), access_type=rocksdict.AccessType.read_only())
    try:
        if scan:
            blocks = db.iter()
            blocks.seek_to_first()
            while blocks.valid():
                blocks.next()
            blocks.status()  # raises what ended the scan (rocksdict's iterators otherwise just stop)
            del blocks
        return db.get(key)
    finally:
        db.close()


def local_copies(app, partitions: int) -> list[LocalCopy]:
    """The table partitions this worker has a readable RocksDB copy of in its data dir.

    Call it in the worker's own event loop (the app's first start does): a table's store binds the app
    to the current loop, and one that is closed later would leave Faust without a loop.
    """
    copies = []
    for name, table in app.tables.items():
        store = table.data
        for partition in range(partitions):
            path = store.partition_path(partition)
            copy = LocalCopy.at(name, table.changelog_topic.get_topic_name(), partition, path) if path.exists() else None
            if copy is not None:
                copies.append(copy)
    return copies


@dataclass(frozen=True)
class ChangelogEnds:
    """What the broker says of the changelogs: the topics it has, and the end offset of each partition it told."""

    topics: frozenset[str]
    ends: dict[tuple[str, int], int]

    def end(self, topic: str, partition: int) -> int | None:
        """The offset the next record of ``topic[partition]`` would get; 0 for a topic the broker does not have,
        None when the topic is there but this partition's end is unknown (nothing is judged on that)."""
        if topic not in self.topics:
            return 0
        return self.ends.get((topic, partition))


async def changelog_ends(bootstrap: str, topics: Iterable[str]) -> ChangelogEnds:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        # Metadata of every topic, asked for now: a consumer's own cache holds only the topics it asked about,
        # none right after it starts (Kafka answers an empty topic list with no topics; Tansu with all of them).
        cluster = await consumer._client.fetch_all_metadata()
        existing = frozenset(cluster.topics())
        tps = [TopicPartition(t, p) for t in set(topics) & existing for p in cluster.partitions_for_topic(t) or ()]
        ends = await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()
    return ChangelogEnds(existing, {(tp.topic, tp.partition): offset for tp, offset in ends.items()})


def stale(copies: list[LocalCopy], broker: ChangelogEnds) -> list[tuple[LocalCopy, int]]:
    """The copies whose applied offset the changelog no longer reaches: (copy, changelog end)."""
    found = []
    for copy in copies:
        end = broker.end(copy.changelog, copy.partition)
        if copy.applied is not None and end is not None and copy.applied >= end:
            found.append((copy, end))
    return found


async def records_at(bootstrap: str, offsets: dict[tuple[str, int], int], timeout_s: float = 5.0):
    """(topic, partition) -> the record the broker has at that offset (or the first after it, when compaction took
    it); partitions that gave nothing within ``timeout_s`` are left out."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    if not offsets:
        return {}
    # "earliest": an offset retention already deleted gives the first record left (which tells nothing), not a wait.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100,
                                auto_offset_reset="earliest")
    await consumer.start()
    found = {}
    try:
        consumer.assign([TopicPartition(t, p) for t, p in offsets])
        for (topic, partition), offset in offsets.items():
            consumer.seek(TopicPartition(topic, partition), offset)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(found) < len(offsets) and asyncio.get_running_loop().time() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                found.setdefault((tp.topic, tp.partition), records[0])
                consumer.pause(tp)
    finally:
        await consumer.stop()
    return found


def from_another_log(copies: list[LocalCopy], records: dict) -> list[LocalCopy]:
    """Copies that hold a different value for the key of the changelog record they say they applied last.

    A copy from the same log holds exactly that record's value for its key (nothing after it was applied);
    one built from a log that was lost, whose new log has grown past the copy's offset, does not, nor does
    one whose worker was killed after writing the key again but before that write reached the broker. A record
    compaction removed (the broker gave a later one) tells nothing, and the copy is kept.
    """
    found = []
    for copy in copies:
        record = records.get((copy.changelog, copy.partition))
        if record is not None and record.offset == copy.applied and copy.read(record.key) != record.value:
            found.append(copy)
    return found


async def drop_stale_copies(copies: list[LocalCopy], bootstrap: str) -> list[LocalCopy]:
    """Delete the ``copies`` the broker's changelogs do not back (before Faust opens them); returns them.

    A copy the broker's figure calls ahead but the log itself reaches is kept and marked back to that figure."""
    if not copies:
        return []
    from aiokafka import TopicPartition

    from its_faust.topic_reader import read_log_ends

    ahead = stale(copies, await changelog_ends(bootstrap, [c.changelog for c in copies]))
    log_ends = await read_log_ends(bootstrap, [TopicPartition(c.changelog, c.partition) for c, end in ahead if end > 0])
    dropped, marked_back = [], {}
    for copy, end in ahead:
        log_end = log_ends.get(TopicPartition(copy.changelog, copy.partition), end)
        if copy.applied < log_end:  # the broker's figure fell short: the log has the copy's records
            marked_back[copy] = end
            continue
        log.warning(
            "table %s partition %d: the local copy applied changelog offset %d, but %s[%d] ends at %d on the broker "
            "(it lost the log: an in-memory broker restarted, or the topic was recreated); the copy is dropped and "
            "the partition rebuilt from the broker%s", copy.table, copy.partition, copy.applied, copy.changelog,
            copy.partition, log_end, _WHAT_IS_LOST.get(copy.table, ""),
        )
        shutil.rmtree(copy.path)
        dropped.append(copy)
    rest = [c for c in copies if c not in dropped and c.applied is not None]
    records = await records_at(bootstrap, {(c.changelog, c.partition): c.applied for c in rest})
    for copy in from_another_log(rest, records):
        log.warning(
            "table %s partition %d: the local copy does not hold what %s[%d] has at offset %d, the last record it "
            "applied: it holds writes the log does not (a worker killed before they reached the broker, or a copy "
            "built from a log the broker lost, whose new one has grown past it); the copy is dropped and the "
            "partition rebuilt from the broker", copy.table, copy.partition, copy.changelog,
            copy.partition, copy.applied,
        )
        shutil.rmtree(copy.path)
        dropped.append(copy)
        marked_back.pop(copy, None)
    for copy, end in marked_back.items():
        copy.mark_applied(end - 1)
        log.info("table %s partition %d: local copy kept (it applied offset %d of %s[%d]; the broker gives the end "
                 "as %d, short of its last batch); marked as applied to %d, so the records after are applied again",
                 copy.table, copy.partition, copy.applied, copy.changelog, copy.partition, end, end - 1)
    return dropped


__all__ = ["ChangelogEnds", "LocalCopy", "changelog_ends", "drop_stale_copies", "from_another_log", "local_copies",
           "records_at", "stale"]
