"""``its-faust cameras``: commands go through the broker to a worker and come back as configurations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest


@pytest.fixture(scope="module")
def cameras(stack):
    env = {**os.environ, "ITS_FAUST_BROKER_URL": stack.broker_url}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "its_faust.cli", "cameras", *args], capture_output=True, text=True,
                              timeout=90, env=env)

    return run


def error_line(done) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("its-faust: error:"), done.stderr
    return lines[0]


def test_configure_a_camera_end_to_end(cameras):
    assert cameras("add", "cli-cam", "--name", "A1 north", "--source", "rtsp://10.0.0.7/a").returncode == 0
    done = cameras("add-line", "cli-cam", "140,120,620,120:north", "--count", "in")
    assert done.returncode == 0 and "add_line line 'north' applied (config v2)" in done.stdout, done.stderr
    assert cameras("add-zone", "cli-cam", "lane1", "0,0", "100,0", "100,50", "--lane", "--heading", "90").returncode == 0
    calibrate = ["--image", "100,300", "--image", "540,300", "--image", "400,100", "--image", "240,100",
                 "--road", "0,0", "--road", "7,0", "--road", "7,40", "--road", "0,40"]
    assert cameras("calibrate", "cli-cam", *calibrate).returncode == 0
    assert cameras("speed-limit", "cli-cam", "80").returncode == 0
    again = cameras("speed-limit", "cli-cam", "80")  # so already: nothing sent, no new version
    assert again.returncode == 0 and "nothing to change, it is so already (config v5)" in again.stdout, again.stderr
    listed = cameras("list", "--json")
    (config,) = [c for c in json.loads(listed.stdout) if c["camera_id"] == "cli-cam"]
    assert config["version"] == 5 and config["name"] == "A1 north" and config["speed_limit_kmh"] == 80
    assert config["lines"][0] == {"name": "north", "x1": 140, "y1": 120, "x2": 620, "y2": 120, "count": "in"}
    assert config["zones"][0]["kind"] == "lane" and config["calibration"]["road_points"][2] == [7, 40]
    table = cameras("list").stdout.splitlines()
    assert table[0].split() == ["CAMERA", "NAME", "VERSION", "LINES", "ZONES", "CALIBRATED", "LIMIT", "KM/H"]
    row = next(line for line in table if line.startswith("cli-cam "))
    assert row.index("A1 north") == table[0].index("NAME") and row.index("v5") == table[0].index("VERSION")
    assert row.split("  ")[-1].strip() == "80" and " yes " in row
    # Negative coordinates are values, not options: a line and a zone reaching past the frame's left edge.
    assert cameras("add", "cli-edge").returncode == 0
    # (the "h" of "shoulder" is not read as -h: the help is --help alone on these commands)
    assert cameras("add-line", "cli-edge", "-20,200,300,200:shoulder").returncode == 0
    assert cameras("add-zone", "cli-edge", "verge", "-10,0", "50,0", "50,40").returncode == 0
    (config,) = [c for c in json.loads(cameras("list", "--json").stdout) if c["camera_id"] == "cli-edge"]
    assert config["lines"][0]["name"] == "shoulder" and config["lines"][0]["x1"] == -20 and config["zones"][0]["points"][0] == [-10, 0]
    unnamed = cameras("add-line", "cli-edge", "0,100,300,100")  # the name it gets is told
    assert unnamed.returncode == 0 and "add_line line 'line1' applied" in unnamed.stdout, unnamed.stdout
    limit = cameras("speed-limit", "cli-edge", "50")  # with no calibration, no speeds: said so
    assert limit.returncode == 0 and "note: no calibration, so no speeds and no overspeed alerts" in limit.stdout, limit.stdout


def test_a_whole_set_up_is_applied_from_a_file_in_one_go_and_again_changes_nothing(cameras, tmp_path):
    """A junction of 50 lines and 64 zones took two minutes of add-line/add-zone, and nothing applied the file
    `run --config` takes to a live camera (a heavy-configuration trial)."""
    setup = {"lines": [{"name": "a", "x1": 0, "y1": 100, "x2": 600, "y2": 100},
                       {"name": "b", "x1": 0, "y1": 200, "x2": 600, "y2": 200, "count": "in"}],
             "zones": [{"name": "z", "points": [[0, 0], [100, 0], [100, 50]], "kind": "lane", "heading_deg": 90}],
             "calibration": {"image_points": [[100, 350], [540, 350], [400, 100], [240, 100]],
                             "road_points": [[0, 0], [7, 0], [7, 40], [0, 40]]},
             "speed_limit_kmh": 50}
    path = tmp_path / "junction.json"
    path.write_text(json.dumps(setup))
    done = cameras("apply", "apply-cam", str(path))
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "6 change(s)" in done.stdout and ("camera added; line added a, b; zone added z; calibration set; "
                                              "speed limit 50 km/h") in done.stdout, done.stdout
    again = cameras("apply", "apply-cam", str(path))
    assert again.returncode == 0 and "nothing to change (config v6)" in again.stdout, again.stdout
    setup["lines"] = [{**setup["lines"][0], "y1": 120, "y2": 120}]  # a moved, b gone
    setup["zones"].append({"name": "z2", "points": [[200, 0], [300, 0], [300, 50]]})
    del setup["speed_limit_kmh"]
    path.write_text(json.dumps(setup))
    done = cameras("apply", "apply-cam", str(path))
    assert done.returncode == 0 and "line replaced a; line removed b; zone added z2; speed limit removed" in done.stdout, done.stdout
    (config,) = [c for c in json.loads(cameras("list", "--json").stdout) if c["camera_id"] == "apply-cam"]
    assert [(l["name"], l["y1"]) for l in config["lines"]] == [("a", 120)] and [z["name"] for z in config["zones"]] == ["z", "z2"]
    assert config["speed_limit_kmh"] is None and config["calibration"] is not None
    kept = tmp_path / "one.json"
    kept.write_text(json.dumps({"lines": [{"name": "c", "x1": 0, "y1": 300, "x2": 600, "y2": 300}]}))
    done = cameras("apply", "apply-cam", str(kept), "--keep-others")
    assert done.returncode == 0 and done.stdout.strip().endswith("(config v12): line added c"), done.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"zones": [{"name": "bow", "points": [[0, 0], [100, 100], [100, 0], [0, 100]]}]}))
    assert "edges cross" in error_line(cameras("apply", "apply-cam", str(bad)))
    (config,) = [c for c in json.loads(cameras("list", "--json").stdout) if c["camera_id"] == "apply-cam"]
    assert config["version"] == 12  # nothing sent


def test_a_camera_added_under_an_id_that_differs_from_one_only_by_case_is_noted(cameras):
    """Ids are case-sensitive: a mistyped one (Cam-1 for cam-1) made another camera without a word (a trial)."""
    assert cameras("add", "case-cam").returncode == 0
    done = cameras("add", "Case-Cam")
    assert done.returncode == 0 and "add_camera applied" in done.stdout, (done.stdout, done.stderr)
    assert ("its-faust: note: 'Case-Cam' differs from camera 'case-cam' only by case: ids are case-sensitive, so this "
            "is another camera") in done.stderr
    assert "note" not in cameras("add", "Case-Cam", "--exist-ok").stderr  # already there: nothing to say


def test_a_set_up_script_run_again_with_exist_ok_finds_it_so_and_still_fails_on_a_conflict(cameras):
    """deploy/docker-compose.yml adds its camera and line on every `up`: the second time is not an error,
    but a line of that name that differs still is (it used to be `|| true`, which hid timeouts too)."""
    setup = [["add", "cli-setup", "--name", "Gate", "--exist-ok"], ["add-line", "cli-setup", "140,120,620,120:y120", "--exist-ok"],
             ["add-zone", "cli-setup", "bay", "0,0", "100,0", "100,50", "--exist-ok"]]
    for args in setup:
        assert cameras(*args).returncode == 0, args
    for args in setup:
        again = cameras(*args)
        assert again.returncode == 0 and "nothing to change, it is so already (config v3)" in again.stdout, (args, again.stderr)
    assert "already has a line 'y120'" in error_line(cameras("add-line", "cli-setup", "140,130,620,130:y120", "--exist-ok"))
    assert "already exists" in error_line(cameras("add", "cli-setup", "--name", "Another", "--exist-ok"))
    assert "already exists" in error_line(cameras("add", "cli-setup", "--name", "Gate"))  # without the flag: as before


@pytest.mark.parametrize(
    "args, message",
    [
        (["add-line", "cli-bad", "10,10,10,10"], "two distinct ends"),
        (["add-zone", "cli-bad", "bowtie", "0,0", "100,100", "100,0", "0,100"], "zone polygon is not simple: its edges cross at (50, 50)"),
        (["add-zone", "cli-bad", "two", "0,0", "1,1"], "cli-bad: zone 'two': points: needs at least 3 points, 2 given"),
        (["calibrate", "cli-bad", "--image", "0,0", "--image", "1,1", "--image", "2,2", "--image", "0,5",
          "--road", "0,0", "--road", "1,0", "--road", "1,1", "--road", "0,1"], "three of the four points"),
        (["speed-limit", "cli-bad", "fast"], "a number of km/h"),
        (["speed-limit", "cli-bad", "-5"], "kmh: Input should be greater than 0"),  # a value (refused), not "no such option -5"
        (["add-line", "no-such-cam", "0,0,10,10"], "unknown camera 'no-such-cam': add it first (`its-faust cameras add no-such-cam`)"),
        (["remove", "no-such-cam"], "unknown camera 'no-such-cam': nothing to remove"),
        (["remove-line", "cli-cam", "nope"], "has no line 'nope'"),
    ],
)
def test_bad_commands_get_a_precise_error_and_change_nothing(cameras, args, message):
    before = cameras("list", "--json").stdout
    assert message in error_line(cameras(*args))
    assert cameras("list", "--json").stdout == before


def test_cameras_without_a_broker_says_how_to_get_one():
    env = {k: v for k, v in os.environ.items() if k != "ITS_FAUST_BROKER_URL"}
    done = subprocess.run([sys.executable, "-m", "its_faust.cli", "cameras", "list"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert "set ITS_FAUST_BROKER_URL or --broker" in error_line(done)


def test_the_worker_rejects_what_the_cli_would_have_caught(stack, settings):
    """Any Kafka client may send commands: the configure agent checks them again and dead-letters the bad ones."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    from its_faust.cameras import CommandFailed, command, read_configs, send_commands
    from its_faust.codecs import decode
    from its_faust.topic_reader import TopicReader
    from its_faust.topic_names import CAMERA_COMMANDS, DEAD_LETTERS
    from schemas import DeadLetter
    from schemas.control import AddLine, RemoveZone
    from schemas.geometry import CountingLine

    async def go():
        with pytest.raises(CommandFailed, match="unknown camera 'ghost-cam': add it first"):
            await send_commands(stack.bootstrap, settings, [command("ghost-cam", AddLine(line=CountingLine(name="a", x1=0, y1=0, x2=9, y2=9)))])
        with pytest.raises(CommandFailed, match="has no zone 'nowhere'"):
            await send_commands(stack.bootstrap, settings, [command("cli-cam", RemoveZone(name="nowhere"))])
        letters = await TopicReader(stack.bootstrap, settings.topic(DEAD_LETTERS)).start()
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
        await producer.start()
        await producer.send_and_wait(settings.topic(CAMERA_COMMANDS), key=b"cli-cam",
                                     value=b'{"schema":"its.camera-command","v":1,"camera_id":"cli-cam","issued_at":1,"change":{"op":"add_line","line":{"name":"z","x1":1,"y1":1,"x2":1,"y2":1}}}')
        await producer.stop()
        reasons = []
        for _ in range(100):
            reasons += [decode(DeadLetter, m.value).reason for m in await letters.poll(100)]
            if reasons:
                break
        await letters.stop()
        return reasons, (await read_configs(stack.bootstrap, settings))

    reasons, configs = asyncio.run(go())
    assert any("two distinct ends" in r for r in reasons), reasons
    assert "ghost-cam" not in configs and [l.name for l in configs["cli-cam"].lines] == ["north"]


