"""``its-faust``: everything an operator does, from one command.

Each command reads the same settings (``ITS_FAUST_*`` environment variables,
``.env`` and the profile); options given here override them for this run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

import click
from aiokafka.errors import KafkaConnectionError

from its_faust.assets import AssetNotFound, resolve_asset
from its_faust.cameras import CameraSentAlready, CommandFailed
from its_faust.cli_cameras import cameras
from its_faust.cli_settings import settings_command
from its_faust.cli_tail import tail
from its_faust.data_dir import DataDirInUse
from its_faust.broker import (BrokerMemoryNote, BrokerError, EmbeddedBroker, bootstrap_servers, check_embedded_allowed,
                              wait_for_broker, wait_reachable)
from its_faust.cli_support import StopSoftly, fail, set_env, settings_or_fail, stop_on_terminate
from its_faust.sources import SourceError
from its_faust.worker import WorkerGone

# Errors a user can fix; they get one line, not a traceback.
USER_ERRORS = (
    AssetNotFound, SourceError, BrokerError, KafkaConnectionError, TimeoutError, ValueError, CommandFailed, DataDirInUse,
    CameraSentAlready,
)
# A run that failed once started (no frame tracked in time, no worker left, a worker or the API not up): exit status 1,
# not a user error's 2 (a script tells "asked wrongly" from "failed"). Caught before USER_ERRORS (TimeoutError is one).
RUN_FAILURES = (WorkerGone, TimeoutError)

log = logging.getLogger("its_faust")

PORT = click.IntRange(1, 65535)
API_STOP_S = 3  # how long the API waits, when told to stop, for the requests still open (live views) to end
API_OPEN_FILES = 1024  # what an API is to be able to open: a file per client connection, SSE streams included


def _settings():
    from its_faust import event_loop
    from its_faust.logs import setup_logging

    settings = settings_or_fail()
    setup_logging(settings.log_level, settings.log_json)
    try:
        event_loop.install(settings.event_loop)
    except ValueError as exc:
        fail(exc)
    return settings


def _check_model(settings) -> None:
    """Find the weights before any worker starts: a missing file is one line here, not a worker that
    fails to start (its backend is checked by the settings)."""
    resolve_asset(settings.model.weights, settings.asset_dir)


def _check_writable(path: Path | None) -> None:
    """An output file is checked before the work that fills it: a path that cannot be written is one
    line now, not a traceback after the whole clip has been processed."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot write {path}: cannot create {path.parent} ({exc.strerror or exc})") from None
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder")
    # An existing file is rewritten in place (its folder's permission does not matter); a new one is created.
    writable = os.access(path, os.W_OK) if path.exists() else os.access(path.parent, os.W_OK)
    if not writable:
        raise ValueError(f"cannot write {path}: permission denied")


def _write_output(path: Path | None, payload: str) -> None:
    """Write a command's result file (printed already: a failure here loses nothing but the file)."""
    if path is None:
        return
    try:
        path.write_text(payload + "\n")
    except OSError as exc:
        click.echo(f"its-faust: error: cannot write {path} ({exc.strerror or exc}); the result is printed above", err=True)
        sys.exit(1)


def _camera_id(ctx, param, value: str | None) -> str | None:
    """--camera is the Kafka key and the records' camera_id: checked as the schemas check it."""
    from schemas.base import CAMERA_ID_PATTERN

    if value is not None and not re.fullmatch(CAMERA_ID_PATTERN, value):
        raise click.BadParameter(f"{value!r} is not a camera id: 1-64 letters, digits, '_', '.' or '-', "
                                 "starting with a letter or digit")
    return value


