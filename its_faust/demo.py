"""``its-faust demo``: broker, workers, cameras on a sample clip and the API with its dashboard.

Each camera replays the source in a loop at its own frame rate, as a real camera
would deliver it; the terminal table follows the tracks topic, and the dashboard
(printed URL) shows the live view, counts and alerts. When the source is one of
the sample clips, the cameras get that clip's counting line (the one the hand
counts in tests/data/counts use), so counts appear at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from api.process import ApiProcess, check_can_listen
from its_faust.broker import BrokerMemoryNote
from its_faust.cameras import CameraSetup, parse_line
from its_faust.ingest import LIVE_CREDIT_EXPIRE_S, FlowWindow, IngestStats, ingest, make_producer
from its_faust.pipeline import Stack, configure_camera, in_thread_to_the_end
from its_faust.worker import WorkerGone
from its_faust.codecs import decode_or_none
from its_faust.results import TrackFeed
from its_faust.topic_reader import TopicReader
from its_faust.topic_names import CAMERA_CONFIGS, COUNTS
from schemas.analytics import CountUpdate
from schemas.control import CameraConfig

log = logging.getLogger(__name__)


class CameraFigures:
    def __init__(self, lines: list[str] = ()):
        self.tracked = 0
        self.recent = collections.deque(maxlen=300)  # (tracked_at, latency_ms)
        self.ids: set[int] = set()
        self.active = 0
        self.lines = list(lines)  # shown from the start, at 0
        self.line_versions: dict[str, int] = {}  # line -> the adding of it that is counted now
        self.configured = False  # once a configuration is known, it alone says which lines there are
        self.count_totals: dict[tuple[str, int, str, str], int] = {}  # (line, version, direction, class) -> crossings

    def configure(self, config: CameraConfig) -> None:
        """The camera's lines changed (the API, ``its-faust cameras``): show the lines it has now, each
        counted from its latest adding (a line removed and added again starts at 0, as its counts do)."""
        self.configured = True
        self.lines = [line.name for line in config.lines]
        self.line_versions = {name: config.line_versions.get(name, 0) for name in self.lines}
        self.count_totals = {key: n for key, n in self.count_totals.items() if self.line_versions.get(key[0]) == key[1]}

    def add_count(self, update: CountUpdate) -> None:
        if update.line not in self.lines:
            if self.configured:
                return  # a removed line's last counts, still on their way
            self.lines.append(update.line)
        version = self.line_versions.setdefault(update.line, update.line_version)
        if update.line_version != version:
            if update.line_version < version:
                return
            # added again before this camera's configuration reached us: its counts start afresh
            self.line_versions[update.line] = update.line_version
            self.count_totals = {key: n for key, n in self.count_totals.items() if key[0] != update.line}
        key = (update.line, update.line_version, update.direction, update.label)
        self.count_totals[key] = max(self.count_totals.get(key, 0), update.total)  # updates may come twice

    def counts(self) -> str:
        """``y120 in 4 out 5`` per line, every class together."""
        def total(line, direction):
            return sum(n for (name, _, way, _), n in self.count_totals.items() if name == line and way == direction)
        return "; ".join(f"{line} in {total(line, 'in')} out {total(line, 'out')}" for line in self.lines) or "-"

    def add(self, record) -> None:
        self.tracked += 1
        self.recent.append((record.tracked_at, (record.tracked_at - record.captured_at) * 1000))
        self.ids.update(o.track_id for o in record.objects)
        self.active = len(record.objects)

    def fps(self, window_s: float = 5.0) -> float:
        now = time.time()
        return sum(1 for t, _ in self.recent if now - t <= window_s) / window_s

    def latency_p50(self) -> float:
        return float(np.median([lat for _, lat in self.recent])) if self.recent else 0.0


def _table(figures: dict[str, CameraFigures], sent: dict[str, IngestStats], stack: Stack, started: float,
           broker_note: str = "") -> Group:
    table = Table(title=f"ITS Faust demo: {len(stack.workers)} worker(s), broker {stack.broker_url}")
    for column in ("camera", "frames sent", "dropped", "tracked", "fps", "tracks now", "track ids", "latency p50",
                   "line counts"):
        table.add_column(column, justify="right")
    for cam, fig in figures.items():
        stats = sent.get(cam)
        table.add_row(cam, str(stats.frames_sent if stats else 0), str(stats.frames_dropped if stats else 0),
                      str(fig.tracked), f"{fig.fps():.1f}", str(fig.active), str(len(fig.ids)),
                      f"{fig.latency_p50():.0f} ms", fig.counts())
    held = f"; {broker_note}" if broker_note else ""
    footer = Text(f"running {time.time() - started:.0f}s{held}; Ctrl-C stops everything", style="dim")
    return Group(table, footer)


def _lines(figures: dict[str, CameraFigures], sent: dict[str, IngestStats], started: float, broker_note: str = "") -> str:
    """The table's figures as plain lines, for output that is not a terminal (a log file, a pipe)."""
    lines = [
        f"{time.time() - started:.0f}s {cam}: sent {stats.frames_sent if stats else 0} dropped "
        f"{stats.frames_dropped if stats else 0} tracked {fig.tracked} fps {fig.fps():.1f} tracks now {fig.active} "
        f"track ids {len(fig.ids)} latency p50 {fig.latency_p50():.0f} ms counts {fig.counts()}"
        for cam, fig in figures.items() for stats in [sent.get(cam)]
    ]
    if broker_note:
        lines.append(f"{time.time() - started:.0f}s {broker_note}")
    return "\n".join(lines)