def test_on_a_fresh_broker_without_workers_list_is_empty_and_a_command_says_no_worker_applied_it():
    """Before, both stopped with an AssertionError traceback: no worker had created its.camera-configs yet."""
    from its_faust.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        env = {**os.environ, "ITS_FAUST_BROKER_URL": broker.url}

        def run(*args):
            return subprocess.run([sys.executable, "-m", "its_faust.cli", "cameras", *args], capture_output=True,
                                  text=True, timeout=90, env=env)

        listed = run("list")
        assert listed.returncode == 0 and "no cameras" in listed.stdout, listed.stderr
        # Queued, not refused: exit status 3 (it was 2, as a refusal, and a script sent it again).
        queued = run("add", "lonely-cam", "--timeout", "2")
        assert queued.returncode == 3 and "no worker applied the commands within 2s" in queued.stderr, queued.stderr
        assert "retry with --exist-ok, or ?exist_ok=true over HTTP" in queued.stderr  # a retry went to the dead letters
        waited = run("add", "lonely-cam", "--timeout", "5")  # a longer wait is told as it starts
        assert waited.returncode == 3 and "lonely-cam: sent; waiting for a worker to apply it (up to 5 s)" in waited.stderr
        refused = run("add", "lonely-cam", "--timeout", "-1")  # (it sent the command, and waited for nothing)
        assert refused.returncode == 2 and "Invalid value for '--timeout'" in refused.stderr


