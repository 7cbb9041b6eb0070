"""Run a bounded number of jobs at once and hand their results back in submission order.

The detection stage uses it to keep every inference slot busy (the next frames are
decoded and inferred while earlier ones are still running) without ever letting a
camera's frames overtake each other: the tracker downstream treats a frame whose seq
is not above the last one it applied as a redelivery, so order is part of correctness.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable, Callable, Generic, TypeVar

T = TypeVar("T")  # what the caller attaches to a job (its events, its frames)
R = TypeVar("R")  # what the job returns


class InOrderJobs(Generic[T, R]):
    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._running = asyncio.Semaphore(limit)
        # Done jobs wait here for the ones before them; bounded, so a slow head job
        # holds back the stream instead of piling up results.
        self._queue: asyncio.Queue[tuple[T, asyncio.Future]] = asyncio.Queue(maxsize=2 * limit)

    async def submit(self, start: Callable[[], Awaitable[R]], tag: T) -> None:
        """Call ``start()`` once fewer than ``limit`` jobs run; waits (back-pressure) until then."""
        await self._running.acquire()
        try:
            future = asyncio.ensure_future(start())
        except BaseException:
            self._running.release()
            raise
        future.add_done_callback(lambda _: self._running.release())
        await self._queue.put((tag, future))

    async def results(self) -> AsyncIterator[tuple[T, R | BaseException]]:
        """``(tag, result)`` per job in submission order; a job's exception is its result."""
        while True:
            tag, future = await self._queue.get()
            try:
                result: R | BaseException = await future
            except Exception as exc:
                result = exc
            yield tag, result

    def pending(self) -> int:
        """Jobs submitted whose results have not been taken yet."""
        return self._queue.qsize()