def _resolve_source(source: str, settings) -> str:
    """Bare names of sample clips resolve through the asset directory; URLs and webcams pass through."""
    if "://" in source or source.isdigit() or source.startswith("webcam:") or os.sep in source or Path(source).exists():
        return source
    return str(resolve_asset(source, settings.asset_dir, download=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="its-faust")
def main() -> None:
    """ITS Faust: real-time traffic-camera analytics on Faust streams over Kafka.

    Cameras publish frames to Kafka; Faust workers detect (YOLO11) and track
    (ByteTrack) vehicles per camera. Start more workers to scale out.
    Without ITS_FAUST_BROKER_URL an embedded broker is started.
    """


@main.command()
@click.option("--ready-file", type=click.Path(path_type=Path), help="Created when the worker has joined and is consuming, touched every 10 s while it is well, removed "
                   "when a partition is stuck or the worker stops: a liveness probe checks it changed in the last minute.")
@click.option("--broker", "broker_url", help="kafka://host:port (default: ITS_FAUST_BROKER_URL, else start an embedded broker).")
def worker(ready_file: Path | None, broker_url: str | None) -> None:
    """Run one Faust worker (all agents). Start several to share the cameras."""
    set_env(broker_url=broker_url)
    settings = _settings()
    broker = None
    try:
        if not settings.broker_url:
            check_embedded_allowed(settings)
            broker = EmbeddedBroker().start()
            click.echo(
                f"embedded broker at {broker.url}; more workers: "
                f"ITS_FAUST_BROKER_URL={broker.url} ITS_FAUST_DATA_DIR=<a folder of its own> its-faust worker"
            )
            set_env(broker_url=broker.url)
        from its_faust.worker import run_worker

        run_worker(ready_file=ready_file)
    except USER_ERRORS as exc:
        fail(exc)
    finally:
        if broker:
            broker.stop()


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=9092, show_default=True,
              help="Loopback port to listen on (0: any free one).")
