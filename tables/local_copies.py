"""A worker's local table copies that are ahead of the broker are dropped before the worker starts.

Each table partition's RocksDB copy in the data dir remembers the last changelog offset it
applied. When the broker's changelog ends at or below that offset, the log the copy was
built from is gone: the embedded broker keeps its topics in memory, so restarting it
empties them (as does deleting and recreating topics on Kafka). Faust then stops the
worker with a ConsistencyError ("persisted offset ... is higher than the last offset in
that topic"). The changelog is the tables' source of truth and the local copy only a
cache of it, so such a copy is deleted, with a warning naming it, and the partition is
rebuilt from what the broker has.

What offsets cannot tell: a copy from a lost log whose new log has already grown past the
copy's offset (another worker wrote more records to it before this one started) is kept
and caught up from its offset on, as Faust would. Telling logs apart needs an identity
of the log (Kafka's topic ids), which aiokafka does not read.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)

# Where Faust's RocksDB store keeps a partition's last applied changelog offset (faust.stores.rocksdb.Store).
OFFSET_KEY = b"__faust\0offset__"


@dataclass(frozen=True)
class LocalCopy:
    table: str
    changelog: str
    partition: int
    path: Path

    def applied_offset(self) -> int | None:
        """The last changelog offset this copy applied (None: it never applied one)."""
        import rocksdict

        db = rocksdict.Rdict(str(self.path), access_type=rocksdict.AccessType.read_only())
        try:
            value = db.get(OFFSET_KEY)
        finally:
            db.close()
        return int(value) if value is not None else None


def local_copies(app, partitions: int) -> list[LocalCopy]:
    """The table partitions this worker has a RocksDB copy of in its data dir.

    Call it in the worker's own event loop (the app's first start does): a table's store binds the app
    to the current loop, and one that is closed later would leave Faust without a loop.
    """
    copies = []
    for name, table in app.tables.items():
        store = table.data
        for partition in range(partitions):
            path = store.partition_path(partition)
            if path.exists():
                copies.append(LocalCopy(name, table.changelog_topic.get_topic_name(), partition, path))
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


def stale(copies: list[LocalCopy], broker: ChangelogEnds) -> list[tuple[LocalCopy, int, int]]:
    """The copies whose applied offset the changelog no longer reaches: (copy, applied offset, changelog end).

    A copy that cannot be read is left alone (Faust opens it, or rebuilds it, as it always did).
    """
    found = []
    for copy in copies:
        try:
            applied = copy.applied_offset()
        except Exception as exc:  # rocksdict raises its own errors: a folder without CURRENT, a corrupt file
            log.warning("table %s partition %d: local copy %s unreadable (%s); left to Faust", copy.table, copy.partition,
                        copy.path, exc)
            continue
        end = broker.end(copy.changelog, copy.partition)
        if applied is not None and end is not None and applied >= end:
            found.append((copy, applied, end))
    return found


async def drop_stale_copies(copies: list[LocalCopy], bootstrap: str) -> list[LocalCopy]:
    """Delete the ``copies`` the broker's changelogs no longer reach (before Faust opens them); returns them."""
    if not copies:
        return []
    dropped = []
    for copy, applied, end in stale(copies, await changelog_ends(bootstrap, [c.changelog for c in copies])):
        log.warning(
            "table %s partition %d: the local copy applied changelog offset %d, but %s[%d] ends at %d on the broker "
            "(it lost the log: an in-memory broker restarted, or the topic was recreated); the copy is dropped and "
            "the partition rebuilt from the broker", copy.table, copy.partition, applied, copy.changelog, copy.partition, end,
        )
        shutil.rmtree(copy.path)
        dropped.append(copy)
    return dropped


__all__ = ["ChangelogEnds", "LocalCopy", "changelog_ends", "drop_stale_copies", "local_copies", "stale"]
