"""The whole pipeline on one machine: broker, worker processes, a camera, and a reader of its tracks.

``run_source`` is what ``its-faust run`` and ``its-faust bench`` use: it sends a
source through the real broker and real workers and returns when the last
frame sent has been tracked. ``Stack`` is the part that ``its-faust demo`` and
the tests share: a broker (embedded unless configured) and N workers.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from aiokafka.errors import KafkaError

from its_faust.cameras import (
    CameraSetup, CommandFailed, beyond_setup, check_not_sent_already, check_speed_limit, command, ensure_setup, read_configs,
    replaced_by, send_commands, with_kept,
)
from its_faust.broker import EmbeddedBroker, bootstrap_servers, check_embedded_allowed, wait_reachable
from its_faust.child_guard import ChildGuard
from its_faust.cpu_use import CpuMeter
from its_faust.ingest import LIVE_CREDIT_EXPIRE_S, FlowWindow, IngestStats, ingest, make_producer
from its_faust.results import CountFeed, RecordFeed, RunSummary, TrackFeed, alert_summary, line_speeds, zone_summary
from its_faust.topic_reader import group_lag
from its_faust.sources import SourceSpec
from its_faust.topic_names import ALERTS, CROSSINGS, DETECTIONS, FRAMES, TRACKS, ZONE_EVENTS, ensure_topics
from its_faust.worker import WorkerGone, WorkerProcess, how_it_ended, last_lines
from schemas import TrackRecord
from schemas.analytics import Alert, Crossing, ZoneEvent
from schemas.geometry import CountingLine
from schemas.control import AddCamera, RemoveCamera

log = logging.getLogger(__name__)
T = TypeVar("T")


async def in_thread_to_the_end(work: Callable[[], T]) -> T:
    """``work()`` (a blocking start or stop: a broker, the API, workers) in a thread, waited for to its
    end even when this task is cancelled meanwhile (Ctrl-C, SIGTERM): a start is then fully recorded
    by its owner, whose clean-up stops what it started, and a stop is not cut short half-way."""
    running = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        await asyncio.wait([running])
        raise


class Stack:
    """A broker and ``workers`` worker processes, stopped in reverse order on exit."""

    def __init__(self, settings, workers: int = 1, workdir: Path | None = None):
        self.settings = settings
        self.n_workers = workers
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="its-faust-")
        self.workdir = Path(workdir or self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker: EmbeddedBroker | None = None
        self.broker_url = settings.broker_url
        self.workers: list[WorkerProcess] = []
        self.guard: ChildGuard | None = None  # stops the broker and workers if this process dies without doing so

    @property
    def bootstrap(self) -> str:
        return bootstrap_servers(self.broker_url)

    def add_worker(self, name: str | None = None, extra_env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(self.broker_url, self.workdir, name or f"worker-{len(self.workers) + 1}", extra_env)
        self.workers.append(worker.start())
        self.guard.watch(worker.proc.pid)
        return worker

    def worker_warnings(self, limit: int = 40) -> str:
        """WARNING and worse lines from every worker's log: what to read when a run went wrong."""
        lines = []
        for worker in self.workers:
            if worker.log_path.exists():
                for line in worker.log_path.read_text(errors="replace").splitlines():
                    if " WARNING " in line or " ERROR " in line or " CRITICAL " in line:
                        lines.append(f"{worker.name}: {line}")
        return "\n".join(lines[-limit:])

    def workers_ended(self) -> dict[str, str]:
        """Worker name -> how it ended, for each worker that ended by itself (``WorkerProcess.ended_by_itself``)."""
        return {w.name: ended for w in self.workers if (ended := w.ended_by_itself())}

    def no_worker_left(self, told: set[str], tracked: int) -> str | None:
        """Why no worker is left to track frames, once none of this stack's is and none other can be (the broker
        is this stack's own); None while one is, or may be. Says once of each worker that ended by itself (its
        partitions go to the workers left, so with one left the run goes on); ``told`` holds those said."""
        ended = self.workers_ended()
        for name in ended.keys() - told:
            told.add(name)
            log.warning("%s %s, %d frames tracked so far; its partitions go to the workers left, if any", name,
                        ended[name], tracked)
        if self.broker is None:
            return None
        broker_exit = self.broker.wait(0)
        if broker_exit is not None:  # (its workers end with it: the broker is what went)
            said = last_lines(self.broker.log_path, 10)  # (the work folder, its log with it, goes as the run ends)
            return f"the embedded broker {how_it_ended(broker_exit)} ({tracked} frames tracked)" + (
                f"; from its log:\n{said}" if said else "")
        if not ended or any(w.proc is not None and w.proc.poll() is None for w in self.workers):
            return None
        said = "\n".join(f"{w.name}:\n{w.said_wrong()}" for w in self.workers if w.name in ended)
        return (f"no worker is left to track the frames ({tracked} tracked): "
                + "; ".join(f"{name} {how}" for name, how in ended.items()) + f"; from the log:\n{said}")

    async def start(self) -> "Stack":
        self.guard = ChildGuard(self.workdir / "children.pids", self.workdir if self._tmp else None)
        if self.broker_url:
            await asyncio.to_thread(wait_reachable, self.broker_url)
        else:
            check_embedded_allowed(self.settings)
            # Recorded first: stop() stops it; and watched from its start, before it answers.
            self.broker = EmbeddedBroker(log_path=self.workdir / "broker.log", on_spawn=self.guard.watch)
            await in_thread_to_the_end(self.broker.start)
            self.broker_url = self.broker.url
        await ensure_topics(self.bootstrap, self.settings)
        new = [self.add_worker() for _ in range(self.n_workers)]
        await asyncio.gather(*(asyncio.to_thread(w.wait_ready) for w in new))
        return self

    async def stop(self) -> None:
        """Workers (side by side), then the broker, then the work folder; a signal meanwhile does not cut it short."""
        await in_thread_to_the_end(self._stop_blocking)

    def _stop_blocking(self) -> None:
        stoppers = [threading.Thread(target=w.stop, name=f"stop-{w.name}") for w in self.workers]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        if self.broker:
            self.broker.stop()
        # Only now: killed while it stopped them (a supervisor's grace period run out), this process leaves the rest
        # to the guard.
        if self.guard is not None:
            self.guard.stop()
        if self._tmp:
            self._tmp.cleanup()

    async def __aenter__(self) -> "Stack":
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc) -> None:
        await self.stop()


