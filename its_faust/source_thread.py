"""A camera's blocking OpenCV calls (open, read, encode), run one at a time on a daemon thread of its own.

Why not ``asyncio.to_thread``: a call blocked in OpenCV (a stream that stalls, a host that does not
answer: FFmpeg waits up to its timeout, 30 s by default) holds a thread of the loop's default
executor, and ``asyncio.run`` waits for those threads as it ends, so a Ctrl-C or SIGTERM took up to
30 s to end ``ingest``, saying nothing meanwhile. A daemon thread is left to the process's exit; the
reader it was blocked in is closed already, and releases its capture when the call returns.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable


class SourceThread:
    def __init__(self, name: str):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., Any], *args) -> Any:
        """``fn(*args)`` on the thread; awaited as ``asyncio.to_thread`` is (a cancel leaves the call running)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls.put((loop, future, fn, args))
        return await future

    def close(self) -> None:
        """The thread ends after the call it is in, if any (not waited for)."""
        self._calls.put(None)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, future, fn, args = call
            try:
                outcome = (_settle, future, fn(*args), None)
            except BaseException as exc:  # handed to the awaiting task, as to_thread does
                outcome = (_settle, future, None, exc)
            try:
                loop.call_soon_threadsafe(*outcome)
            except RuntimeError:  # the loop closed meanwhile: nobody waits for it
                pass


def _settle(future: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
