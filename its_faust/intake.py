"""Each partition's messages into an agent exactly once and in log order, rebalances or not.

A camera actor must see its camera's records in order: the tracker takes a frame whose
seq is not above the last one it applied for a redelivery, so a frame that arrives after
a later one is lost. Around rebalances Faust 0.15 can drop a message inside the consumer
and deliver the ones after it (see :mod:`its_faust.kafka_transport`). The intake notices:
an offset above the one expected means a message went missing. It then re-reads the
partition from the missing offset and lets nothing of that partition through until it
comes; copies of messages already let through (a re-read after a seek) are dropped.
What it refuses is released (nothing waits for it, it does not count as done), and only
what it admits can count as done when the agent acknowledges it, so a dropped message is
never committed.

The expected offset starts, in every consumer generation, where the consumer was sought
to (the committed offset, or the log's start). Our own producers leave no holes in the
offsets, but retention (the log now starts above the expected offset: moved on at once)
or a transactional producer (its commit markers) can: when three re-reads from an
offset, 2 s apart, still never deliver it, there is no message there and the intake
moves on. So a transactional producer on these topics costs ~6 s per transaction. A record batch
the consumer set aside as unreadable (:mod:`its_faust.unreadable_batches`) is a hole known
at once: dead-lettered by its offsets and moved past, with no re-read.
A re-read counts as failed only once it is seen to have come (a copy of a message
from before it was asked for): messages the agent's buffer already held keep coming
first, and a backlog of more than 6 s of them had made a message still on its way
look missing, and be committed unprocessed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from its_faust.unreadable_batches import UnreadableBatch, covering

log = logging.getLogger(__name__)

REWIND_AGAIN_AFTER_S = 2.0  # a re-read whose message has not come by then is asked for again
REWINDS_BEFORE_HOLE = 3  # re-reads from one offset that never deliver it: the log has no message there


@dataclass
class _Rewind:
    expected: int
    asked_at: float
    attempts: int  # re-reads that came, from above ``expected``
    lowest_seen: int  # lowest offset above ``expected`` delivered since
    highest_seen: int  # highest offset delivered since
    asked_up_to: int = -1  # ``highest_seen`` at the last ask: a copy at or below it is of the re-read
    came: bool = False  # a message of the last re-read has come


class Intake:
    def __init__(self, app, stage: str, topics: list[str]):
        self.app = app
        self.stage = stage
        self._generation: int | None = None
        self._next: dict = {}  # tp -> offset the next admitted message must have
        self._rewinds: dict = {}  # tp -> _Rewind in progress
        self.rewinds = 0
        self.consumer.guarded_topics.update(topics)

    @classmethod
    def for_stream(cls, app, stage: str, stream) -> "Intake":
        return cls(app, stage, list(getattr(stream.channel, "topics", ())))

    @property
    def consumer(self):
        return self.app.consumer

    async def admit(self, event) -> bool:
        """Whether the agent should process this event now; if not, it is released (it comes again or came already)."""
        admitted = await self._decide(event.message)
        if admitted:
            self.consumer.admitted.add(event.message)
        else:
            self.consumer.release(event.message)
        return admitted

    async def _decide(self, message) -> bool:
        generation = self.app.consumer_generation_id
        if message.generation_id != generation:
            return False  # from before the last rebalance: it is read again from the committed offset
        if generation != self._generation:
            self._generation = generation
            self._next.clear()
            self._rewinds.clear()
        tp, offset = message.tp, message.offset
        expected = self._next.get(tp)
        if expected is None:
            expected = self.consumer.next_to_commit(tp)  # where this generation was sought to
            if expected is None:
                expected = offset
        if offset < expected:
            return False  # a copy of a message already let through
        unreadable = covering(tp.topic, tp.partition, expected) if offset > expected else None
        if unreadable is not None:  # set aside by the consumer: no re-read brings it
            await self._dead_letter(unreadable)
            if not await self._skip(tp, expected, unreadable.end, offset,
                                    f"a record batch that cannot be read: {unreadable.reason}"):
                return False
        elif offset > expected and not await self._hole_is_real(tp, expected, offset):
            return False
        self._rewinds.pop(tp, None)
        self._next[tp] = offset + 1
        return True

    async def _hole_is_real(self, tp, expected: int, offset: int) -> bool:
        """Re-read from ``expected`` (False), or, once re-reads kept starting above it, take the hole (True)."""
        now = time.monotonic()
        rewind = self._rewinds.get(tp)
        if rewind is None or rewind.expected != expected:
            start = await self._log_start(tp)
            if start is not None and start > expected:  # retention removed them: nothing to wait for
                return await self._skip(tp, expected, start, offset, "removed by retention")
            rewind = self._rewinds[tp] = _Rewind(expected, asked_at=-1e9, attempts=0, lowest_seen=offset,
                                                 highest_seen=offset)
        rewind.lowest_seen = min(rewind.lowest_seen, offset)
        rewind.highest_seen = max(rewind.highest_seen, offset)
        rewind.came = rewind.came or offset <= rewind.asked_up_to
        if now - rewind.asked_at < REWIND_AGAIN_AFTER_S:
            return False  # already asked: the messages in between are on their way
        if rewind.came:  # the last re-read came, and started above ``expected``
            rewind.attempts += 1
            if rewind.attempts >= REWINDS_BEFORE_HOLE:
                return await self._skip(tp, expected, rewind.lowest_seen, offset, "never delivered: transaction markers?")
        # Not come yet (messages buffered before it still coming first): asked again, not counted as failed.
        rewind.asked_at, rewind.asked_up_to, rewind.came = now, rewind.highest_seen, False
        self.rewinds += 1
        log.warning(
            "%s: %s[%s] offset %s arrived while %s was expected (the consumer dropped messages): re-reading from %s",
            self.stage, tp.topic, tp.partition, offset, expected, expected,
        )
        await self._seek(tp, expected)
        return False

    async def _skip(self, tp, expected: int, resume: int, offset: int, why: str) -> bool:
        """No messages at ``expected`` to ``resume - 1``: count them done and go on from ``resume``."""
        log.warning("%s: %s[%s] has no message at offsets %s-%s (%s): going on from %s",
                    self.stage, tp.topic, tp.partition, expected, resume - 1, why, resume)
        self.consumer.count_missing_as_done(tp, expected, resume)
        self._rewinds.pop(tp, None)
        self._next[tp] = resume
        if offset == resume:
            return True
        if offset < resume:
            return False  # (retention) an old copy
        return await self._hole_is_real(tp, resume, offset)  # the one at ``resume`` was refused: read it again

    async def _dead_letter(self, batch: UnreadableBatch) -> None:
        """The batch, named (its bytes are not records), on the dead-letter topic."""
        from its_faust import topics  # (the app's topics import this module's users)
        from its_faust.codecs import encode
        from schemas import DeadLetter

        letter = DeadLetter(stage=self.stage, topic=batch.topic, partition=batch.partition, offset=batch.first, key=None,
                            value=b"", reason=f"{batch}: skipped", failed_at=time.time())
        await topics.dead_letters.send(key=None, value=encode(letter))

    async def _log_start(self, tp) -> int | None:
        try:
            return (await self.consumer.earliest_offsets(tp)).get(tp)
        except Exception as exc:
            log.debug("%s: no log start for %s: %r", self.stage, tp, exc)
            return None

    async def _seek(self, tp, offset: int) -> None:
        # seek_wait runs in the consumer's thread; Consumer.seek would touch aiokafka from this one.
        try:
            await self.consumer.seek_wait({tp: offset})
        except Exception as exc:  # asked again on a later out-of-order message
            log.warning("%s: re-reading %s[%s] from %s failed: %r", self.stage, tp.topic, tp.partition, offset, exc)
