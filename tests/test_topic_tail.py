"""``its-faust tail``'s lines: every topic's records as the pipeline writes them, and what does not fit."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from its_faust.codecs import encode
from its_faust.topic_names import ALL
from its_faust.topic_tail import LINE_WIDTH, SUMMARIES, human_line, json_line, summary
from schemas import Box, CameraEvent, DeadLetter, DetectionRecord, FrameRecord, ModelInfo, TrackedObject, TrackRecord
from schemas.analytics import Alert, CountUpdate, Crossing, FrameRef, WindowCount, ZoneEvent, ZoneStats, ZoneWindow
from schemas.control import AddLine, CameraCommand, CameraConfig
from schemas.geometry import CountingLine
from schemas.workers import WorkerStatus

AT = 1_700_000_000.0
CAMERA = {"camera_id": "cam-1", "seq": 7, "captured_at": AT}
CAR = {"x1": 1, "y1": 2, "x2": 30, "y2": 40, "conf": 0.9, "cls": 2, "label": "car"}
TRUCK = {**CAR, "cls": 7, "label": "truck"}
LINE = CountingLine(name="y120", x1=0, y1=120, x2=640, y2=120)
MINUTE = WindowCount(start=AT, end=AT + 60, count=3)
ZONE_WINDOW = ZoneWindow(start=AT, end=AT + 60, entries=2, exits=1)

# One record of each topic, as the stage that writes it builds it, and what its line must say.
RECORDS = {
    "frames": (FrameRecord(**CAMERA, width=640, height=360, jpeg=b"\xff" * 3000), "seq 7  640x360  JPEG 2.9 KiB"),
    "detections": (
        DetectionRecord(**CAMERA, width=640, height=360, detected_at=AT, inference_ms=48.26, batch_size=1,
                        model=ModelInfo(name="yolo11n", version="abc", backend="onnxruntime"),
                        boxes=[Box(**CAR), Box(**CAR), Box(**TRUCK)]),
        "seq 7  3 boxes (car 2, truck 1)  48.3 ms in a batch of 1, yolo11n on cpu",
    ),
    "tracks": (
        TrackRecord(**CAMERA, width=640, height=360, detected_at=AT + 0.1, tracked_at=AT + 0.25, tracker_frame=7,
                    model="yolo11n@abc", detections=2, worker="host:1",
                    objects=[TrackedObject(track_id=4, **CAR), TrackedObject(track_id=9, **TRUCK)]),
        "seq 7  2 tracks (car 1, truck 1): ids 4,9  250 ms after capture",
    ),
    "camera-events": (CameraEvent(camera_id="cam-1", kind="stream_lost", at=AT, reason="read failed", frames_sent=90),
                      "stream_lost: read failed"),
    "dead-letters": (
        DeadLetter(stage="detect", topic="its.frames", partition=3, offset=41, key=b"cam-1", value=b"not json",
                   reason="invalid FrameRecord: payload: Invalid JSON", failed_at=AT),
        "detect rejected its.frames[3]@41 (8 bytes): invalid FrameRecord: payload: Invalid JSON",
    ),
    "crossings": (Crossing(**CAMERA, line="y120", direction="in", track_id=4, label="car", cls=2, speed_kmh=52.4),
                  "line y120 in: track 4 car, 52 km/h"),
    "counts": (CountUpdate(**CAMERA, line="y120", direction="out", label="truck", total=12, minute=MINUTE, quarter=MINUTE),
               "line y120 out truck: total 12, 3 this minute"),
    "zone-events": (ZoneEvent(**CAMERA, zone="lane1", kind="exit", track_id=4, label="car", occupancy=2, dwell_s=3.26),
                    "zone lane1 exit: track 4 car, 3.3 s inside; 2 inside"),
    "zone-stats": (ZoneStats(**CAMERA, zone="lane1", occupancy=2, entries=5, exits=3, minute=ZONE_WINDOW, quarter=ZONE_WINDOW),
                   "zone lane1: 2 inside, 5 entries, 3 exits"),
    "alerts": (
        Alert(**CAMERA, alert_id="cam-1:wrong_way:track-4:7", kind="wrong_way", state="raised", severity="critical",
              subject="track-4", started_at=AT, snapshot=FrameRef(camera_id="cam-1", seq=7), message="car 4 drives the wrong way"),
        "wrong_way (critical) raised: car 4 drives the wrong way",
    ),
    "camera-commands": (
        CameraCommand(camera_id="cam-1", command_id="c1", issued_at=AT, issued_by="ana", change=AddLine(line=LINE)),
        'add_line {"line":{"name":"y120","x1":0.0,"y1":120.0,"x2":640.0,"y2":120.0,"count":"both"}} by ana (c1)',
    ),
    "camera-configs": (
        CameraConfig(camera_id="cam-1", version=2, last_command_id="c1", updated_at=AT, name="north", lines=[LINE],
                     speed_limit_kmh=50),
        "v2 north lines 1, zones 0, limit 50 km/h",
    ),
    "workers": (
        WorkerStatus(worker="host:1", state="running", at=AT, started_at=AT - 60, interval_s=5, partitions=[0, 2],
                     model=ModelInfo(name="yolo11n", version="abc", backend="onnxruntime"), frames_tracked=900,
                     fps=24.56, frames_waiting=3),
        "running: partitions 0,2, 24.6 fps, 900 frames tracked, 3 frames waiting, yolo11n on cpu",
    ),
}


def test_every_topic_has_a_summary_and_an_example():
    assert set(SUMMARIES) == set(ALL) == set(RECORDS)


@pytest.mark.parametrize("topic", sorted(RECORDS))
def test_a_record_of_each_topic_in_a_few_words(topic):
    record, expected = RECORDS[topic]
    assert summary(topic, encode(record)) == expected


def test_a_clear_is_said_once_with_its_reason():
    cleared = Alert(**CAMERA, alert_id="cam-1:wrong_way:track-4:7", kind="wrong_way", state="cleared", severity="critical",
                    subject="track-4", started_at=AT, snapshot=FrameRef(camera_id="cam-1", seq=7),
                    message="cleared (no longer tracked): car 4 drives the wrong way")
    assert summary("alerts", encode(cleared)) == "wrong_way (critical) cleared (no longer tracked): car 4 drives the wrong way"


def test_camera_events_give_the_count_the_reason_does_not():
    shed = CameraEvent(camera_id="cam-1", kind="frames_shed", at=AT, frames_shed=12)
    said = CameraEvent(camera_id="cam-1", kind="frames_shed", at=AT, reason="12 live frame(s) shed, up to 3.4 s old", frames_shed=12)
    started = CameraEvent(camera_id="cam-1", kind="started", at=AT, frames_sent=40)
    assert summary("camera-events", encode(shed)) == "frames_shed; 12 frames shed"
    assert summary("camera-events", encode(said)) == "frames_shed: 12 live frame(s) shed, up to 3.4 s old"  # not twice
    assert summary("camera-events", encode(started)) == "started; 40 frames sent"
    run_start = CameraEvent(camera_id="cam-1", kind="started", at=AT, seq=1_796_503_067_962, reason="clip.mp4 (640x360 @ 30 fps)")
    assert summary("camera-events", encode(run_start)) == "started: clip.mp4 (640x360 @ 30 fps); first seq 1796503067962"


@pytest.mark.parametrize(
    "value, expected",
    [
        (b"not json at all", "(not JSON: 15 bytes: b'not json at all')"),
        (b"\xff\xfe", "(not JSON: 2 bytes: b'\\xff\\xfe')"),
        (None, "(no value (a tombstone))"),
        # Another schema (or a field missing): shown as it is, not dropped and not a crash.
        (b'{"schema":"its.frame","v":1}', '{"schema":"its.frame","v":1}'),
        (b"[1, 2]", "[1,2]"),
    ],
)
def test_what_does_not_fit_its_topic_is_shown_as_it_is(value, expected):
    assert summary("frames", value) == expected


def test_a_long_unknown_record_is_cut_to_a_line():
    text = summary("tracks", json.dumps({"objects": "x" * 500}).encode())
    assert len(text) == LINE_WIDTH and text.endswith("...")


def _message(value: bytes | None, key: bytes | None = b"cam-1"):
    return SimpleNamespace(topic="its.frames", partition=3, offset=41, timestamp=int(AT * 1000) + 5, key=key, value=value)


def test_a_human_line_has_time_key_position_and_summary():
    line = human_line("frames", _message(b"oops", key=None))
    clock, key, position, rest = line.split("  ", 3)
    assert clock.endswith(".005") and key == "-" and position == "p3@41" and rest == "(not JSON: 4 bytes: b'oops')"


def test_a_human_line_writes_out_what_a_terminal_would_act_on():
    """A key or a value of any producer is printed on a terminal: an escape sequence had cleared the screen, a newline
    printed a line of its own (an odd-names trial)."""
    line = human_line("frames", _message(b'"\x1b[2J\\nfake"', key=b"\x1b[31mcam\ncam-9\xff"))
    assert "\x1b" not in line and "\n" not in line and "\\x1b[31mcam\\ncam-9\\xff" in line
    assert "  café 東  p3@41" in human_line("frames", _message(b"{}", key="café 東".encode()))  # text is text


def test_json_lines_keep_the_record_whole():
    record = RECORDS["tracks"][0]
    line = json.loads(json_line(_message(encode(record))))
    assert line["value"] == json.loads(encode(record)) and "problem" not in line
    assert (line["topic"], line["partition"], line["offset"], line["key"], line["timestamp"]) == ("its.frames", 3, 41, "cam-1", AT + 0.005)
    bad = json.loads(json_line(_message(b"not json")))
    assert bad["value"] == "not json" and bad["problem"].startswith("not JSON")


def test_a_broker_that_does_not_answer_ends_a_quiet_follow():
    import asyncio
    import time

    from its_faust.broker import free_port
    from its_faust.topic_tail import BrokerGone, BrokerWatch

    watch = BrokerWatch(f"127.0.0.1:{free_port()}", check_after_s=0, gone_after_s=0.3)  # nothing listens there

    async def go():
        await watch.check_when_quiet()  # the first unanswered check only starts the clock
        watch.records_came()  # records: the broker is there after all
        await watch.check_when_quiet()
        time.sleep(0.35)
        await watch.check_when_quiet()

    with pytest.raises(BrokerGone, match=r"stopped following: broker 127\.0\.0\.1:\d+ is not reachable"):
        asyncio.run(go())


def test_a_topic_is_named_with_or_without_its_prefix():
    import click

    from its_faust.cli_tail import TopicName
    from its_faust.topic_names import ALL

    name = TopicName(ALL, case_sensitive=False)
    assert name.convert("its.tracks", None, None) == name.convert("tracks", None, None) == "tracks"
    assert name.convert("acme.Zone-Stats", None, None) == "zone-stats"  # another ITS_FAUST_TOPIC_PREFIX
    with pytest.raises(click.BadParameter):
        name.convert("its.nope", None, None)
