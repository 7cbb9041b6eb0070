"""The commands a new user runs, as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from its_faust.broker import free_port


def its_faust(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "its_faust.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_run_writes_a_summary(tmp_path):
    summary = tmp_path / "summary.json"
    camera = tmp_path / "camera.json"
    # The right-hand carriageway declared as running *up* the frame: its traffic drives the wrong way.
    camera.write_text(json.dumps({
        "zones": [{"name": "southbound", "points": [[380, 60], [600, 60], [600, 360], [300, 360]], "heading_deg": 270}],
        "calibration": {"image_points": [[400, 60], [520, 60], [560, 360], [300, 360]],
                        "road_points": [[0, 60], [11, 60], [11, 0], [0, 0]]},
    }))
    done = its_faust("run", "--source", "dual_carriageway_abhishek.mp4", "--max-frames", "60", "--summary", str(summary),
                     "--line", "140,120,620,120:y120", "--line", "0,300,1,360", "--config", str(camera))
    assert done.returncode == 0, done.stderr
    result = json.loads(summary.read_text())
    assert result["frames_in"] == result["frames_tracked"] == 60
    assert result["scene_s"] == pytest.approx(59 / 30, abs=0.01)  # the clip's video time, at its 30 fps
    assert result["detections"] > 300 and result["distinct_track_ids"] > 5
    assert result["fps"] > 0 and result["throughput_fps"] > 0 and set(result["latency_ms"]) == {"p50", "p95", "p99"}
    assert result["missing_seqs"] == [] and result["duplicate_track_records"] == 0
    cpu = result["cpu_ms_per_frame"]  # inference alone is tens of ms per frame on these CPUs
    assert {"worker-1", "camera_and_reader", "total"} <= set(cpu) <= {"broker", "worker-1", "camera_and_reader", "total"}
    assert cpu["worker-1"] > 10  # the broker is there unless an external one is configured
    assert cpu["total"] == pytest.approx(sum(v for k, v in cpu.items() if k != "total"), abs=0.2)
    assert 0 < result["cores_busy"] <= os.cpu_count()
    # One car comes down the right-hand carriageway over y=120 by frame 60 (hand count: frame 18).
    assert result["counts"] == {"y120": {"in": {"car": 1}}, "line2": {}}
    assert result["line_travel"] == {"y120": {"in": "down", "out": "up"}, "line2": {"in": "left", "out": "right"}}
    assert result["line_speeds"] == {}  # the car crosses y120 left of the calibrated area: no speed is claimed there
    zone = result["zones"]["southbound"]
    assert zone["entries"] >= 2 and zone["exits"] >= 1 and zone["mean_speed_kmh"] is not None  # calibrated: speeds
    assert [a["kind"] for a in result["alerts"] if a["state"] == "raised"][:1] == ["wrong_way"]
    # Each alert is placed in the clip: 60 frames at 30 fps are 2 s, and it needs 1 s of wrong-way driving.
    assert all(1.0 <= a["since_start_s"] < 2.0 and a["severity"] for a in result["alerts"]), result["alerts"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--source", "/no/such/clip.mp4"], "cannot open video /no/such/clip.mp4"),
        (["run", "--source", "no_such_clip.mp4"], "no_such_clip.mp4 not found"),
        (["run", "--source", "dual_carriageway_abhishek.mp4", "--line", "5,5,5,5"], "two distinct ends"),
        (["run", "--source", "dual_carriageway_abhishek.mp4", "--line", "1,2,3:a"], "expected x1,y1,x2,y2[:name]"),
        (["run", "--source", "dual_carriageway_abhishek.mp4", "--line", "0,0,9,9:a", "--line", "1,1,8,8:a"], "line names must differ"),
        (["run", "--source", "dual_carriageway_abhishek.mp4", "--line", "700,10,900,10:far"],
         "dual_carriageway_abhishek.mp4: line 'far' lies wholly outside the camera's 640x360 frame (x 700 to 900"),
        (["replay", "--source", "dual_carriageway_abhishek.mp4", "--line", "0,-9,99,-9:sky"], "line 'sky' lies wholly outside"),
        (["ingest", "--source", "dual_carriageway_abhishek.mp4", "--broker", "kafka://127.0.0.1:PORT"], "is not reachable"),
        # Checked before the clip is processed: this used to end a whole run with two tracebacks.
        (["run", "--source", "dual_carriageway_abhishek.mp4", "--summary", "/proc/nope/s.json"], "cannot write /proc/nope/s.json"),
        (["bench", "--out", "/proc/nope/b.json"], "cannot write /proc/nope/b.json"),
        (["bench", "--batch-sweep", "--sizes", "2,0"], "'2,0': batch sizes are 1 or more"),  # said "no frames could be read"
        (["replay", "--source", "dual_carriageway_abhishek.mp4", "--line", "0,0,9,9", "--out", "/"], "cannot write /: it is a folder"),
        (["api"], "api needs a broker: set ITS_FAUST_BROKER_URL or --broker (start one: `its-faust broker`)"),
        (["tail", "tracks"], "tail needs the broker that holds the topic: set ITS_FAUST_BROKER_URL or --broker"),
        (["cameras", "list"], "cameras needs a running broker and worker: set ITS_FAUST_BROKER_URL or --broker (start: "
                              "`its-faust broker`, `its-faust worker`"),
    ],
)
def test_user_errors_are_one_line(args, message):
    args = [a.replace("PORT", str(free_port())) for a in args]
    done = its_faust(*args, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("its-faust: error:") and message in lines[0], done.stderr


def test_a_cameras_change_on_a_broker_that_does_not_answer_exits_4_not_as_a_refusal():
    # A set-up script told "broker down, try again" from "refused, do not" by the message alone (a trial).
    for args in (["cameras", "add-line", "cam-x", "10,200,630,200:second"], ["cameras", "list"]):
        done = its_faust(*args, "--broker", f"kafka://127.0.0.1:{free_port()}", timeout=60)
        assert done.returncode == 4 and "is not reachable" in done.stderr, (args, done.returncode, done.stderr)


@pytest.mark.parametrize(
    "env, args, message",
    [
        ({"ITS_FAUST_PARTITIONS": "many"}, ["run", "--source", "dual_carriageway_abhishek.mp4"],
         "invalid settings: ITS_FAUST_PARTITIONS: Input should be a valid integer"),
        ({"ITS_FAUST_TRACKER__MAX_GAP_S": "0.4"}, ["cameras", "list"],
         "ITS_FAUST_INGEST__FROZEN_KEEPALIVE_S (0.25) must be at most ITS_FAUST_TRACKER__MAX_GAP_S / 2 (0.2)"),
        ({"ITS_FAUST_PROFILE": "prod"}, ["broker"], "invalid settings: unknown profile 'prod'"),
        ({"ITS_FAUST_MODEL__CLASSES": "[2, 7"}, ["run", "--source", "dual_carriageway_abhishek.mp4"], "invalid settings:"),
        # These four used to start a worker that failed: a 50-line traceback, or (imgsz) a run with no detections.
        ({"ITS_FAUST_MODEL__BACKEND": "bogus"}, ["run", "--source", "dual_carriageway_abhishek.mp4"],
         "ITS_FAUST_MODEL__BACKEND: Input should be 'auto', 'onnxruntime'"),
        ({"ITS_FAUST_MODEL__WEIGHTS": "nosuch.pt"}, ["run", "--source", "dual_carriageway_abhishek.mp4"], "nosuch.pt not found"),
        ({"ITS_FAUST_MODEL__IMGSZ": "0"}, ["run", "--source", "dual_carriageway_abhishek.mp4"],
         "ITS_FAUST_MODEL__IMGSZ: Input should be greater than or equal to 32"),
        ({"ITS_FAUST_LOG_LEVEL": "loud"}, ["cameras", "list"], "ITS_FAUST_LOG_LEVEL: Input should be 'debug'"),
        ({"ITS_FAUST_BROKER_URL": "kafka://127.0.0.1"}, ["cameras", "list"], "127.0.0.1 is not host:port"),
        ({"ITS_FAUST_BROKER_URL": "http://127.0.0.1:9092"}, ["run", "--source", "dual_carriageway_abhishek.mp4"],
         "a Kafka broker is kafka://host:port, not http://"),
        ({}, ["cameras", "list", "--broker", "http://127.0.0.1:9092"],
         "--broker (ITS_FAUST_BROKER_URL): 'http://127.0.0.1:9092': a Kafka broker is kafka://host:port, not http://"),
        ({}, ["run", "--source", "dual_carriageway_abhishek.mp4", "--broker", "http://127.0.0.1:9092"],
         "--broker (ITS_FAUST_BROKER_URL): 'http://127.0.0.1:9092'"),
        ({}, ["run", "--source", "dual_carriageway_abhishek.mp4", "--workers", "0"],
         "--workers 0 uses the workers already running on ITS_FAUST_BROKER_URL (or --broker); an embedded broker has none"),
        ({}, ["replay", "--camera", "cam-1", "--from-seq", "9", "--to-seq", "3", "--broker", "kafka://127.0.0.1:1"],
         "--from-seq 9 is after --to-seq 3"),
    ],
)
def test_invalid_settings_are_one_line(env, args, message):
    done = subprocess.run([sys.executable, "-m", "its_faust.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("its-faust: error:") and message in lines[0], done.stderr


def test_demo_runs_and_stops_by_itself():
    import re

    port = free_port()
    # Rich takes these to mean a terminal even on a pipe; the plain lines are what is asserted here.
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    done = subprocess.run([sys.executable, "-m", "its_faust.cli", "demo", "--duration", "12", "--port", str(port)],
                          capture_output=True, text=True, timeout=150, env=env)
    assert done.returncode == 0, done.stderr
    assert f"dashboard: http://127.0.0.1:{port}/" in done.stdout
    assert re.search(r"^logs: \S+its-faust-\S+  \(broker.log, worker-1.log, api.log; ", done.stdout, re.MULTILINE), done.stdout
    # Not a terminal: the figures come as lines (every 5 s and at the end) instead of a live table.
    rows = re.findall(r"demo-cam-1: sent (\d+) dropped \d+ tracked (\d+) fps", done.stdout)
    assert len(rows) >= 2, done.stdout[-2000:]
    sent, tracked = map(int, rows[-1])
    assert sent > 30 and tracked > 30  # frames flowed through broker, worker and tracker
    # The sample clip's counting line, from the counts topic (what crossed it by then varies with the speed).
    assert re.findall(r"demo-cam-1: .* counts y120 in \d+ out \d+$", done.stdout, re.MULTILINE), done.stdout[-2000:]
    assert "demo-cam-1 play dual_carriageway_abhishek.mp4 in a loop" in done.stdout  # why counts pass one clip's
    assert done.stdout.rstrip().endswith("demo stopped: cameras, workers, the API and the broker"), done.stdout[-500:]


def test_bad_option_values_are_refused_before_anything_starts():
    for args, option in ((["run", "--source", "dual_carriageway_abhishek.mp4", "--workers", "-1"], "--workers"),
                         (["run", "--source", "dual_carriageway_abhishek.mp4", "--fps", "-3"], "--fps"),
                         (["demo", "--cameras", "0"], "--cameras"),
                         (["demo", "--port", "70000"], "--port"),
                         (["run", "--source", "dual_carriageway_abhishek.mp4", "--camera", "bad id!"], "--camera"),
                         (["ingest", "--source", "dual_carriageway_abhishek.mp4", "--camera", ""], "--camera"),
                         (["replay", "--camera", "cam/1"], "--camera")):
        done = its_faust(*args, timeout=60)
        assert done.returncode == 2 and f"Invalid value for '{option}'" in done.stderr, (args, done.stderr)


def test_an_api_whose_port_is_taken_says_so_before_it_starts():
    from its_faust.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:  # a real broker passes the broker check; its port is the one taken
        port = broker.port
        done = its_faust("api", "--broker", broker.url, "--port", str(port), timeout=60)
    assert done.returncode == 2 and "dashboard:" not in done.stdout, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port} on 127.0.0.1 is in use" in lines[0], done.stderr


def _outliving(processes, timeout: float = 10.0) -> list[str]:
    """The command lines of ``processes`` still running after ``timeout`` (zombies of an exited parent are
    gone); those are then killed, so that a failing test leaves nothing running into the next ones."""
    import contextlib

    import psutil

    _, alive = psutil.wait_procs(processes, timeout=timeout)
    left = []
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.status() != psutil.STATUS_ZOMBIE:
                left.append(" ".join(proc.cmdline()))
                proc.kill()
    return left


def _run_until_the_camera_sends(*args):
    """``its-faust run`` on the short clip, returned once its camera has sent frames for a few seconds, with
    the processes it started."""
    import time

    import psutil

    run = subprocess.Popen([sys.executable, "-m", "its_faust.cli", "run", "--source", "dual_carriageway_abhishek.mp4",
                            "--fps", "10", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in run.stderr:  # logs: the camera starts once the broker and the worker are up
        if "camera cam-1: started" in line:
            break
    time.sleep(3)
    started = psutil.Process(run.pid).children(recursive=True)
    assert any("tansu" in p.name() for p in started) and any("worker" in " ".join(p.cmdline()) for p in started)
    return run, started


def test_sigterm_stops_a_run_and_everything_it_started_and_sums_up_what_it_tracked(tmp_path):
    """kill, timeout and systemd send SIGTERM: the broker and workers (in sessions of their own) used to
    outlive the run, and its work folder stayed. Like Ctrl-C, it stops the camera, tracks the frames sent,
    and writes the summary of those (it used to end with nothing)."""
    import signal

    run, started = _run_until_the_camera_sends("--summary", str(tmp_path / "s.json"))
    try:
        workdirs = {arg.split("/worker-")[0] for p in started for arg in p.cmdline() if "/worker-" in arg}
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=60)
        assert _outliving(started) == []
        assert workdirs and not any(os.path.exists(d) for d in workdirs), workdirs
        assert "Traceback" not in err and run.returncode == 130 and out, err
        summary = json.loads(out)
        assert summary == json.loads((tmp_path / "s.json").read_text()) and summary["stopped_early"]
        assert 0 < summary["frames_tracked"] == summary["frames_in"] < 341 and summary["missing_seqs"] == []
        assert f"stopped before the source's end: the result covers its first {summary['frames_in']} frames" in err
    finally:
        if run.poll() is None:
            run.kill()


def test_a_run_killed_outright_has_its_broker_workers_and_work_folder_stopped_and_removed_by_its_guard():
    """``kill -9`` (the OOM killer) of a run stopped nothing: its broker kept its port, its worker (some 760 MB)
    ran on under init, and its work folder stayed in /tmp (a trial of jobs side by side)."""
    import signal

    run, started = _run_until_the_camera_sends()
    try:
        workdirs = {arg.split("/worker-")[0] for p in started for arg in p.cmdline() if "/worker-" in arg}
        guards = [p for p in started if "its_faust.child_guard" in p.cmdline()]
        assert len(guards) == 1 and workdirs, [p.cmdline() for p in started]
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=10)
        assert _outliving(started, timeout=30) == []  # the guard too, its work done
        assert not any(os.path.exists(d) for d in workdirs), workdirs
    finally:
        if run.poll() is None:
            run.kill()


def test_a_run_whose_worker_is_killed_says_so_at_once_and_fails():
    """A worker killed from outside (the kernel's out-of-memory killer) leaves nothing in its log: the run waited
    out its 60 s idle timeout, then said its workers had logged no warning (a trial under a memory limit)."""
    import signal
    import time

    run, started = _run_until_the_camera_sends()
    try:
        worker = next(p for p in started if "worker" in " ".join(p.cmdline()))
        worker.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        out, err = run.communicate(timeout=60)
        assert run.returncode == 1 and out == "", err
        assert time.monotonic() - killed_at < 20, err  # not after the idle timeout
        assert "its-faust: error: no worker is left to track the frames" in err, err
        assert "worker-1 was killed (SIGKILL): out of memory?" in err and "Traceback" not in err, err
        assert _outliving(started) == []
    finally:
        if run.poll() is None:
            run.kill()


def test_a_second_ctrl_c_aborts_and_still_stops_everything():
    import signal
    import time

    run, started = _run_until_the_camera_sends()
    try:
        run.send_signal(signal.SIGINT)
        time.sleep(0.3)
        run.send_signal(signal.SIGTERM)  # a second one of any kind (a supervisor's TERM after an INT)
        for _ in range(3):  # more are let be: the run is stopping what it started
            run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
        assert _outliving(started) == []
        assert run.returncode == 130 and out == "" and err.strip().endswith("its-faust: aborted"), err
        assert "Traceback" not in err
    finally:
        if run.poll() is None:
            run.kill()


def test_sigterm_during_start_up_twice_still_stops_everything():
    """A signal while the broker and worker come up, and a second one during the stop (a supervisor that
    repeats itself): nothing started may outlive the run."""
    import contextlib
    import signal
    import time

    import psutil

    run = subprocess.Popen([sys.executable, "-m", "its_faust.cli", "run", "--source", "dual_carriageway_abhishek.mp4"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 60
        while not any("tansu" in " ".join(_cmdline(p)) for p in seen.values()) and time.monotonic() < deadline:
            with contextlib.suppress(psutil.NoSuchProcess):
                seen.update({p.pid: p for p in psutil.Process(run.pid).children(recursive=True)})
            time.sleep(0.02)
        assert seen, "the run started nothing"
        run.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with contextlib.suppress(psutil.NoSuchProcess):  # what came up meanwhile must go too
            seen.update({p.pid: p for p in psutil.Process(run.pid).children(recursive=True)})
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
        assert _outliving(list(seen.values())) == []
        assert "Traceback" not in run.stderr.read()
    finally:
        if run.poll() is None:
            run.kill()


def test_a_signal_while_it_stops_does_not_cut_the_stop_short():
    """A run stops its workers, then its broker: a SIGTERM in between (``timeout``, a supervisor) used
    to leave the broker running."""
    import contextlib
    import glob
    import signal
    import time

    import psutil

    run = subprocess.Popen([sys.executable, "-m", "its_faust.cli", "run", "--source", "dual_carriageway_abhishek.mp4",
                            "--max-frames", "20"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 120
        stopping = False
        while not stopping and run.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(psutil.NoSuchProcess):
                seen.update({p.pid: p for p in psutil.Process(run.pid).children(recursive=True)})
            workdirs = {arg.split("/worker-")[0] for p in seen.values() for arg in _cmdline(p) if "/worker-" in arg}
            # The worker logs that it stops once the run has everything and has begun its own stop.
            stopping = any("Stopping" in Path(log).read_text(errors="replace")
                           for d in workdirs for log in glob.glob(f"{d}/worker-*.log"))
            time.sleep(0.02)
        assert stopping, "the worker was never seen stopping"
        assert any("tansu" in " ".join(_cmdline(p)) for p in seen.values())  # the broker is still to stop
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
        assert _outliving(list(seen.values())) == []
    finally:
        if run.poll() is None:
            run.kill()


def test_a_demo_whose_output_is_closed_stops_cleanly():
    """``its-faust demo | head -1``: the reader leaves; the demo used to hang in its clean-up for ever
    (a failed print skipped its cameras' stop, whose last flush then waited on a stopped broker)."""
    import time

    import psutil

    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    demo = subprocess.Popen([sys.executable, "-m", "its_faust.cli", "demo", "--duration", "120", "--port", str(free_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        assert demo.stdout.readline().startswith(b"dashboard:")
        children = psutil.Process(demo.pid).children(recursive=True)
        demo.stdout.close()  # what `head -1` does after its line
        started = time.monotonic()
        assert demo.wait(timeout=60) == 0
        assert time.monotonic() - started < 30  # at its next figures line (every 5 s), not at --duration
        assert _outliving(children) == []
    finally:
        if demo.poll() is None:
            demo.kill()


def test_sigterm_while_the_broker_command_starts_its_broker():
    import contextlib
    import signal
    import time

    import psutil

    broker = subprocess.Popen([sys.executable, "-m", "its_faust.cli", "broker", "--port", "0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 30
        while not children and time.monotonic() < deadline:
            with contextlib.suppress(psutil.NoSuchProcess):
                children = psutil.Process(broker.pid).children(recursive=True)
            time.sleep(0.005)
        assert children, "no broker child seen"
        broker.send_signal(signal.SIGTERM)  # as soon as the child exists: most often before it answers
        broker.wait(timeout=30)
        assert _outliving(children) == []
    finally:
        if broker.poll() is None:
            broker.kill()


def test_the_broker_command_warns_once_it_holds_more_than_the_limit():
    """It keeps every record and slows as it fills: people running it are told, once, before it hurts."""
    import os

    env = {**os.environ, "ITS_FAUST_EMBEDDED_BROKER_WARN_MB": "1"}  # a broker holds more than 1 MB from its start
    broker = subprocess.Popen([sys.executable, "-m", "its_faust.cli", "broker", "--port", "0"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = broker.communicate(timeout=8)
    except subprocess.TimeoutExpired:  # it runs until stopped: stop it and read what it said
        broker.terminate()
        out, err = broker.communicate(timeout=30)
    assert "broker listening: ITS_FAUST_BROKER_URL=kafka://127.0.0.1:" in out
    assert "past 1 MB (ITS_FAUST_EMBEDDED_BROKER_WARN_MB)" in out
    assert err.count("the embedded broker holds") == 1 and "ITS_FAUST_BROKER_URL" in err


def _cmdline(process) -> list[str]:
    import psutil

    try:
        return process.cmdline()
    except psutil.Error:
        return []


def test_help_lists_the_commands():
    done = its_faust("--help")
    for command in ("worker", "broker", "ingest", "run", "demo", "bench", "cameras", "replay", "api", "tail"):
        assert command in done.stdout
