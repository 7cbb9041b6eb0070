import contextlib
import json

import pytest

from its_faust.codecs import SchemaError, decode, encode
from schemas import Box, DetectionRecord, FrameRecord, ModelInfo, TrackRecord


def frame(**overrides):
    values = dict(camera_id="cam-1", seq=7, captured_at=1.5, width=4, height=2, jpeg=b"\xff\xd8jpeg")
    return FrameRecord(**{**values, **overrides})


def test_frame_round_trip_keeps_bytes_and_names_schema():
    record = frame()
    payload = encode(record)
    wire = json.loads(payload)
    assert wire["schema"] == "its.frame" and wire["v"] == 1
    assert wire["jpeg"] == "_9hqcGVn"  # URL-safe base64 on the wire
    assert decode(FrameRecord, payload) == record


def test_detection_round_trip():
    record = DetectionRecord(
        camera_id="cam-1", seq=1, captured_at=1.0, width=640, height=360, detected_at=1.1,
        model=ModelInfo(name="yolo11n", version="abc", backend="onnxruntime"), inference_ms=12.5, batch_size=2,
        boxes=[Box(x1=1, y1=2, x2=3, y2=4, conf=0.9, cls=2, label="car")],
    )
    assert decode(DetectionRecord, encode(record)) == record


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"", "empty payload"),
        (b"{not json", "Invalid JSON"),
        (b'{"schema": "its.frame", "v": 2}', "v: Input should be 1"),
        (b"[1, 2]", "Input should be an object"),
    ],
)
def test_malformed_payloads_get_a_reason(payload, reason):
    with pytest.raises(SchemaError, match="FrameRecord") as err:
        decode(FrameRecord, payload)
    assert reason in str(err.value)


def test_field_errors_are_named():
    bad = json.loads(encode(frame()))
    bad.update(camera_id="has space", seq=-1, jpeg="@@notbase64")
    with pytest.raises(SchemaError) as err:
        decode(FrameRecord, json.dumps(bad).encode())
    message = str(err.value)
    assert "camera_id" in message and "seq" in message and "jpeg" in message


def test_unknown_fields_and_wrong_schema_are_rejected():
    wire = json.loads(encode(frame()))
    with pytest.raises(SchemaError, match="Extra inputs"):
        decode(FrameRecord, json.dumps({**wire, "surprise": 1}).encode())
    with pytest.raises(SchemaError, match="schema"):
        decode(TrackRecord, encode(frame()))


def test_bytes_that_are_not_base64_name_the_character():
    wire = json.loads(encode(frame()))
    with pytest.raises(SchemaError, match=r"jpeg: not base64: '!' at offset 0 \(standard or URL-safe alphabet\)"):
        decode(FrameRecord, json.dumps({**wire, "jpeg": "!!AA"}).encode())


def test_times_in_milliseconds_are_refused():
    """Unix seconds everywhere: a producer sending ms would make live frames look years ahead, never shed."""
    wire = json.loads(encode(frame()))
    with pytest.raises(SchemaError, match=r"captured_at: 1796500489158.4 is not Unix seconds \(milliseconds\?\)"):
        decode(FrameRecord, json.dumps({**wire, "captured_at": 1796500489158.4}).encode())
    with pytest.raises(SchemaError, match="scene_time: .* is not Unix seconds"):
        decode(FrameRecord, json.dumps({**wire, "scene_time": 1.7e15}).encode())
    assert decode(FrameRecord, json.dumps({**wire, "captured_at": 1796500489.158}).encode()).captured_at == 1796500489.158


def test_a_frame_over_8k_a_side_is_refused():
    wire = json.loads(encode(frame()))
    with pytest.raises(SchemaError, match="width: .*less than or equal to 8192"):
        decode(FrameRecord, json.dumps({**wire, "width": 60000}).encode())


