"""Background work an agent depends on (its emitter, its periodic state flush) fails the agent with it.

Faust restarts an agent that fails; a background task's failure would otherwise be
an unread exception while the agent went on without it, its frames unacknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger(__name__)


def tied_to_current_task(work: Awaitable, what: str, on_failure: Callable[[], None] = lambda: None) -> asyncio.Future:
    """Run ``work`` in the background; if it fails, log ``what`` failed, call ``on_failure`` and cancel
    the task that started it (the agent), so that it is restarted and its frames come again."""
    owner = asyncio.current_task()
    background = asyncio.ensure_future(work)

    def fail_owner(done: asyncio.Future) -> None:
        if done.cancelled() or done.exception() is None:
            return
        log.error("%s failed (%r); restarting the agent", what, done.exception())
        on_failure()
        if owner is not None and not owner.done():
            owner.cancel()

    background.add_done_callback(fail_owner)
    return background
