"""Write-behind for the camera actors: outputs leave per frame, state is written per interval.

The tracker and analytics actors used to write a camera's whole state to its table
after every frame (tracker ~10 KB, analytics ~30 KB on a configured camera: a changelog
record and a RocksDB write each time) and to wait for each output's acknowledgement
before taking the next frame, which also capped a worker at about 1000 / (linger + 3)
frames per second in each stage. As Kafka Streams does with its state-store caches, the
actors now keep their state live and a flush, every ``interval_s`` (or ``max_frames``):

1. waits until the broker holds every output of the frames since the last flush (a frame whose
   output the broker refused for what it is, such as a timestamp out of the topic's range, is
   dead-lettered with why: :mod:`its_faust.delivery`),
2. writes each changed camera's state to its table once (in the partition of its latest frame),
3. acknowledges those frames, so that the next offset commit takes them.

No frame is processed during a flush (it takes a few ms), so a written state is exactly
the state after the frames acknowledged with it, and never ahead of an output that could
still be lost. A worker that dies, or a partition that moves, between two flushes leaves
the table at the last flush and the frames after it unacknowledged: their next owner
applies them again from that state and emits the same outputs again (same seq, same
content), which readers downstream take once. ``interval_s = 0`` flushes after every frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

from faust import streams as faust_streams

from its_faust.background import tied_to_current_task
from its_faust.delivery import Sent, dead_letter_if_refused, refusal, send, sent_to_dead_letters
from tables.actor_cache import ActorCache
from tables.storage import GivenUp, written

log = logging.getLogger(__name__)

A = TypeVar("A")


@dataclass
class _Changed:
    actor: Any
    event: Any  # the camera's latest frame: its state is written to that frame's partition
    inputs: list = field(default_factory=list)  # what was applied since the last flush (to apply again after a failure)


@dataclass
class _Batch:
    generation: int | None = None
    started: float = 0.0
    events: list = field(default_factory=list)
    sent: list = field(default_factory=list)  # (event, [Sent]): each frame's outputs on their way
    changed: dict = field(default_factory=dict)  # key -> _Changed


class Step:
    """One frame in a checkpointed stage: the actor to use, the frame's records, and what it changed."""

    def __init__(self, checkpoints: "Checkpoints", event):
        self._checkpoints = checkpoints
        self.event = event
        self.sent: list[Sent] = []  # the frame's records on their way
        self.change: tuple | None = None

    def actor(self, camera_id: str):
        return self._checkpoints.cache.get(self.event.key, camera_id)

    async def send(self, topic, value: bytes, timestamp: float | None = None) -> None:
        """Send one of the frame's records, keyed by the camera.

        The first waits until the camera's records of its previous frame are on the broker
        (at a camera's pace they are, long since): were one of them lost while a later one
        landed, readers that keep the highest seq they applied would never take it when it
        comes again. A lost one fails this frame, and the agent (one the broker refused is dead-lettered with
        its frame at the next flush: sent again it would be refused again)."""
        if not self.sent:
            await self._checkpoints._previous_records_delivered(self.event.key)
        self.sent.append(await send(self.event, topic, value, timestamp))

    async def dead_letter(self, reason: str) -> None:
        """The frame to the dead-letter topic: it is acknowledged once the dead letter is delivered."""
        self.sent.append(await sent_to_dead_letters(self._checkpoints.stage, self.event, reason))

    def changed(self, actor, applied) -> None:
        """The frame moved ``actor`` on by applying ``applied`` (kept to apply again after a failure)."""
        self.change = (actor, applied)


