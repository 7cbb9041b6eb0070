"""Each worker reports itself on ``its.workers`` every ``worker_status_interval_s``, and once as it stops.

What it holds (partitions), what it runs (the model), what it did (frames in and
tracked, taken from Faust's own monitor) and what waits for it (frames on its
partitions not yet committed); also at once after each rebalance, so that readers
see partitions move within a moment. The API turns these into ``/api/v1/workers`` and
the workers line of ``/ready``; a worker silent for three intervals is gone
(killed, crashed, cut off or frozen), one that said ``stopped`` left cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from schemas.workers import WorkerStatus

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"  # an exec'd restart keeps its pid, and so its id
STARTED_AT = time.time()
STOP_REPORT_TIMEOUT_S = 2.0


class StatusReporter:
    def __init__(self, app, settings):
        self.app = app
        self.settings = settings
        self.interval_s = settings.worker_status_interval_s
        self._last_tracked: tuple[int, float] | None = None  # (frames tracked, monotonic time) at the last report
        self.pending: set[asyncio.Task] = set()  # reports sent from tasks of their own

    def status(self, state: str | None = None) -> WorkerStatus:
        app, consumer, monitor = self.app, self.app.consumer, self.app.monitor
        frames_topic, tracks_topic = self.settings.topic("frames"), self.settings.topic("tracks")
        # A stopped worker holds nothing (its consumer has left the group by then).
        owned = [] if state == "stopped" else sorted(tp for tp in consumer.assignment() if tp.topic == frames_topic)
        waiting = 0
        for tp in owned:
            committed = consumer._committed_offset.get(tp)  # Faust's own bookkeeping (no public accessor)
            highwater = consumer.highwater(tp)
            if committed is not None and highwater is not None:
                waiting += max(0, highwater - committed)
        tracked = monitor.messages_sent_by_topic[tracks_topic]
        now = time.monotonic()
        fps = 0.0
        if self._last_tracked is not None and now > self._last_tracked[1]:
            fps = max(0, tracked - self._last_tracked[0]) / (now - self._last_tracked[1])
        self._last_tracked = (tracked, now)
        return WorkerStatus(
            worker=WORKER_ID,
            state=state or ("recovering" if app.in_recovery or getattr(app, "rebalancing", False) else "running"),
            at=time.time(),
            started_at=STARTED_AT,
            interval_s=self.interval_s,
            partitions=[tp.partition for tp in owned],
            model=_loaded_model(),
            frames_in=monitor.messages_received_by_topic[frames_topic],
            frames_tracked=tracked,
            fps=round(fps, 2),
            frames_waiting=waiting,
        )

    async def report(self, state: str | None = None) -> None:
        from its_faust import topics
        from its_faust.broker import BrokerError, wait_reachable
        from its_faust.codecs import encode

        # Made first, so that its time is when its state held: of two reports sent from tasks side by side
        # (a rebalance's start and end), readers keep the later-made one whichever lands last.
        status = self.status(state)
        try:
            # Only to a broker that answers: a record sent to one that is gone stays in the producer's
            # buffer, and Faust's flush at shutdown would then wait for it (a worker that never stops).
            await asyncio.to_thread(wait_reachable, self.settings.broker, 0.5)
        except BrokerError:
            log.debug("worker status: broker not answering, report skipped")
            return
        try:
            await topics.workers.send(key=WORKER_ID.encode(), value=encode(status))
        except Exception as exc:  # a report is worth less than the work: never let it stop the worker
            log.warning("worker status: not sent (%r)", exc)


def last_state(crash_reason: BaseException | None, settings) -> str | None:
    """What a worker stopping on ``crash_reason`` (None: asked to stop) reports last: "stopped" when it leaves
    cleanly; "recovering" when it starts again in this process (its broker lost its logs: it said "stopped"
    until it ran again); None, no report, when it crashed: silent, it reads as gone, as a worker killed does (it
    had read "stopped", left cleanly, and /ready and the dashboard had said nothing was wrong)."""
    from its_faust.worker import starts_again

    if starts_again(crash_reason, settings):
        return "recovering"
    return "stopped" if crash_reason is None else None


def _loaded_model():
    """The detector's model, if this worker has loaded it (never loads it: that takes seconds)."""
    import sys

    detect = sys.modules.get("agents.detect")
    return detect.loaded_model() if detect is not None else None


def install(app, settings) -> StatusReporter:
    reporter = StatusReporter(app, settings)

    @app.timer(interval=reporter.interval_s, name="worker-status")
    async def _report() -> None:
        await reporter.report()

    def report_soon(state: str) -> None:
        # From a task of its own: the signals come from Faust's rebalance and recovery, which must not wait on
        # the broker.
        task = asyncio.ensure_future(reporter.report(state))
        reporter.pending.add(task)
        task.add_done_callback(reporter.pending.discard)

    @app.on_partitions_revoked.connect
    async def _report_rebalancing(app, revoked, **kwargs) -> None:
        # A rebalance stops every camera of the worker until it is done: readers see that at once too.
        report_soon("recovering")

    @app.on_rebalance_complete.connect
    async def _report_new_partitions(app, **kwargs) -> None:
        # At once, not at the next tick: readers then see the partitions move within a moment. The worker
        # takes frames from here on, though Faust's recovery flag may not be down yet.
        report_soon("running")

    @app.on_before_shutdown.connect
    async def _report_stopped(app, **kwargs) -> None:  # the consumer is stopped; the producer still sends
        state = last_state(app.crash_reason, settings)
        if state is None:
            log.info("worker status: no stopped report: it crashed, and reads as gone once silent")
            return
        try:  # bounded: with the broker gone, a send waits for it for ever
            await asyncio.wait_for(reporter.report(state), STOP_REPORT_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.info("worker status: the stopped report was not sent within %.0f s (broker away?)", STOP_REPORT_TIMEOUT_S)

    return reporter