class _FiguresView:
    """A live table on a terminal; elsewhere (rich draws a live table only at its end there) a line per
    camera every ``every_s`` seconds, so a demo under nohup, systemd or a pipe still shows it runs.

    The figures are for people: a terminal that hung up (EIO) or a pipe whose reader left (EPIPE) ends
    them, never the demo's clean stop (``output_lost`` tells the demo to stop)."""

    def __init__(self, table, lines, every_s: float = 5.0):
        self._table, self._lines, self._every_s = table, lines, every_s
        self._live = Live(table(), refresh_per_second=4)
        self._live_on = self._live.console.is_terminal
        self._next_line_at = time.monotonic() + every_s
        self._last_lines = None
        self.output_lost = False

    def write(self, out: Callable[[], object]) -> None:
        if not self.output_lost:
            self.output_lost = not _write(out)

    def __enter__(self) -> "_FiguresView":
        if self._live_on:
            self.write(self._live.__enter__)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._live_on:
            self.write(lambda: self._live.__exit__(*exc_info))
        else:
            self._print_lines()  # the final figures, unless the last lines printed were these already

    def update(self) -> None:
        if self._live_on:
            self.write(lambda: self._live.update(self._table()))
        elif time.monotonic() >= self._next_line_at:
            self._next_line_at += self._every_s
            self._print_lines()

    def _print_lines(self) -> None:
        lines = self._lines()
        if lines != self._last_lines:
            self._last_lines = lines
            self.write(lambda: print(lines, flush=True))


def _write(out: Callable[[], object]) -> bool:
    """Run ``out`` (a print); False once the reader of stdout has gone (`demo | head`)."""
    try:
        out()
        return True
    except OSError:
        # Python's own last flush of stdout would fail the same way and print a complaint at exit.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return False


SAMPLE_LINES = {
    "dual_carriageway_abhishek.mp4": "140,120,620,120:y120",
    "road_overhead_opencv4nodejs.mp4": "320,300,320,100:x320",
    "intersection_cctv_borislavy.mp4": "320,240,320,90:x320",
}




async def run_demo(settings, source: str, *, workers: int = 1, cameras: int = 1, duration: float | None = None,
                   port: int | None = None) -> None:
    stop = asyncio.Event()
    port = port or settings.api.port
    check_can_listen("127.0.0.1", port)
    async with Stack(settings, workers=workers) as stack:
        names = [f"demo-cam-{i + 1}" for i in range(cameras)]
        line = SAMPLE_LINES.get(Path(source).name)
        setup = CameraSetup(lines=[parse_line(line)] if line else [])
        for name in names:
            await configure_camera(stack, name, setup, source=source)
        # The API as its own process, as in production.
        api = ApiProcess(stack.broker_url, stack.workdir / "api.log", port)
        try:
            await in_thread_to_the_end(api.start)
            stack.guard.watch(api.process.pid)  # a demo killed outright left it on the port, under init
            header = (f"dashboard: http://127.0.0.1:{port}/  (API docs at /docs)\n"
                      f"broker: {stack.broker_url}  (see its topics: its-faust tail tracks --broker {stack.broker_url})\n"
                      f"logs: {stack.workdir}  ({', '.join(_log_names(stack, api))}; removed when the demo stops)\n"
                      f"cameras: {', '.join(names)} play {Path(source).name} in a loop, at its own rate, as live cameras "
                      f"(frames the workers reach too late are shed; those the pipeline has no room for are dropped "
                      f"at the camera: the 'dropped' column): counts grow with every pass")
            if not _write(lambda: print(header, flush=True)):  # `demo | head -1` can close it between the lines
                log.info("demo: its output was closed; stopping")
                stop.set()
            await _run_cameras(settings, stack, source, names, [line.name for line in setup.lines], duration, stop)
        finally:
            await in_thread_to_the_end(api.stop)


