"""Blocking calls run one at a time on a daemon thread of their own: a camera's OpenCV calls (open, read,
encode), the wait for a broker that is not up yet.

Why not ``asyncio.to_thread``: a call blocked there (a stream that stalls, a host that does not answer:
FFmpeg waits up to its timeout; a broker not up) holds a thread of the loop's default executor, and
``asyncio.run`` waits for those threads as it ends, so a Ctrl-C or SIGTERM took up to 30 s to end
``ingest``, saying nothing meanwhile. A daemon thread is left to the process's exit; the reader it was
blocked in is closed already, and releases its capture when the call returns.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable


class DaemonThread:
    def __init__(self, name: str):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., Any], *args, orphan: Callable[[Any], None] | None = None) -> Any:
        """``fn(*args)`` on the thread; awaited as ``asyncio.to_thread`` is: a cancel leaves the call running, and
        ``orphan`` is then given what it returns (a reader opened for nobody: closed)."""
        if self._closed:
            raise RuntimeError(f"the daemon thread {self._thread.name!r} is closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls.put((loop, future, fn, args, orphan))
        return await future

    def close(self) -> None:
        """The thread ends after the call it is in, if any (not waited for)."""
        self._closed = True
        self._calls.put(None)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, future, fn, args, orphan = call
            if future.cancelled():  # (read across threads: at worst the call runs, as to_thread's would)
                continue
            try:
                outcome = (_settle, future, fn(*args), None, orphan)
            except StopIteration:  # a future cannot take it (the awaiting task would wait for ever)
                outcome = (_settle, future, None, RuntimeError(f"{fn!r} raised StopIteration"), None)
            except BaseException as exc:  # handed to the awaiting task, as to_thread does
                outcome = (_settle, future, None, exc, None)
            try:
                loop.call_soon_threadsafe(*outcome)
            except RuntimeError:  # the loop closed meanwhile: nobody waits for it
                pass


def _settle(future: asyncio.Future, result: Any, exc: BaseException | None,
            orphan: Callable[[Any], None] | None) -> None:
    if future.cancelled():
        if orphan is not None and exc is None:
            orphan(result)
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
