"""What the stages dead-lettered, by key and stage."""

from __future__ import annotations

from collections import OrderedDict, deque

from api.topic_ring import Message
from its_faust.codecs import SchemaError
from schemas.dead_letters import DeadLetter


class DeadLetters:
    """What the stages dead-lettered (``its.dead-letters``), as the API has read it: counts by key and stage,
    and the last ``keep_per_key`` letters of each key, without their payloads (``its-faust tail dead-letters``
    shows those). Keys are camera ids, or whatever a producer put there: the ``max_keys`` keys heard
    from most recently are kept."""

    def __init__(self, keep_per_key: int = 20, max_keys: int = 10_000):
        self.keep = keep_per_key
        self.max_keys = max_keys
        self.counts: OrderedDict[str, dict[str, int]] = OrderedDict()  # key -> stage -> letters
        self._recent: dict[str, deque[dict]] = {}

    def apply(self, m: Message) -> None:
        try:
            letter = m.decoded(DeadLetter)
        except SchemaError:
            return
        # Written out where not UTF-8: replaced, two producers' keys b'\\xff' and b'\\xfe' were one key.
        key = letter.key.decode("utf-8", "backslashreplace") if letter.key is not None else ""
        stages = self.counts.setdefault(key, {})
        stages[letter.stage] = stages.get(letter.stage, 0) + 1
        self.counts.move_to_end(key)
        if len(self.counts) > self.max_keys:
            self._recent.pop(self.counts.popitem(last=False)[0], None)
        self._recent.setdefault(key, deque(maxlen=self.keep)).append({
            "stage": letter.stage, "topic": letter.topic, "partition": letter.partition, "offset": letter.offset,
            "key": key, "reason": letter.reason, "failed_at": letter.failed_at, "bytes": len(letter.value),
        })

    def view(self, key: str | None, limit: int) -> dict:
        """The counts of one key (or of the ``limit`` keys heard from most recently) and the newest ``limit``
        letters of those, newest first."""
        keys = [key] if key is not None else list(self.counts)[-limit:]
        recent = sorted((d for k in keys for d in self._recent.get(k, ())), key=lambda d: d["failed_at"], reverse=True)
        return {"counts": {k: dict(self.counts[k]) for k in keys if k in self.counts}, "recent": recent[:limit]}
