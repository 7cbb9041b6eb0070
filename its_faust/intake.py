"""Each partition's messages into an agent exactly once and in log order, rebalances or not.

A camera actor must see its camera's records in order: the tracker takes a frame whose
seq is not above the last one it applied for a redelivery, so a frame that arrives after
a later one is lost. Around rebalances Faust 0.15 can drop a message inside the consumer
and deliver the ones after it (see :mod:`its_faust.kafka_transport`). The intake notices:
our topics have no holes in their offsets, so an offset above the one expected means a
message went missing. It then rewinds the partition to the missing offset and lets
nothing of that partition through until it comes; copies of messages already let
through (a re-read after a seek) are dropped. Only admitted messages count as done when
acknowledged (the transport's consumer checks), so a dropped one is never committed.

The expected offset starts, in every consumer generation, where the consumer was sought
to (the committed offset).
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

REWIND_AGAIN_AFTER_S = 5.0  # a rewind whose message has not come by then is asked for again


class Intake:
    def __init__(self, app, stage: str, topics: list[str]):
        self.app = app
        self.stage = stage
        self._generation: int | None = None
        self._next: dict = {}  # tp -> offset the next admitted message must have
        self._rewound_at: dict = {}  # tp -> when we last sought it back
        self.rewinds = 0
        self.consumer.guarded_topics.update(topics)

    @classmethod
    def for_stream(cls, app, stage: str, stream) -> "Intake":
        return cls(app, stage, list(getattr(stream.channel, "topics", ())))

    @property
    def consumer(self):
        return self.app.consumer

    async def admit(self, event) -> bool:
        """Whether the agent should process this event now (False: drop it, it comes again or came already)."""
        message = event.message
        generation = self.app.consumer_generation_id
        if message.generation_id != generation:
            return False  # from before the last rebalance: it is read again from the committed offset
        if generation != self._generation:
            self._generation = generation
            self._next.clear()
            self._rewound_at.clear()
        tp, offset = message.tp, message.offset
        expected = self._next.get(tp)
        if expected is None:
            committed = self.consumer._committed_offset.get(tp)  # where this generation was sought to
            expected = committed if committed is not None else offset
            self.consumer.generation_start.setdefault(tp, expected)
        if offset < expected:
            return False  # a copy of a message already let through
        if offset > expected:
            await self._rewind(tp, expected, offset)
            return False
        self._rewound_at.pop(tp, None)
        self._next[tp] = offset + 1
        self.consumer.admitted.add(message)
        return True

    async def _rewind(self, tp, expected: int, got: int) -> None:
        now = time.monotonic()
        asked = self._rewound_at.get(tp)
        if asked is not None and now - asked < REWIND_AGAIN_AFTER_S:
            return  # already asked: the messages in between are on their way
        self._rewound_at[tp] = now
        self.rewinds += 1
        log.warning(
            "%s: %s[%s] offset %s arrived while %s was expected (the consumer dropped messages): re-reading from %s",
            self.stage, tp.topic, tp.partition, got, expected, expected,
        )
        # seek_wait runs in the consumer's thread; Consumer.seek would touch aiokafka from this one.
        try:
            await self.consumer.seek_wait({tp: expected})
        except Exception as exc:  # asked again on the next out-of-order message
            log.warning("%s: re-reading %s[%s] from %s failed: %r", self.stage, tp.topic, tp.partition, expected, exc)
