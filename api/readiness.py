"""How the whole system is doing, as /api/v1/ready and /metrics tell it: the broker, the workers' lag, whether
they consume. Judged here, from the hub's read models and the broker's answers; the routes only serve it."""

from __future__ import annotations

import asyncio
import time

# A ring whose consumer has not fetched for this long means the broker is unreachable.
STALE_FETCH_S = 10.0
# Work waiting while the workers' committed offsets have not moved for this long: they are not consuming.
STALLED_AFTER_S = 30.0
# /ready waits this long for the lag: a probe (a load balancer's, Kubernetes') must get an answer in its own time.
READY_LAG_TIMEOUT_S = 5.0
# /ready says the cameras' configurations were lost for this long after the broker lost its logs.
CONFIGS_LOST_NOTE_S = 3600.0
# A scrape waits this long for the lag (Prometheus gives up at 10 s, and would lose the API's own figures too).
METRICS_LAG_TIMEOUT_S = 3.0
# A scrape whose read of the lag takes longer gives the last figures read, if they are this recent.
METRICS_LAG_KEEP_S = 30.0
# A read of the lag is given up after this long (the Kafka client waits 40 s a request, and a group coordinator
# that is not there for ever): the next asker starts afresh.
LAG_READ_MAX_S = 30.0


class SystemHealth:
    """``hub``: the API's Hub (its broker probe, rings, workers, camera events, group offsets); ``metrics``: the
    Prometheus figures the lag is set on."""

    def __init__(self, hub, metrics):
        self.hub, self.metrics = hub, metrics
        self._lag_read: asyncio.Future | None = None  # the read of the lag in flight, shared by its askers
        self.lag_read_at: float | None = None  # monotonic time of the last read that answered
        self._committed_seen: tuple[int, float] | None = None  # (the group's commits summed, since when)
        self._came_back_seen = 0  # the broker's returns the read in flight began after

    async def ready(self) -> tuple[bool, dict]:
        """Whether the system is ready, and the body that says why (see the route's description)."""
        hub = self.hub
        now = time.monotonic()
        if not hub.broker.up:  # reading the lag would wait out the client's timeouts (40 s)
            return False, {"broker": f"not answering: {hub.broker.trouble}", "lag": "unknown: the broker does not answer"}
        stale = [name for name, ring in hub.rings.items() if now - ring.last_fetch_ok > STALE_FETCH_S]
        body: dict = {"broker": "reachable" if not stale else f"not read for {STALE_FETCH_S:.0f}s: {stale}",
                      "frames_shed": {camera_id: n for camera_id, n in hub.camera_events.shed_lately(time.time()).items()
                                      if not hub.cameras.removed(camera_id)},  # (those are over)
                      **await self._embedded_broker()}
        lost_at = self._configs_lost_at(time.time())
        if lost_at is not None:
            body["logs_lost_at"] = lost_at
            body["warnings"].append(
                f"the broker lost its logs at {time.strftime('%H:%M:%S', time.localtime(lost_at))} (an in-memory "
                "broker restarted?): the cameras' configurations (lines, zones, calibrations), counts and tracks of "
                "before are gone; add the cameras again (`its-faust cameras add`, `add-line`, ...)")
        try:
            try:
                offsets, lag = await self._wait_for_lag(READY_LAG_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no answer in {READY_LAG_TIMEOUT_S:g} s") from None
            body["lag"] = lag
            waiting = sum(lag.values())
            progress = self._progress(sum(done for done, _ in offsets.values()), waiting, now)
            body["workers"], working = workers_verdict(workers_running(hub.workers, time.time()), progress, waiting)
            if not working:
                stale.append("workers")
        except Exception as exc:  # the broker did not answer
            stale.append("lag")
            body["lag"] = f"unknown: {exc!r}"
            if not stale[:-1]:  # the rings read a moment ago, but the broker does not answer now
                body["broker"] = f"not answering: {exc!r}"
        return not stale, body

    async def _embedded_broker(self) -> dict:
        """The embedded broker's memory (None with Kafka, or a broker on another machine), and a warning past its limit."""
        note = self.hub.broker_memory
        await asyncio.to_thread(note.text)  # may look for the broker's process: a scan of the machine's sockets
        warning = note.warning()
        return {"embedded_broker_mb": round(note.held / 1e6) if note.held is not None else None,
                "warnings": [warning] if warning else []}

    def _configs_lost_at(self, now: float) -> float | None:
        """When the broker lost the cameras' configurations, while none is configured again, for an hour at most:
        the system went on, ready, with no camera configured, and only a worker's log said why (a trial)."""
        ring = self.hub.rings.get("configs")
        lost_at = ring.log_lost_at if ring is not None else None
        if lost_at is None or now - lost_at > CONFIGS_LOST_NOTE_S or self.hub.cameras.all():
            return None
        return lost_at

    async def scrape(self) -> None:
        """The broker's state and the lag, set on the metrics for a scrape."""
        metrics = self.metrics
        metrics.broker_up.set(1 if self.hub.broker.up else 0)
        held = (await self._embedded_broker())["embedded_broker_mb"]
        metrics.embedded_broker_bytes.set(float("nan") if held is None else self.hub.broker_memory.held)
        try:
            if not self.hub.broker.up:
                raise ConnectionError(self.hub.broker.trouble)
            # Read at each scrape: the figure is the broker's, not a cache.
            await self._wait_for_lag(METRICS_LAG_TIMEOUT_S)
        except asyncio.TimeoutError:
            # A loaded broker answers slowly, just when the lag matters: the read goes on for the next scrape, and
            # this one gives the figures of the last read if they are recent (the age metric says how recent).
            if self.lag_read_at is None or time.monotonic() - self.lag_read_at > METRICS_LAG_KEEP_S:
                metrics.lag.clear()
        except Exception:
            metrics.lag.clear()  # the broker said no: no figure rather than an old one
        if self.lag_read_at is not None and metrics.lag.collect()[0].samples:
            metrics.lag_age.set(time.monotonic() - self.lag_read_at)
        else:
            metrics.lag_age.set(float("nan"))

    async def _wait_for_lag(self, timeout_s: float):
        """The lag read's answer, waited for ``timeout_s`` at most (it goes on for the next asker). A read dropped
        meanwhile (begun while the broker was away) is a failed read for this asker, not its own cancellation."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._read_lag()), timeout_s)
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise
            raise ConnectionError("the read was begun while the broker was away; asked afresh next time") from None

    def stop(self) -> None:
        if self._lag_read is not None:
            self._lag_read.cancel()

    def _read_lag(self) -> asyncio.Future:
        """The read of the lag in flight, or a new one: an asker that stops waiting for it leaves it running."""
        came_back = self.hub.broker.came_back
        if self._lag_read is not None and not self._lag_read.done() and came_back != self._came_back_seen:
            self._lag_read.cancel()  # begun while the broker was away: it would wait out the client's timeouts
            self._lag_read = None  # (it is done only at the loop's next turn: a new one now)
        self._came_back_seen = came_back
        if self._lag_read is None or self._lag_read.done():
            self._lag_read = asyncio.ensure_future(asyncio.wait_for(self._worker_lag(), LAG_READ_MAX_S))
            self._lag_read.add_done_callback(lambda r: r.cancelled() or r.exception())  # failures are the askers'
        return self._lag_read

    async def _worker_lag(self) -> tuple[dict, dict[str, int]]:
        """The workers' group offsets and the messages waiting per topic, also set as the lag metric.
        Raises when the broker does not answer (the metric as it was)."""
        offsets = await self.hub.group_offsets.read()
        lag: dict[str, int] = {}
        for (topic, _), (done, end) in offsets.items():
            # A commit past the log's end (a log the broker lost, an end not read in time) is no work waiting.
            lag[topic] = lag.get(topic, 0) + max(0, end - done)
        self.metrics.lag.clear()  # set whole, after the read: a read that fails leaves no half-cleared figure
        for t, n in lag.items():
            self.metrics.lag.labels(t).set(n)
        self.lag_read_at = time.monotonic()
        return offsets, lag

    def _progress(self, committed: int, waiting: int, now: float) -> str:
        """Are the workers consuming? Judged by their committed offsets moving while work waits."""
        last = self._committed_seen
        if last is None or committed != last[0]:
            self._committed_seen = (committed, now)
            return "consuming" if waiting else "caught up"
        if not waiting:
            return "caught up"
        still = now - last[1]
        return (f"stalled: {waiting} messages waiting, nothing committed for {still:.0f}s"
                if still > STALLED_AFTER_S else "consuming")


def workers_verdict(running: str, progress: str, waiting: int) -> tuple[str, bool]:
    """/ready's line on the workers, and whether they do the work."""
    if running == "none running" and waiting:
        # Nobody to do it: not "consuming", though the group's commits may have moved a moment ago.
        return f"{running}, {waiting} messages waiting", False
    return f"{running}, {progress}", not progress.startswith("stalled")


def workers_running(workers, now: float) -> str:
    """How many workers report themselves (its.workers) in time: the group's membership is the broker's
    to tell, and the embedded broker does not describe groups reliably."""
    serving = workers.serving(now)
    recovering = sum(1 for s in serving if s.state == "recovering")
    if not serving:
        return "none running"
    # As /workers and the metrics count them: a recovering worker is not a running one.
    return f"{len(serving) - recovering} running" + (
        f", {recovering} recovering (in a rebalance or restoring tables)" if recovering else "")