def test_a_seq_past_2_to_the_53_is_refused():
    """A frame with seq 10**30 was tracked, and its camera's every later frame skipped as already seen, for good (a
    topic fuzz trial). Seqs in a producer's own way (from 0, in microseconds) are taken."""
    import time

    from schemas.analytics import FrameRef
    from schemas.camera_events import CameraEvent, CameraEventKind

    wire = json.loads(encode(frame()))
    with pytest.raises(SchemaError, match="seq: .*less than or equal to 9007199254740991"):
        decode(FrameRecord, json.dumps({**wire, "seq": 10**30}).encode())
    micros = time.time_ns() // 1000
    assert decode(FrameRecord, json.dumps({**wire, "seq": micros}).encode()).seq == micros
    with pytest.raises(ValueError, match="less than or equal to 9007199254740991"):  # what an alert or an event names
        FrameRef(camera_id="cam-1", seq=2**53)
    with pytest.raises(ValueError, match="less than or equal to 9007199254740991"):
        CameraEvent(camera_id="cam-1", kind=CameraEventKind.started, at=1.0, seq=2**53)


def test_analytics_records_name_their_line_or_zone_by_the_names_rule():
    """The count tables join a line's name into their keys with '|' and '@': a crossing of any producer naming its
    line 'a@1|in|x' had counted into the key of line 'a''s class 'x@2|in|car' (an odd-names trial)."""
    from schemas.analytics import Crossing, ZoneEvent

    crossing = dict(camera_id="cam.1", seq=3, captured_at=1.5, line="a", direction="in", track_id=1, label="car", cls=2)
    zone_event = dict(camera_id="cam.1", seq=3, captured_at=1.5, zone="z", kind="enter", track_id=1, label="car",
                      occupancy=1)
    for bad in ("a@1|in|x", "a|b", "", " a"):
        with pytest.raises(SchemaError, match="line: .* is not a name"):
            decode(Crossing, json.dumps({**crossing, "line": bad}).encode())
        with pytest.raises(SchemaError, match="zone: .* is not a name"):
            decode(ZoneEvent, json.dumps({**zone_event, "zone": bad}).encode())
    # A class name is the key's last part: any text stays one key (COCO's own have spaces: 'traffic light').
    assert decode(Crossing, json.dumps({**crossing, "label": "x@2|in|car"}).encode()).label == "x@2|in|car"


def test_a_box_turned_round_or_far_off_any_frame_is_refused():
    box = dict(x1=1, y1=2, x2=3, y2=4, conf=0.9, cls=2, label="car")
    with pytest.raises(ValueError, match=r"box \(5, 2, 3, 4\): x2, y2 is its bottom-right corner"):
        Box(**{**box, "x1": 5})
    with pytest.raises(ValueError, match="x2\n.*1e\+308 is out of range: pixels of a frame"):
        Box(**{**box, "x2": 1e308})
    assert Box(**{**box, "x1": -3.5}).x1 == -3.5  # a little past the frame's edge is what detectors give


def test_a_command_issued_in_milliseconds_is_refused():
    """Its time became the config's ``updated_at`` and ``line_added_at`` (replay then failed on the year 58901)."""
    from schemas.control import CameraCommand

    command = {"schema": "its.camera-command", "v": 1, "camera_id": "cam-1", "command_id": "c1",
               "change": {"op": "add_camera"}}
    with pytest.raises(SchemaError, match=r"issued_at: 1796595636909.03 is not Unix seconds \(milliseconds\?\)"):
        decode(CameraCommand, json.dumps({**command, "issued_at": 1796595636909.03}).encode())
    assert decode(CameraCommand, json.dumps({**command, "issued_at": 1796595636.9}).encode()).issued_at == 1796595636.9


def test_standard_base64_is_accepted_too():
    import base64

    wire = json.loads(encode(frame(jpeg=b"\xff\xd8\xff\xfe?>")))
    wire["jpeg"] = base64.b64encode(b"\xff\xd8\xff\xfe?>").decode()  # '+' and '/' alphabet
    assert decode(FrameRecord, json.dumps(wire).encode()).jpeg == b"\xff\xd8\xff\xfe?>"