class Checkpoints(Generic[A]):
    def __init__(self, app, stream, cache: ActorCache[A], stage: str, *, interval_s: float, max_frames: int = 256):
        self.app = app
        self.stream = stream
        self.cache = cache
        self.stage = stage
        self.interval_s = interval_s
        self.max_frames = max_frames
        self._lock = asyncio.Lock()
        self._open = _Batch()
        self._latest_records: dict[bytes, tuple] = {}  # per camera: its latest frame and its records on their way
        self._partition_of: dict[bytes, int] = {}  # per camera seen: its partition
        self._cameras_in: int | None = None  # the consumer generation those are checked against
        self._timer: asyncio.Future | None = None
        self._broken = False

    def start(self) -> "Checkpoints[A]":
        """Flush in the background too, so the last frames before a pause are not left waiting; a flush
        that fails there fails the agent, as it would in the agent's own task."""
        if self.interval_s > 0:
            self._timer = tied_to_current_task(self._flush_periodically(), f"{self.stage}: writing state",
                                               on_failure=self._mark_broken)
        return self

    async def __aenter__(self) -> "Checkpoints[A]":
        return self.start()

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self, timeout_s: float = 5.0) -> None:
        """The agent stops: what it did since the last flush is written if it can be (a worker shutting
        down); otherwise (the agent failed, the broker is gone) its frames stay unacknowledged and come again."""
        if self._timer is not None:
            self._timer.cancel()
        if not self._broken:
            try:
                await asyncio.wait_for(self.flush(), timeout_s)
            except Exception as exc:
                log.info("%s: last state flush not done (%r); its frames will be applied again", self.stage, exc)
        self._broken = True

    @asynccontextmanager
    async def step(self, event):
        """Process one frame inside this block: no flush cuts into it."""
        async with self._lock:
            self._drop_if_rebalanced()
            self._forget_cameras_moved_away(event)
            step = Step(self, event)
            try:
                yield step
            except BaseException:
                self._broken = True  # the agent fails; what it did since the last flush is done again
                raise
            self._add(step)
        if self._due():
            await self.flush()

    @asynccontextmanager
    async def between_frames(self):
        """Work on the actors that no frame brings (closing a silent camera): no frame, and no flush, cuts
        into it. Its state is written with :meth:`write_between_frames`."""
        async with self._lock:
            yield

    async def write_between_frames(self, key: bytes, actor, event, sent: list[Sent], generation: int | None) -> None:
        """Inside ``between_frames``: ``actor``'s state after work no frame brought, written once the broker holds
        what it sent (``sent``), in the partition of ``event`` (its camera's last frame). Not written if the
        partition may have moved since ``generation`` (its next owner does the work again), nor if the
        flushes have stopped; a camera with frames since the last flush is written by the next one, with
        them. A record the broker refused is logged: no input of this work can be dead-lettered."""
        refused = await refusal(self.stage, event, sent)
        if refused is not None:
            log.error("%s: camera %r: %s", self.stage, key, refused)
        if self._broken or generation != self.app.consumer_generation_id or self.app.rebalancing:
            return
        if key in self._open.changed:
            return  # (the same live actor: the next flush writes it)
        moved = lambda: generation != self.app.consumer_generation_id or self.app.rebalancing  # noqa: E731
        with _in_partition_of(event), contextlib.suppress(GivenUp):  # (its next owner does the work again)
            await written(lambda: self.cache.save(key, actor), self.stage, give_up=moved)

    def restart_camera(self, key: bytes, camera_id: str, apply: Callable[[A, Any], Any]) -> None:
        """After a frame failed half-way: the camera's actor again from its table, with the frames
        applied since the last flush applied again (their outputs are out already). If that
        fails too, the agent fails: its frames since the last flush are then read again."""
        self.cache.forget(key)
        changed = self._open.changed.pop(key, None)
        if changed is None:
            return
        try:
            actor = self.cache.get(key, camera_id)
            for applied in changed.inputs:
                apply(actor, applied)
        except Exception:
            self._broken = True  # acknowledging those frames with an older state would lose them
            raise
        self._open.changed[key] = _Changed(actor, changed.event, changed.inputs)

    async def flush(self) -> None:
        async with self._lock:
            await self._flush_open()

    async def _previous_records_delivered(self, key: bytes) -> None:
        latest = self._latest_records.pop(key, None)
        if latest is not None:
            await refusal(self.stage, *latest)  # (a refused one is the flush's to dead-letter)

    def looked_at(self, key: bytes, partition: int, keep: bool) -> None:
        """A camera's actor was read from the table between frames (by the closer's look at the cameras taken
        over): unless ``keep``, it is not held live (a worker would hold every camera of its partitions), but
        for one with frames applied since the last flush; a kept one goes when its partition moves away."""
        if keep:
            self._partition_of[key] = partition
        elif key not in self._open.changed:
            self.cache.forget(key)

    def _forget_cameras_moved_away(self, event) -> None:
        """After a rebalance, the live actors and records of the cameras whose partitions went elsewhere are
        dropped: kept, a worker would end up holding every camera it ever owned (should one come back, its
        actor is built from the table again)."""
        generation, first = self.app.consumer_generation_id, self._cameras_in is None
        if generation == self._cameras_in:
            return
        self._cameras_in = generation
        if first:
            return
        topic = event.message.topic
        held = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}
        for key in [k for k, partition in self._partition_of.items() if partition not in held]:
            del self._partition_of[key]
            self._latest_records.pop(key, None)
            self.cache.forget(key)

    def _add(self, step: Step) -> None:
        self._partition_of[step.event.key] = step.event.message.partition
        batch = self._open
        if not batch.events:
            batch.generation, batch.started = step.event.message.generation_id, time.monotonic()
        batch.events.append(step.event)
        key = step.event.key
        if step.sent:
            batch.sent.append((step.event, step.sent))
            self._latest_records[key] = (step.event, step.sent)
        if step.change is not None:
            actor, applied = step.change
            changed = batch.changed.get(key)
            if changed is None or changed.actor is not actor:
                changed = batch.changed[key] = _Changed(actor, step.event)
            changed.event = step.event
            changed.inputs.append(applied)

    def _due(self) -> bool:
        batch = self._open
        return bool(batch.events) and (
            self.interval_s <= 0
            or len(batch.events) >= self.max_frames
            or time.monotonic() - batch.started >= self.interval_s
        )

    def _drop_if_rebalanced(self) -> None:
        """Frames from before a rebalance are read again from the committed offset (:mod:`its_faust.intake`):
        what the actors did with them is dropped, unwritten."""
        batch = self._open
        if batch.events and batch.generation != self.app.consumer_generation_id:
            log.info("%s: rebalanced; %d frames since the last flush will be applied again", self.stage, len(batch.events))
            for key in batch.changed:
                self.cache.forget(key)
            self._open = _Batch()

    async def _flush_open(self) -> None:
        self._drop_if_rebalanced()
        batch = self._open
        if self._broken or not batch.events:
            return
        try:
            for event, sent in batch.sent:  # every output is on the broker before a state that follows it is written
                await dead_letter_if_refused(self.stage, event, sent)
        except BaseException:
            self._broken = True  # its frames come again, from the last state written: no flush may take them now
            raise
        self._drop_if_rebalanced()  # (Faust waits for this flush before it revokes partitions; in case it did not)
        if self._open is not batch:
            return
        self._open = _Batch()
        moved = lambda: batch.generation != self.app.consumer_generation_id  # noqa: E731
        try:
            for key, changed in batch.changed.items():
                with _in_partition_of(changed.event):  # (a full disk is waited for, holding the stage: tables.storage)
                    await written(lambda: self.cache.save(key, changed.actor), self.stage, give_up=moved)
        except GivenUp:  # rebalanced meanwhile: as _drop_if_rebalanced, the frames come again to their next owner
            for key in batch.changed:
                self.cache.forget(key)
            return
        for event in batch.events:
            await self.stream.ack(event)

    async def _flush_periodically(self) -> None:
        while not self._broken:
            await asyncio.sleep(self.interval_s)
            if self._due():
                await self.flush()

    def _mark_broken(self) -> None:
        self._broken = True  # no last flush on close: the agent's frames since the last one come again


@contextmanager
def _in_partition_of(event):
    """Faust writes a table key to the changelog partition of the event being processed
    (``faust.current_event()``); a flush writes each camera's state with its latest frame as that event."""
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


__all__ = ["Checkpoints", "Step"]
