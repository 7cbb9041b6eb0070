"""Live per-camera actors, checked against the table that holds their state.

Decoding a camera's snapshot for every frame would waste time, so the live
actor is kept; it is used only while the table still holds exactly the bytes
this worker wrote. A camera that moved away and came back (or whose state was
restored from the changelog) is rebuilt from the table.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

A = TypeVar("A")


class ActorCache(Generic[A]):
    def __init__(self, table, build: Callable[[str, bytes | None], A], snapshot: Callable[[A], bytes]):
        self.table = table
        self._build = build
        self._snapshot = snapshot
        self._live: dict[bytes, tuple[A, bytes | None]] = {}

    def get(self, key: bytes, camera_id: str) -> A:
        stored = self.table.get(key)
        cached = self._live.get(key)
        if cached is not None and cached[1] == stored:
            return cached[0]
        actor = self._build(camera_id, stored)
        self._live[key] = (actor, stored)
        return actor

    def forget(self, key: bytes) -> None:
        """Drop the live actor so the next message starts again from the table."""
        self._live.pop(key, None)

    def save(self, key: bytes, actor: A) -> None:
        """Write the actor's state; Faust puts it in the partition of the event being processed."""
        value = self._snapshot(actor)
        self.table[key] = value
        self._live[key] = (actor, value)