def test_a_line_or_zone_wholly_outside_the_tracked_frame_is_refused(cameras, stack, settings):
    """As the API does: once a frame of the camera has been tracked, its size is known (read from its.tracks)."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    from its_faust.codecs import encode
    from its_faust.topic_reader import partition_for
    from its_faust.topic_names import TRACKS
    from schemas import TrackRecord

    assert cameras("add", "cli-view").returncode == 0
    assert cameras("add-line", "cli-view", "700,10,900,10:beyond").returncode == 0  # nothing tracked yet: no size to check

    def track_record(camera_id, seq):
        return TrackRecord(camera_id=camera_id, seq=seq, captured_at=1.0, width=640, height=360, detected_at=1.1,
                           tracked_at=1.2, tracker_frame=1, model="yolo11n@test", detections=0, worker="w", objects=[])

    async def tracked_frame(then_others: int):
        """One frame of cli-view, then ``then_others`` of another camera on the same partition (a busy neighbour)."""
        topic = settings.topic(TRACKS)
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=20)
        await producer.start()
        partition = partition_for(b"cli-view", len(await producer.partitions_for(topic)))
        await producer.send_and_wait(topic, key=b"cli-view", value=encode(track_record("cli-view", 0)))
        sent = [await producer.send(topic, key=b"neighbour", value=encode(track_record("neighbour", i)), partition=partition)
                for i in range(then_others)]
        await asyncio.gather(*sent)
        await producer.stop()

    asyncio.run(tracked_frame(then_others=1200))  # more than the first look back
    before = cameras("list", "--json").stdout
    line = error_line(cameras("add-line", "cli-view", "700,10,900,10:far"))
    assert "line 'far' lies wholly outside the camera's 640x360 frame (x 700 to 900" in line, line
    assert "zone 'sky' lies wholly outside" in error_line(cameras("add-zone", "cli-view", "sky", "0,-50", "100,-50", "100,-10"))
    far = [a for x, y in ((5000, 5000), (5400, 5000), (5400, 5100), (5000, 5100)) for a in ("--image", f"{x},{y}")]
    road = [a for p in ("0,0", "7,0", "7,40", "0,40") for a in ("--road", p)]
    assert "the calibration's image points lie wholly outside" in error_line(cameras("calibrate", "cli-view", *far, *road))
    assert cameras("list", "--json").stdout == before
    # Reaching past the edge is fine: part of it is in view.
    assert cameras("add-line", "cli-view", "600,10,900,10:edge").returncode == 0


def test_a_cameras_source_warns_when_it_is_not_configured_stops_when_it_is_removed_and_will_not_start_again(cameras, stack):
    """A source sending under a misspelt id was accepted silently; one whose camera was removed went on
    taking a worker's time, with nothing to show for it."""
    env = {**os.environ, "ITS_FAUST_BROKER_URL": stack.broker_url}
    ingest = [sys.executable, "-m", "its_faust.cli", "ingest", "--source", "dual_carriageway_abhishek.mp4"]
    assert cameras("add", "source-cam").returncode == 0
    typo = subprocess.run([*ingest, "--camera", "sorce-cam", "--max-frames", "3"], capture_output=True, text=True,
                          timeout=90, env=env)
    assert typo.returncode == 0 and "camera 'sorce-cam' is not configured" in typo.stderr, typo.stderr
    assert "source-cam" in typo.stderr.split("configured:")[-1]  # what the operator may have meant
    source = subprocess.Popen([*ingest, "--camera", "source-cam", "--loop", "--live", "--fps", "10"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out_lines: list[str] = []
    err_lines: list[str] = []
    readers = [threading.Thread(target=lambda: out_lines.extend(source.stdout), daemon=True),
               threading.Thread(target=lambda: err_lines.extend(source.stderr), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("started" in line for line in err_lines) and time.monotonic() < deadline:
            assert source.poll() is None, err_lines
            time.sleep(0.2)
        assert any("started" in line for line in err_lines), err_lines  # sending frames
        assert cameras("remove", "source-cam").returncode == 0
        source.wait(timeout=30)
    finally:
        source.kill()
    for reader in readers:
        reader.join(10)
    out, err = "".join(out_lines), "".join(err_lines)
    assert source.returncode == 0 and "source-cam: the camera was removed:" in out, (out, err)
    assert "camera 'source-cam' was removed: its source stops" in err
    assert "@ 30 fps, sent at 10 fps)" in err  # the started event: the rate it sends at, not only the file's
    assert "finished (the camera was removed: " in err  # the finished event says why
    again = subprocess.run([*ingest, "--camera", "source-cam", "--max-frames", "3"], capture_output=True, text=True,
                           timeout=90, env=env)
    assert again.returncode == 2 and "camera 'source-cam' was removed (`its-faust cameras add source-cam`" in again.stderr