async def track_source(
    stack: Stack,
    source: str,
    *,
    camera_id: str = "cam-1",
    fps: float | None = None,
    max_frames: int | None = None,
    window: int | None = None,
    idle_timeout_s: float = 60.0,
    on_progress: Callable[[IngestStats, list[TrackRecord]], None] | None = None,
    during: Callable[[IngestStats, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> tuple[IngestStats, TrackFeed]:
    """Send ``source`` as ``camera_id`` through ``stack`` and wait until every frame sent is tracked.

    ``during(stats, tracked)`` is called after each poll (tests use it to kill a worker mid-clip).
    Raises ``TimeoutError`` when no new track arrives for ``idle_timeout_s`` while the source is
    still sending; once it is done, frames still untracked after that long are left missing.
    """
    settings = stack.settings
    feed = await TrackFeed(stack.bootstrap, settings, cameras=[camera_id]).start()
    producer = make_producer(stack.bootstrap)
    await producer.start()
    # A live source's frames may be shed and never tracked: their credits must come back by themselves.
    expire_s = LIVE_CREDIT_EXPIRE_S if SourceSpec.parse(source).live else None
    flow = FlowWindow(window or settings.ingest.max_in_flight, expire_s=expire_s) if fps is None else None
    tracked: list[TrackRecord] = []
    live: list[IngestStats] = []  # the ingest's running stats, once it has sent a frame
    sender: asyncio.Task | None = None
    try:
        sender = asyncio.create_task(
            ingest(
                source, camera_id, producer, settings, fps=fps, window=flow, max_frames=max_frames, keep_seqs=True,
                on_sent=lambda s: live or live.append(s), stop=stop,
            )
        )
        last_progress = time.monotonic()
        ended: set[str] = set()  # workers said to have ended by themselves
        while True:
            for record in await feed.poll(100):
                if record.camera_id != camera_id:
                    continue
                tracked.append(record)
                last_progress = time.monotonic()
                if flow:
                    flow.release()
            idle = time.monotonic() - last_progress
            gone = stack.no_worker_left(ended, len(tracked))
            # Told to stop (a supervisor's SIGTERM reaches the workers too): what was tracked is summed up.
            stopping = stop is not None and stop.is_set()
            if sender.done():
                stats = sender.result()
                if len(tracked) >= stats.frames_sent:
                    break
                if idle > idle_timeout_s or (gone and stopping):  # what is missing now is reported, not waited for
                    log.warning("%s: %d of %d frames not tracked after %.0fs", camera_id,
                                stats.frames_sent - len(tracked), stats.frames_sent, idle)
                    break
            if gone and not stopping:
                raise WorkerGone(gone)
            if live and on_progress:
                on_progress(live[0], tracked)
            if live and during:
                during(live[0], len(tracked))
            if not sender.done() and idle > idle_timeout_s:
                sender.cancel()
                lag = await group_lag(stack.bootstrap, settings.app_id, [settings.topic(FRAMES), settings.topic(DETECTIONS)])
                # (The stack's work folder goes as the run ends: what its workers said is put here instead.)
                said = stack.worker_warnings(10)
                ended_note = "".join(f"{name} {how}; " for name, how in stack.workers_ended().items())
                raise TimeoutError(
                    f"no frame tracked for {idle_timeout_s:.0f}s ({len(tracked)} tracked so far); {ended_note}"
                    f"uncommitted messages by partition: {lag}; "
                    + (f"the workers' last warnings:\n{said}" if said else "its workers logged no warning" if stack.workers
                       else "this run started no worker (--workers 0): are the broker's own running? "
                            "(`its-faust tail workers`)")
                )
        if on_progress:
            on_progress(stats, tracked)
        return stats, feed
    finally:
        if sender is not None and not sender.done():  # stopped early (Ctrl-C, SIGTERM): the camera stops first
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        await producer.stop()
        await feed.stop()


async def configure_camera(stack: Stack, camera_id: str, setup: CameraSetup, *, source: str = "") -> None:
    """Give the camera these lines, zones, calibration and limit (and ``source`` as where its frames come
    from), and wait until a worker has applied them."""
    current = (await read_configs(stack.bootstrap, stack.settings)).get(camera_id)
    changes = ensure_setup(current, camera_id, setup, source=source)
    if changes:
        await send_commands(stack.bootstrap, stack.settings, [command(camera_id, c, issued_by="run") for c in changes])


async def setup_for_run(stack: Stack, camera_id: str, setup: CameraSetup, *,
                        bare: bool = False) -> tuple[CameraSetup, list[str], list[str]]:
    """What a run of ``camera_id`` will be analysed with, what of it the camera had from before, and what of the
    camera's the run replaces (a line of the same name elsewhere: its counts start again). A camera removed is
    added again.

    On a broker that has seen the camera, it keeps the lines and zones it had (``ensure_setup``
    leaves them): the workers count them, so the summary reports them too, and says so. ``bare``:
    those are dropped first instead (``replay --source``'s camera of its own has what it is given)."""
    current = (await read_configs(stack.bootstrap, stack.settings)).get(camera_id)
    replaced = replaced_by(setup, current)  # (what a bare run drops is what the setup does not name)
    if current is not None and current.removed:  # the workers would dead-letter its frames
        log.warning("camera %s was removed: this run adds it again", camera_id)
        await send_commands(stack.bootstrap, stack.settings, [command(camera_id, AddCamera(name=camera_id), issued_by="run")])
    if bare and (dropped := beyond_setup(current, setup)):
        log.info("%s: %d change(s) from before dropped: it has what this run gives, no more", camera_id, len(dropped))
        await send_commands(stack.bootstrap, stack.settings, [command(camera_id, c, issued_by="run") for c in dropped])
        current = None
    whole, kept = with_kept(setup, current)
    check_speed_limit(whole)
    if kept:
        log.warning("%s keeps %s from before this run: counted and in the summary (`its-faust cameras "
                    "remove-line/remove-zone %s NAME` drops one; another --camera starts bare)",
                    camera_id, ", ".join(kept), camera_id)
    if replaced:
        log.warning("%s: this run replaces its %s, defined otherwise before: lines and zones count afresh from now "
                    "(the counts of before stay on its.counts; another --camera or another name leaves them be)",
                    camera_id, ", ".join(replaced))
    return whole, kept, replaced


async def remove_camera_of_the_run(stack: Stack, camera_id: str) -> None:
    """Remove a camera that only this run used; its tracks, counts and alerts stay on their topics. A failure is
    said, not raised: the run's result stands."""
    try:
        await send_commands(stack.bootstrap, stack.settings, [command(camera_id, RemoveCamera(), issued_by="run")],
                            timeout_s=10)
    except (CommandFailed, KafkaError) as exc:
        log.warning("%s: could not remove this run's camera (`its-faust cameras remove %s` does): %s",
                    camera_id, camera_id, exc)
    else:
        log.info("%s: removed, its run summed up (its tracks and counts stay on the broker's topics)", camera_id)


async def wait_analytics_settled(stack: Stack, timeout_s: float = 30.0) -> None:
    """Until every track and crossing on the broker has been processed and committed (outputs flushed)."""
    topics = [stack.settings.topic(t) for t in (TRACKS, CROSSINGS, ZONE_EVENTS)]
    deadline = time.monotonic() + timeout_s
    while True:
        lag = await group_lag(stack.bootstrap, stack.settings.app_id, topics)
        if not any(n > 0 for parts in lag.values() for n in parts.values()):
            return
        if time.monotonic() > deadline:
            log.warning("analytics still behind after %.0fs: %s", timeout_s, lag)
            return
        await asyncio.sleep(0.3)


@dataclass
class AnalyticsResult:
    counts: dict[str, dict[str, dict[str, int]]]  # line -> direction -> class -> vehicles
    line_speeds: dict[str, dict[str, dict]]  # line -> direction -> n, mean_kmh, p85_kmh
    zones: dict[str, dict]  # zone -> entries, exits, mean dwell, speed (this run)
    alerts: list[dict]  # raised and cleared, in order


async def analyze_source(
    stack: Stack, source: str, setup: CameraSetup, *, camera_id: str = "cam-1", **track_kwargs
) -> tuple[IngestStats, TrackFeed, AnalyticsResult]:
    """``track_source`` on a configured camera; also gathers what the analytics made of it."""
    settings = stack.settings
    await configure_camera(stack, camera_id, setup, source=source)
    counts = await CountFeed(stack.bootstrap, settings, camera_id).start()
    crossings = await RecordFeed(stack.bootstrap, settings.topic(CROSSINGS), Crossing, camera_id).start()
    zones = await RecordFeed(stack.bootstrap, settings.topic(ZONE_EVENTS), ZoneEvent, camera_id).start()
    alerts = await RecordFeed(stack.bootstrap, settings.topic(ALERTS), Alert, camera_id).start()
    feeds = (counts, crossings, zones, alerts)
    try:
        stats, feed = await track_source(stack, source, camera_id=camera_id, **track_kwargs)
        await wait_analytics_settled(stack)
        for f in feeds:
            await f.drain()
    finally:
        for f in feeds:
            await f.stop()
    first_seq = min(stats.sent_seqs, default=None)
    first = feed.seen.get((camera_id, first_seq))
    start_at = first.at if first is not None else None
    zone_events, alert_events = _of_this_run(zones.records, first_seq), _of_this_run(alerts.records, first_seq)
    result = AnalyticsResult(
        counts={line.name: {} for line in setup.lines} | counts.counts(),
        line_speeds=line_speeds(_of_this_run(crossings.records, first_seq)),
        zones={zone.name: zone_summary([e for e in zone_events if e.zone == zone.name]) for zone in setup.zones},
        alerts=[alert_summary(a, start_at) for a in alert_events],
    )
    return stats, feed, result


def _of_this_run(records: list, first_seq: int | None) -> list:
    """The records of this run's frames, the first copy of each: a crash can make the actor emit a frame's
    events again (identical), and a camera a run before this one left open is closed at this run's first
    frame, with events of the last run's last frame (CameraAnalytics._close_if_broken_off)."""
    seen, out = set(), []
    for r in records:
        key = r.model_dump_json()
        if key not in seen and (first_seq is None or r.seq >= first_seq):
            seen.add(key)
            out.append(r)
    return out


async def count_source(
    stack: Stack, source: str, lines: list[CountingLine], *, camera_id: str = "cam-1", **track_kwargs
) -> tuple[IngestStats, TrackFeed, dict[str, dict[str, dict[str, int]]]]:
    """``track_source`` with counting lines: also returns line -> direction -> class -> crossings."""
    stats, feed, result = await analyze_source(stack, source, CameraSetup(lines=lines), camera_id=camera_id, **track_kwargs)
    return stats, feed, result.counts


async def run_source(
    settings,
    source: str,
    *,
    camera_id: str = "cam-1",
    workers: int = 1,
    fps: float | None = None,
    max_frames: int | None = None,
    setup: CameraSetup | None = None,
    bare: bool = False,
    on_progress: Callable | None = None,
    stop: asyncio.Event | None = None,
) -> RunSummary:
    """A whole source through the pipeline; with a ``setup`` (or one the camera has on the broker already,
    unless ``bare``: see ``setup_for_run``), the summary has counts, zones and alerts too. ``stop`` ends the
    source early: the frames sent by then are tracked and summed up (``stopped_early``). A ``bare`` camera on a
    shared broker is this run's alone (``replay --source``'s): it is removed once its run is summed up, or every
    replay left one more camera in the lists."""
    kwargs = dict(camera_id=camera_id, fps=fps, max_frames=max_frames, on_progress=on_progress, stop=stop)
    result = None
    if not settings.broker_url:  # a broker of its own: what is given is all the camera has (else setup_for_run)
        check_speed_limit(setup or CameraSetup())
    if settings.broker_url and workers:
        log.info("adding %d worker(s) to the workers of %s for this run: their group rebalances as they join and "
                 "leave, pausing its cameras a few seconds (--workers 0 uses the running workers only)",
                 workers, settings.broker_url)
    async with Stack(settings, workers=workers) as stack:
        cpu = CpuMeter.of_stack(stack)
        setup, kept, replaced = setup or CameraSetup(), [], []
        if not stack.broker:  # a broker this run started holds no camera yet: nothing to read
            await check_not_sent_already(stack.bootstrap, settings, camera_id)  # (as ingest: another producer's camera)
            setup, kept, replaced = await setup_for_run(stack, camera_id, setup, bare=bare)
        try:
            if setup != CameraSetup():
                stats, feed, result = await analyze_source(stack, source, setup, **kwargs)
            else:
                stats, feed = await track_source(stack, source, **kwargs)
        except Exception:  # (not on an abort: a second Ctrl-C does not wait for a worker to remove it)
            if bare and not stack.broker:
                await remove_camera_of_the_run(stack, camera_id)
            raise
        cpu.stop()
        if bare and not stack.broker:
            await remove_camera_of_the_run(stack, camera_id)
    records = [r for (cam, _), r in feed.seen.items() if cam == camera_id]
    summary = RunSummary.build(source, stats, records, len(feed.duplicates), workers)
    summary.cpu_ms_per_frame, summary.cores_busy = cpu.per_frame(summary.frames_tracked), cpu.cores_busy
    summary.cores_busy_elsewhere, summary.cores_stolen = cpu.cores_busy_elsewhere, cpu.cores_stolen
    if result:
        summary.counts, summary.zones, summary.alerts = result.counts, result.zones, result.alerts
        summary.line_speeds = result.line_speeds
        summary.line_travel = {line.name: line.travel() for line in setup.lines}
    summary.kept_from_before, summary.replaced_from_before = kept, replaced
    return summary