def test_the_readmes_sample_frame_record_decodes_as_it_says():
    import base64
    import re
    from pathlib import Path

    import cv2
    import numpy as np

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    sample = json.loads(re.search(r"```json\n(\{\"schema\": \"its.frame\".*?)```", readme, re.S).group(1))
    assert base64.urlsafe_b64decode(sample["jpeg"].rstrip(".") + "==")[:3] == b"\xff\xd8\xff"  # a JPEG's start, URL-safe
    jpeg = cv2.imencode(".jpg", np.zeros((sample["height"], sample["width"], 3), np.uint8))[1].tobytes()
    frame = decode(FrameRecord, json.dumps({**sample, "jpeg": base64.urlsafe_b64encode(jpeg).decode()}).encode())
    assert (frame.camera_id, frame.seq, frame.scene_time, frame.jpeg) == (sample["camera_id"], sample["seq"], None, jpeg)
    bare = {k: v for k, v in sample.items() if k not in ("schema", "v")} | {"jpeg": base64.b64encode(jpeg).decode()}
    assert decode(FrameRecord, json.dumps(bare).encode()).jpeg == jpeg  # schema and v may be left out


def test_the_committed_json_schemas_are_current():
    from schemas.json_schema import HERE, json_schemas

    committed = {p.name: p.read_text() for p in HERE.glob("*.json")}
    assert committed == json_schemas(), "a record changed: write them again with `python -m schemas.json_schema`"


def test_records_as_the_stages_write_them_pass_their_json_schema_and_bad_ones_fail_it():
    """What an integrator in another language validates against: it must accept what the stages write."""
    import json

    import jsonschema_rs

    from schemas.analytics import CountUpdate, WindowCount
    from schemas.control import AddLine, CameraCommand
    from schemas.geometry import CountingLine
    from schemas.json_schema import HERE, file_name

    records = [
        FrameRecord(camera_id="cam-8", seq=1796551274802, captured_at=1796551274.8, width=640, height=360,
                    jpeg=b"\xff\xd8 not a real jpeg \xff\xd9"),
        CameraCommand(camera_id="cam-8", issued_at=1796551274.8, issued_by="ops",
                      change=AddLine(line=CountingLine(name="x320", x1=320, y1=300, x2=320, y2=100))),
        CountUpdate(camera_id="cam-8", seq=5, captured_at=1.0, line="x320", line_version=1, direction="in",
                    label="car", total=3, minute=WindowCount(start=0, end=60, count=1),
                    quarter=WindowCount(start=0, end=900, count=3)),
    ]
    for record in records:
        validator = jsonschema_rs.validator_for(json.loads((HERE / file_name(type(record))).read_text()))
        written = json.loads(encode(record))
        assert validator.is_valid(written), list(validator.iter_errors(written))
        assert not validator.is_valid({**written, "colour": "red"})  # unknown fields are refused, as by the stages
        assert not validator.is_valid({k: v for k, v in written.items() if k != "camera_id"})
    # What the stages refuse of a name, the schemas refuse too: a line named with '|'.
    validator = jsonschema_rs.validator_for(json.loads((HERE / file_name(CountUpdate)).read_text()))
    assert not validator.is_valid({**json.loads(encode(records[2])), "line": "a@1|in|x"})


