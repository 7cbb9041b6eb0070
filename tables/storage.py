"""A table write that fails for the machine's sake (the disk full, a folder not writable) waits and is tried again.

Such a failure is no fault of the record being processed: dead-lettered, its crossing was missing
from the counts for good (a disk-full trial: 18 crossings), and a failed state flush stopped the
agent, whose frames then held a worker that was told to stop for minutes. So the stage waits, its
work tried again every few seconds (the writes are idempotent: a count is applied once per
crossing, a state is written whole), with an error logged at once and every minute it goes on;
the events after it wait on the broker, and nothing is lost. When the space is back, it goes on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Callable, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# Stage -> since when its writes have waited for storage (monotonic): the stall watchdog does not take their
# partitions for stuck while they do.
waiting: dict[str, float] = {}

FIRST_RETRY_S = 1.0
LONGEST_RETRY_S = 10.0
TELL_EVERY_S = 60.0


class GivenUp(Exception):
    """The write was no longer wanted while it waited (its partition moved to another worker, which does it again)."""


def storage_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is the machine's storage failing, not a bug or a record: a disk's ``OSError``, or RocksDB's
    "IO error: ..." (rocksdict raises it as a bare ``Exception``; python-rocksdb as ``RocksIOError``)."""
    if isinstance(exc, OSError):  # the disk's errors, not a network's (ConnectionError, TimeoutError are OSErrors too)
        return not isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror, socket.herror))
    return type(exc).__name__ in ("Exception", "RocksIOError") and str(exc).startswith("IO error")


async def written(write: Callable[[], T], stage: str, *, give_up: Callable[[], bool] = lambda: False,
                  first_retry_s: float | None = None) -> T:
    """``write()``'s result; while it fails with :func:`storage_failed`, tried again (1 s, 2 s, ... up to 10 s
    apart) unless ``give_up()`` says it is no longer wanted (:class:`GivenUp`). Any other exception is raised
    at once."""
    delay, failing_since, told_at = first_retry_s or FIRST_RETRY_S, None, 0.0
    try:
        while True:
            if failing_since is not None and give_up():
                log.warning("%s: a table write waiting for storage is left to the partition's next owner", stage)
                raise GivenUp()
            try:
                result = write()
            except Exception as exc:
                if not storage_failed(exc):
                    raise
                failing_since, told_at, delay = await _wait(stage, exc, failing_since, told_at, delay)
                continue
            if failing_since is not None:
                log.warning("%s: its tables are written again, after %.0f s waiting", stage, time.monotonic() - failing_since)
            return result
    finally:
        waiting.pop(stage, None)  # (one write at a time in a stage: its agent's, or its flush under a lock)


async def _wait(stage: str, exc: Exception, failing_since: float | None, told_at: float, delay: float):
    """Said (at once, then every minute), then waited for: (failing since, told at, the next delay)."""
    now = time.monotonic()
    if failing_since is None:
        failing_since = told_at = now
        waiting[stage] = now
        log.error("%s: cannot write its tables (%s); the stage waits and tries again, up to every %.0f s, "
                  "losing nothing: free the disk, or fix the folder (ITS_FAUST_DATA_DIR)", stage, exc, LONGEST_RETRY_S)
    elif now - told_at >= TELL_EVERY_S:
        told_at = now
        log.error("%s: still cannot write its tables after %.0f s (%s)", stage, now - failing_since, exc)
    await asyncio.sleep(delay)
    return failing_since, told_at, min(delay * 2, LONGEST_RETRY_S)