def _log_names(stack: Stack, api: ApiProcess) -> list[str]:
    broker = [stack.broker.log_path] if stack.broker else []  # none of its own with an external broker
    return [path.name for path in [*broker, *(w.log_path for w in stack.workers), api.log_path]]


async def _decoded(reader: TopicReader, schema) -> list:
    """The records ``reader`` has now (no wait), decoded; a malformed one is the workers' to dead-letter."""
    records = (decode_or_none(schema, message.value) for message in await reader.poll(0))
    return [r for r in records if r is not None]


async def _run_cameras(settings, stack: Stack, source: str, names: list[str], line_names: list[str],
                       duration: float | None, stop: asyncio.Event) -> None:
    """The cameras send until ``stop`` (Ctrl-C, --duration, a failed camera); the figures follow the tracks and counts topics."""
    started = time.time()  # --duration counts camera time, not broker and worker start-up
    producer = make_producer(stack.bootstrap)
    await producer.start()
    feed = await TrackFeed(stack.bootstrap, settings, cameras=names).start()  # their partitions only
    count_reader = await TopicReader(stack.bootstrap, settings.topic(COUNTS), keys=[n.encode() for n in names],
                                     many_partitions_wait_ms=settings.fetch_max_wait_ms).start()
    # Lines changed while the demo runs (the dashboard, `its-faust cameras`): the figures follow them.
    config_reader = await TopicReader(stack.bootstrap, settings.topic(CAMERA_CONFIGS), keys=[n.encode() for n in names],
                                      from_beginning=True, many_partitions_wait_ms=settings.fetch_max_wait_ms).start()
    figures = {name: CameraFigures(line_names) for name in names}
    sent: dict[str, IngestStats] = {}  # each camera's totals: frames sent, and dropped while the pipeline was behind
    # Like a real camera: frames come at the clip's rate; when the pipeline is behind, new ones are dropped.
    # The cameras share one pipeline, so they share its live_max_in_flight frames out equally: its latency
    # then stays that of about live_max_in_flight frames (at least one per camera) however many cameras
    # there are (a full window each gave 1.8 s with 3 cameras), and each camera keeps its share (one
    # shared window starved the last one).
    share = max(1, settings.ingest.live_max_in_flight // len(names))
    windows = {name: FlowWindow(share, expire_s=LIVE_CREDIT_EXPIRE_S) for name in names}
    senders = [
        asyncio.create_task(
            ingest(source, name, producer, settings, loop_source=True, stop=stop, window=windows[name], live_feed=True,
                   on_sent=lambda stats, name=name: sent.__setitem__(name, stats))
        )
        for name in names
    ]
    broker_memory = BrokerMemoryNote.for_settings(stack.broker, settings)
    view = _FiguresView(lambda: _table(figures, sent, stack, started, broker_memory.text()),
                        lambda: _lines(figures, sent, started, broker_memory.text()))
    ended: set[str] = set()  # workers said to have ended by themselves
    try:
        with view:
            while not stop.is_set():
                for record in await feed.poll(250):
                    if record.camera_id in figures:
                        figures[record.camera_id].add(record)
                        windows[record.camera_id].release()
                # what has come; the track feed set the pace
                for config in await _decoded(config_reader, CameraConfig):
                    if config.camera_id in figures:
                        figures[config.camera_id].configure(config)
                for update in await _decoded(count_reader, CountUpdate):
                    if update.camera_id in figures:
                        figures[update.camera_id].add_count(update)
                view.update()
                if view.output_lost:  # `demo | head`: the reader left, as SIGPIPE would stop a C program
                    log.info("demo: its output was closed; stopping")
                    stop.set()
                if duration and time.time() - started > duration:
                    stop.set()
                for task in senders:
                    if task.done() and task.exception():
                        raise task.exception()
                # (a worker killed for memory had left the table at zeros with nothing said)
                if gone := stack.no_worker_left(ended, sum(f.tracked for f in figures.values())):
                    raise WorkerGone(gone)
    finally:
        stop.set()
        await asyncio.gather(*senders, return_exceptions=True)
        await feed.stop()
        await count_reader.stop()
        await config_reader.stop()
        await producer.stop()
        view.write(print)  # the live table's last line stays; logs start below it