def test_the_json_schema_takes_a_frame_in_either_base64_alphabet_as_the_stages_do():
    """An integrator's validator that checks formats must accept the standard alphabet too (pydantic's
    schema said "base64url", what the stages write, though they take both)."""
    import base64
    import json

    import jsonschema_rs

    from schemas.json_schema import HERE, file_name

    jpeg = b"\xff\xd8\xfb\xff\xfe not a real jpeg \xff\xd9"  # bytes whose base64 has '+' and '/' (or '-' and '_')
    validator = jsonschema_rs.validator_for(json.loads((HERE / file_name(FrameRecord)).read_text()), validate_formats=True)
    frame = json.loads(encode(FrameRecord(camera_id="cam-8", seq=1, captured_at=1.0, width=64, height=48, jpeg=jpeg)))
    for text in (base64.b64encode(jpeg).decode(), base64.urlsafe_b64encode(jpeg).decode().rstrip("=")):
        assert decode(FrameRecord, json.dumps({**frame, "jpeg": text}).encode()).jpeg == jpeg
        assert validator.is_valid({**frame, "jpeg": text}), text
    assert not validator.is_valid({**frame, "jpeg": "not base64!"})


def test_the_json_schemas_refuse_times_in_milliseconds_as_the_stages_do():
    """A client that validated against the schemas was refused by the stages alone (a trial with ajv)."""
    import json

    import jsonschema_rs

    from schemas.control import AddCamera, CameraCommand
    from schemas.json_schema import HERE, file_name

    def schema_and_stages_agree(record, field: str) -> None:
        validator = jsonschema_rs.validator_for(json.loads((HERE / file_name(type(record))).read_text()))
        written = json.loads(encode(record))
        for value, good in ((1796551274.8, True), (1796551274802.0, False), (-1796551274802.0, False)):
            sent = {**written, field: value}
            assert validator.is_valid(sent) is good, (type(record).__name__, field, value)
            with contextlib.nullcontext() if good else pytest.raises(SchemaError, match="not Unix seconds"):
                decode(type(record), json.dumps(sent).encode())

    frame = FrameRecord(camera_id="cam-8", seq=1, captured_at=1.0, width=64, height=48, jpeg=b"\xff\xd8 \xff\xd9")
    schema_and_stages_agree(frame, "captured_at")
    schema_and_stages_agree(frame, "scene_time")
    schema_and_stages_agree(CameraCommand(camera_id="cam-8", issued_at=1.0, change=AddCamera()), "issued_at")


def test_a_cameras_display_name_and_source_are_one_line_of_text_of_bounded_length_where_they_are_given():
    """A name of '\x1b[2J' cleared the terminal of whoever listed the cameras, one with a newline printed a row of its
    own, and a 5,000-character one was taken by the CLI (and refused by the API that lists it). The API and the CLI
    check them; the commands take any text, so that one issued before the rules is not refused on a rebuild."""
    from pydantic import TypeAdapter

    from api.routes_cameras import CameraChanges, NewCamera
    from its_faust.cli_cameras import _display_text
    from schemas.control import AddCamera, DisplayName, SourceText, UpdateCamera

    name = TypeAdapter(DisplayName)
    assert name.validate_python("Bridge St. / A40 é 東京 🚗") == "Bridge St. / A40 é 東京 🚗"
    for bad, why in (("evil\x1b[2J", r"'\\x1b' at 4: control characters"), ("a\nb", r"'\\n' at 1"),
                     ("a\u2028b", r"'\\u2028' at 1"), ("x" * 201, "at most 200 characters")):
        for check in (name.validate_python, lambda v: NewCamera(camera_id="c", name=v),
                      lambda v: CameraChanges(name=v), lambda v: _display_text(name=v, source=None)):
            with pytest.raises(ValueError, match=why):
                check(bad)
    with pytest.raises(ValueError, match=r"'\\r' at 8"):
        TypeAdapter(SourceText).validate_python("rtsp://x\r\nHost: y")
    assert _display_text(name=None, source="rtsp://cam/1") == {"source": "rtsp://cam/1"}
    # Issued before the rules (the CLI took any text): still read, and so applied when the topic is replayed.
    assert AddCamera(name="x" * 5000).name == "x" * 5000 and UpdateCamera(name="a\tb").name == "a\tb"