def broker(port: int) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, in memory) until Ctrl-C.

    It keeps every record in memory (no retention) and slows as it fills: for trying things out,
    not for a long-running system (point ITS_FAUST_BROKER_URL at Apache Kafka for that).
    """
    settings = _settings()
    stop_on_terminate()  # the broker child runs in a session of its own: stop it on the way out
    try:
        with EmbeddedBroker(port=port) as b:
            click.echo(f"broker listening: ITS_FAUST_BROKER_URL={b.url}")
            click.echo(f"it keeps every record in memory and slows as it fills; past {settings.embedded_broker_warn_mb} MB "
                       "(ITS_FAUST_EMBEDDED_BROKER_WARN_MB) it says so once: long-running systems want Kafka")
            note = BrokerMemoryNote.for_settings(b, settings)
            code = None
            while code is None:
                note.text()  # logs its warning once, past the limit
                code = b.wait(timeout=10)
            fail(BrokerError(f"broker exited with code {code}"))
    except USER_ERRORS as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass
    click.echo("broker stopped (its records are gone with it)")


@main.command()
@click.option("--source", required=True, help="Video file (or sample clip name), rtsp:// or http:// URL, or webcam:N (a webcam index).")
@click.option("--camera", "camera_id", default="cam-1", show_default=True, callback=_camera_id, help="Camera id (the Kafka key).")
@click.option("--fps", type=click.FloatRange(0, min_open=True), help="Target frame rate (default: the file's own fps; live sources as delivered).")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after this many frames.")
@click.option("--loop", "loop_source", is_flag=True, help="Start a file again when it ends.")
@click.option("--live", "as_live_source", is_flag=True,
              help="Send a file's frames as a live camera's: those that reach detection too late are shed.")
@click.option("--broker", "broker_url", help="kafka://host:port (default: ITS_FAUST_BROKER_URL).")
def ingest(source: str, camera_id: str, fps: float | None, max_frames: int | None, loop_source: bool,
           as_live_source: bool, broker_url: str | None) -> None:
    """Publish a camera's frames to the frames topic (needs a running broker).

    Frames of a live source that reach detection more than ITS_FAUST_MODEL__LIVE_FRAME_MAX_AGE_S
    (3 s) old are shed, and reported as frames_shed on the camera-events topic; frames of a
    file are all processed, however far behind the pipeline falls (a file played as a camera
    with --loop on too small a machine: add --live to shed them like a camera's).

    A camera that is not configured is warned about (`its-faust cameras add` it); removing the
    camera stops this, and a removed camera's frames are not sent.
    """
    set_env(broker_url=broker_url)
    settings = _settings()
    stop_on_terminate()
    if not settings.broker_url:
        fail(BrokerError("ingest needs a broker: set ITS_FAUST_BROKER_URL or --broker (see `its-faust broker`)"))
    from its_faust.cameras import CameraRemoved, RemovalWatch, ShapesInView, check_not_sent_already
    from its_faust.daemon_thread import DaemonThread
    from its_faust.ingest import IngestStats, ProgressLog, make_producer, undelivered
    from its_faust.ingest import ingest as run_ingest
    from its_faust.topic_names import ensure_topics

    stats = IngestStats(camera_id)  # kept here: a Ctrl-C still has the totals to tell
    try:
        resolved = _resolve_source(source, settings)  # a clip not found is said first, before the broker is asked
        _check_file_opens(resolved)  # and one that is no video (the broker's warnings came first, then the error)
    except USER_ERRORS as exc:
        fail(exc)

    async def go():
        bootstrap = bootstrap_servers(settings.broker_url)
        # A camera service may start before its Kafka (a machine's boot): it waits, as workers do.
        waiting = DaemonThread("broker wait")  # not to_thread: a Ctrl-C meanwhile would wait for it to end
        try:
            await waiting.run(wait_for_broker, settings.broker_url, settings.broker_wait_s)
        finally:
            waiting.close()
        await ensure_topics(bootstrap, settings)
        watch = await RemovalWatch(bootstrap, settings, camera_id).start()
        try:
            await check_not_sent_already(bootstrap, settings, camera_id)
        except BaseException:
            await watch.stop()
            raise
        producer = make_producer(bootstrap)
        try:
            await producer.start()
            await run_ingest(
                resolved, camera_id, producer, settings, fps=fps, max_frames=max_frames,
                loop_source=loop_source, as_live_source=as_live_source, stop=watch.removed,
                stop_reason="the camera was removed", stats=stats, on_sent=_each(ProgressLog(), ShapesInView(watch.config)),
            )
            return watch.removed.is_set()
        finally:
            await producer.stop()
            await watch.stop()

    interrupted = removed = False
    try:
        removed = asyncio.run(go())
    except (*USER_ERRORS, CameraRemoved) as exc:
        fail(exc)
    except KeyboardInterrupt:
        interrupted = True
    sampled = f" ({stats.frames_sampled} of a frozen picture)" if stats.frames_sampled else ""
    why = ("the camera was removed: " if removed else "stopped: " if interrupted
           else f"{stats.ended_short}: " if stats.ended_short else "")
    click.echo(f"{camera_id}: {why}{stats.frames_sent} frames sent{sampled}{undelivered(stats)}, "
               f"{stats.frames_rejected} rejected")
    if stats.gave_up:  # a supervisor restarts a camera service that failed, not one that ended
        fail(f"camera {camera_id}: gave up on its source ({stats.gave_up})")
    if interrupted:
        sys.exit(130)


def _each(*calls):
    """One callback that makes each of ``calls`` in turn."""
    def call(*args) -> None:
        for each in calls:
            each(*args)
    return call


def _check_file_opens(source: str) -> None:
    """A file OpenCV cannot open is one error line now (a live source that does not open is retried instead)."""
    from its_faust.sources import SourceSpec, open_capture

    spec = SourceSpec.parse(source)
    if not spec.live:
        open_capture(spec).release()


@main.command()
@click.option("--source", required=True, help="Video file or sample clip name (e.g. dual_carriageway_abhishek.mp4).")
@click.option("--summary", "--out", "summary_path", type=click.Path(path_type=Path), help="Write the run's summary JSON here.")
@click.option("--camera", "camera_id", default="cam-1", show_default=True, callback=_camera_id,
              help="Camera id the frames carry (the Kafka key).")
@click.option("--workers", type=click.IntRange(min=0), default=1, show_default=True,
              help="Worker processes to start. 0: only the workers already running on ITS_FAUST_BROKER_URL "
                   "(started ones join their group, which pauses its cameras while it rebalances).")
@click.option("--fps", type=click.FloatRange(0, min_open=True), help="Pace the source (default: as fast as the pipeline takes frames).")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after this many frames.")
@click.option("--line", "line_specs", multiple=True, metavar="X1,Y1,X2,Y2[:NAME]",
              help="Count vehicles crossing this line (repeatable). Standing at the first end facing the second, "
                   "crossings from left to right are 'in' (the summary's line_travel says which way that is on screen).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='Camera config JSON, every key optional: {"lines": [{"name", "x1", "y1", "x2", "y2", "count": '
                   'both|in|out}], "zones": [{"name", "points": [[x, y], ...] (3 or more), "kind": area|lane, '
                   '"heading_deg"}], "calibration": {"image_points": four [x, y], "road_points": four [metres, metres]}, '
                   '"speed_limit_kmh"}.')
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "torch"]), help="Detector backend.")
@click.option("--broker", "broker_url", help="kafka://host:port (default: ITS_FAUST_BROKER_URL, else an embedded broker "
              "on a free loopback port, stopped at the end; for one on a port of your choosing that stays, start "
              "`its-faust broker --port N` and give --broker kafka://127.0.0.1:N).")
def run(source, summary_path, camera_id, workers, fps, max_frames, line_specs, config_path, backend, broker_url) -> None:
    """Process a whole video file through the pipeline and print (and save) a summary.

    With --line or --config the summary also counts the vehicles that crossed each line,
    per direction and class.
    """
    set_env(broker_url=broker_url, model__backend=backend)
    settings = _settings()
    stop_on_terminate()
    try:
        if workers == 0 and not settings.broker_url:
            raise ValueError("--workers 0 uses the workers already running on ITS_FAUST_BROKER_URL (or --broker); "
                             "an embedded broker has none")
        setup = _setup_from(line_specs, config_path)
        _check_model(settings)
        _check_writable(summary_path)
        stop = StopSoftly()
        summary = asyncio.run(
            _run_with_progress(settings, _resolve_source(source, settings), camera_id, workers, fps, max_frames, setup,
                               stop)
        )
    except RUN_FAILURES as exc:
        fail(exc, code=1)
    except USER_ERRORS as exc:
        fail(exc)
    except (KeyboardInterrupt, asyncio.CancelledError):
        _aborted()
    payload = json.dumps(summary.__dict__, indent=2)
    click.echo(payload)
    _write_output(summary_path, payload)
    stop.release()
    if summary.frames_tracked < summary.frames_in:
        click.echo(f"its-faust: error: {summary.frames_in - summary.frames_tracked} frames were not tracked "
                   f"(see missing_seqs and its.dead-letters)", err=True)
        sys.exit(1)
    if summary.stopped_early:
        _stopped_early(summary.frames_in)


NO_WORKER_NOTE_S = 15.0  # run --workers 0: nothing tracked by then is said on the progress line


def _aborted() -> NoReturn:
    """A second Ctrl-C, or one before the camera sent a frame: everything started is stopped, nothing summed up."""
    click.echo("its-faust: aborted", err=True)
    sys.exit(130)


def _stopped_early(frames: int) -> NoReturn:
    click.echo(f"its-faust: stopped before the source's end: the result covers its first {frames} frames", err=True)
    sys.exit(130)  # as for Ctrl-C: a script can tell a cut-short result from a whole one


def _setup_from(line_specs, config_path):
    """--line options and a --config file -> what the camera is configured with (None when neither)."""
    from pydantic import ValidationError

    from its_faust.cameras import CameraSetup, parse_line, validation_message

    if not line_specs and not config_path:
        return None
    try:
        setup = CameraSetup.from_json(json.loads(config_path.read_text())) if config_path else CameraSetup()
    except ValidationError as exc:  # named: the file is where to look
        raise ValueError(f"{config_path}: {validation_message(exc)}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path}: not JSON ({exc})") from None
    except ValueError as exc:  # (not a JSON object, a key that is none: the file too)
        raise ValueError(f"{config_path}: {exc}") from None
    try:
        setup.lines = [parse_line(spec, default_name=f"line{i}") for i, spec in enumerate(line_specs, 1)] + setup.lines
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from None
    return setup.check()


async def _run_with_progress(settings, source, camera_id, workers, fps, max_frames, setup, stop: StopSoftly, *,
                             bare: bool = False):
    """``stop``: installed while the stack runs; the caller releases it once the summary is out. ``bare``: see
    ``pipeline.setup_for_run``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Column

    from its_faust.pipeline import run_source
    from its_faust.sources import FrameReader, SourceSpec

    spec = SourceSpec.parse(source)
    reader = FrameReader(spec)
    total = min(x for x in (reader.frame_count, max_frames) if x) if (reader.frame_count or max_frames) else None
    # The size of a decoded frame, as the tracks will have it (a file's container may say another, rotated one).
    first = None if spec.live or not setup else next(iter(reader), None)
    width, height = (first[0].shape[1], first[0].shape[0]) if first else (reader.width, reader.height)
    reader.close()
    if setup and width and height:  # a line nothing in view can cross is a mistake: say so now
        setup.check_in_view(width, height, Path(source).name)
    # On stderr: stdout is the summary's JSON (`its-faust run ... | jq` must get JSON only).
    with Progress(
        # On a narrow terminal the description is cut, not the figures.
        TextColumn("[bold]{task.description}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
        BarColumn(bar_width=12),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:.1f} fps  {task.fields[tracks]} tracks in view"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        expand=True,
        transient=False,
    ) as progress:
        starting = f"connecting to {settings.broker_url}, starting" if settings.broker_url else "starting a broker and"
        starting = f"{starting} {workers} worker{'s' if workers > 1 else ''}"
        if not workers:
            starting = f"connecting to {settings.broker_url}, whose running workers track it"
        task = progress.add_task(starting, total=total, fps=0.0, tracks=0)
        started = [None]
        stopping = "stopping: tracking the frames sent (Ctrl-C again aborts)"
        stop.on_first = lambda: progress.update(task, description=stopping)

        def on_progress(stats, tracked):
            stop.ready = True  # the camera sends: a Ctrl-C from now on stops it and sums up what was tracked
            started[0] = started[0] or stats.started_at
            elapsed = max(time.time() - started[0], 1e-6)
            ids = len({o.track_id for r in tracked[-30:] for o in r.objects})  # seen in the last 30 frames
            doing = stopping if stop.event.is_set() else f"tracking {Path(source).name}"
            if not tracked and not workers and elapsed > NO_WORKER_NOTE_S and not stop.event.is_set():
                # (--workers 0 on a broker with no worker waited with nothing said until its idle timeout)
                doing = f"no frame tracked in {elapsed:.0f} s: is a worker running? (its-faust tail workers)"
            progress.update(task, description=doing, completed=len(tracked), fps=len(tracked) / elapsed, tracks=ids)

        with stop:
            return await run_source(
                settings, source, camera_id=camera_id, workers=workers, fps=fps, max_frames=max_frames, setup=setup,
                bare=bare, on_progress=on_progress, stop=stop.event,
            )


@main.command()
@click.option("--source", default="dual_carriageway_abhishek.mp4", show_default=True, help="Video file, sample clip name, RTSP URL or webcam.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes to start.")
@click.option("--cameras", type=click.IntRange(min=1), default=1, show_default=True, help="Cameras to simulate from the same source.")
@click.option("--duration", type=click.FloatRange(0, min_open=True), help="Stop after the cameras have run this many seconds (default: until Ctrl-C).")
@click.option("--port", type=PORT, help="Dashboard/API port (default: ITS_FAUST_API__PORT, 8000).")
def demo(source: str, workers: int, cameras: int, duration: float | None, port: int | None) -> None:
    """Run broker, workers, camera(s) on a sample clip and the API; prints the dashboard's URL."""
    settings = _settings()
    stop_on_terminate()
    from its_faust.demo import run_demo

    try:
        _check_model(settings)
        asyncio.run(run_demo(settings, _resolve_source(source, settings), workers=workers, cameras=cameras,
                             duration=duration, port=port))
    except RUN_FAILURES as exc:
        fail(exc, code=1)
    except USER_ERRORS as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass
    with contextlib.suppress(OSError):  # `demo | head`: nobody reads any more
        click.echo("demo stopped: cameras, workers, the API and the broker")


@main.command()
@click.option("--source", default="dual_carriageway_abhishek.mp4", show_default=True, help="Video file or sample clip name.")
@click.option("--out", "out_path", type=click.Path(path_type=Path),
              help="Where the JSON goes [default: benchmarks/results/bench.json, or batch-sweep.json with --batch-sweep].")
@click.option("--skip-baseline", is_flag=True, help="Only measure the pipeline.")
@click.option("--batch-sweep", is_flag=True,
              help="Instead: the detector alone at batch sizes 1-64 on its device (a GPU when there is one; "
                   "set ITS_FAUST_MODEL__BACKEND=torch for the CUDA path).")
@click.option("--sizes", default="1,2,4,8,16,32,64", show_default=True, help="Batch sizes for --batch-sweep.")
@click.option("--repeat", type=click.IntRange(1, 20), default=1, show_default=True,
              help="Rounds of pipeline, ceiling and loops in turn; the median round is reported, with every round "
                   "and each ratio's spread (this machine's speed drifts between minutes).")
def bench(source: str, out_path: Path | None, skip_baseline: bool, batch_sweep: bool, sizes: str, repeat: int) -> None:
    """Pipeline vs the plain Ultralytics loop vs raw ONNX Runtime, on one clip, in one run (JSON to --out)."""
    # Options of the other measurement were ignored without a word (--sizes alone ran the whole benchmark).
    ctx = click.get_current_context()
    given = lambda name: ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT  # noqa: E731
    if batch_sweep and (skip_baseline or given("repeat")):
        raise click.UsageError("--batch-sweep measures the detector alone: --skip-baseline and --repeat are the pipeline "
                               "benchmark's")
    if not batch_sweep and given("sizes"):
        raise click.UsageError("--sizes is for --batch-sweep (the pipeline benchmark takes the batch from the settings)")
    settings = _settings()
    stop_on_terminate()
    out_path = out_path or Path("benchmarks/results") / ("batch-sweep.json" if batch_sweep else "bench.json")
    from its_faust import bench as benchmarks

    try:
        clip = _resolve_source(source, settings)
        _check_model(settings)
        _check_writable(out_path)
        if batch_sweep:
            try:
                batch_sizes = [int(s) for s in sizes.split(",") if s.strip()]
            except ValueError:
                raise ValueError(f"--sizes {sizes!r} is not a comma-separated list of batch sizes")
            if not batch_sizes or min(batch_sizes) < 1:
                raise ValueError(f"--sizes {sizes!r}: batch sizes are 1 or more")
            result = benchmarks.batch_sweep(settings, clip, batch_sizes)
            benchmarks.write_result(out_path, result)
        else:
            result = benchmarks.run_bench(settings, clip, out_path, skip_baseline=skip_baseline, repeat=repeat)
    except RUN_FAILURES as exc:
        fail(exc, code=1)
    except USER_ERRORS as exc:
        fail(exc)
    click.echo(json.dumps(result, indent=2))


def replay_camera_id(settings) -> str:
    """The camera a ``replay --source`` runs as: the tool's own, with the lines and zones it is given and none left
    from before. "replay" on a broker of its own; on a shared one, one of this replay's own: two replays at once
    there both ran as "replay", the second dropping the first's lines and sending its frames into the first's
    counts, and both exited 0 (a trial of jobs side by side)."""
    return f"replay-{secrets.token_hex(3)}" if settings.broker_url else "replay"


@main.command()
@click.option("--camera", "camera_id", callback=_camera_id, help="Camera whose stored tracks to replay (from its.tracks on the broker).")
@click.option("--source", help="Or: a video file to run through the whole pipeline again (as `run` does).")
@click.option("--line", "line_specs", multiple=True, metavar="X1,Y1,X2,Y2[:NAME]",
              help="Count with these lines instead of the camera's own (repeatable).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Camera config JSON as for `run`: what it gives replaces the camera's own.")
@click.option("--latest", is_flag=True,
              help="Only the camera's latest stretch of tracks: its latest run, or since it was last off for over "
                   "30 s (the result lists every stretch).")
@click.option("--from-seq", type=click.IntRange(min=0), help="Only tracks from this seq on (inclusive).")
@click.option("--to-seq", type=click.IntRange(min=0), help="Only tracks up to this seq (inclusive).")
@click.option("--out", "out_path", type=click.Path(path_type=Path), help="Write the result JSON here.")
@click.option("--broker", "broker_url", help="kafka://host:port (default: ITS_FAUST_BROKER_URL).")
def replay(camera_id, source, line_specs, config_path, latest, from_seq, to_seq, out_path, broker_url) -> None:
    """Rebuild a camera's analytics (counts, zone traffic, alerts) from its stored tracks.

    Uses the camera's current configuration unless --line/--config is given, and changes nothing
    on the broker. Every stored track of the camera by default, across its runs (each run, or a gap
    of over 30 s, starts a new stretch; the result lists them); --latest or --from-seq/--to-seq pick a part.
    With --source instead, a recorded video goes through the whole pipeline again (as `run` does: on a
    broker of its own unless ITS_FAUST_BROKER_URL is set), with the --line/--config given and nothing of an
    earlier replay, as camera "replay" (on a shared broker "replay-" and six hex digits, a camera of its own, removed
    once the replay is summed up: the result names it).
    """
    set_env(broker_url=broker_url)
    settings = _settings()
    stop_on_terminate()
    if bool(camera_id) == bool(source):
        fail(ValueError("give either --camera (replay stored tracks) or --source (replay a video file)"))
    try:
        setup = _setup_from(line_specs, config_path)
        _check_writable(out_path)
        if from_seq is not None and to_seq is not None and from_seq > to_seq:
            raise ValueError(f"--from-seq {from_seq} is after --to-seq {to_seq}")
        if source:
            if not setup:
                raise ValueError("replaying a video file needs a configuration: --line or --config")
            if latest or from_seq is not None or to_seq is not None:
                raise ValueError("--latest, --from-seq and --to-seq pick stored tracks: they go with --camera")
            stop = StopSoftly()
            camera_id = replay_camera_id(settings)
            summary = asyncio.run(_run_with_progress(settings, _resolve_source(source, settings), camera_id, 1, None,
                                                     None, setup, stop, bare=True))
            result = {"camera": camera_id, "source": summary.source, "frames": summary.frames_tracked, "counts": summary.counts,
                      "line_travel": summary.line_travel, "line_speeds": summary.line_speeds, "zones": summary.zones,
                      "alerts": summary.alerts, "stopped_early": summary.stopped_early}
        else:
            if not settings.broker_url:
                raise BrokerError("replay --camera needs the broker that holds the tracks: set ITS_FAUST_BROKER_URL or --broker")
            from its_faust.replay import replay_camera

            wait_reachable(settings.broker_url, 5.0)
            result = asyncio.run(replay_camera(bootstrap_servers(settings.broker_url), settings, camera_id, setup,
                                               from_seq=from_seq, to_seq=to_seq, latest=latest)).as_dict()
    except RUN_FAILURES as exc:
        fail(exc, code=1)
    except USER_ERRORS as exc:
        fail(exc)
    except (KeyboardInterrupt, asyncio.CancelledError):
        _aborted()
    payload = json.dumps(result, indent=2)
    click.echo(payload)
    _write_output(out_path, payload)
    if source:
        stop.release()
    if result.get("stopped_early"):
        _stopped_early(result["frames"])


@main.command()
@click.option("--host", help="Interface to listen on (default: ITS_FAUST_API__HOST, 127.0.0.1).")
@click.option("--port", type=PORT, help="Port (default: ITS_FAUST_API__PORT, 8000).")
@click.option("--broker", "broker_url", help="kafka://host:port (default: ITS_FAUST_BROKER_URL).")
def api(host, port, broker_url) -> None:
    """Serve the REST API, the SSE feeds and the dashboard (reads the result topics; run beside the workers)."""
    set_env(broker_url=broker_url, api__host=host, api__port=port)
    settings = _settings()
    if not settings.broker_url:
        fail(BrokerError("api needs a broker: set ITS_FAUST_BROKER_URL or --broker (start one: `its-faust broker`)"))
    try:
        wait_for_broker(settings.broker_url, settings.broker_wait_s)
        from api.process import check_can_listen

        check_can_listen(settings.api.host, settings.api.port)
    except USER_ERRORS as exc:
        fail(exc)
    import uvicorn

    from api.app import create_app

    from its_faust.open_files import raise_limit

    # A file per client: under 64, clients past ~40 had their connections reset, /health with them.
    raise_limit(API_OPEN_FILES, "the API (a file for each client connection)")
    app = create_app(settings, bootstrap_servers(settings.broker_url))
    click.echo(f"dashboard: http://{settings.api.host}:{settings.api.port}/   API docs: /docs")
    # loop="none": the loop ITS_FAUST_EVENT_LOOP installed (uvicorn's "auto" would pick uvloop regardless).
    # A live view (MJPEG) streams until its viewer leaves: on SIGTERM, uvicorn waited for it for ever (a
    # rollout waited out its grace period, then killed the API); it is cut after API_STOP_S.
    # uvicorn stops gracefully on SIGTERM, then raises the signal again under the handler it found: by default
    # that killed the process (exit 143, no "api stopped") where Ctrl-C ended cleanly. This one ends it alike
    # (and at once, before uvicorn listens). SIGHUP (the terminal closed), which uvicorn leaves alone, is a SIGTERM.
    def stop(*_) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # (nohup: kept running)
        signal.signal(signal.SIGHUP, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
    try:
        uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level="warning", loop="none",
                    timeout_graceful_shutdown=API_STOP_S)
    except SystemExit as exc:
        if exc.code:
            raise
    click.echo("api stopped")


main.add_command(cameras)
main.add_command(settings_command)
main.add_command(tail)

if __name__ == "__main__":
    main()
