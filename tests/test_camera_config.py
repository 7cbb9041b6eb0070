"""Camera configuration as events: geometry is validated, commands fold in order, replay rebuilds."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from its_faust.cameras import (CameraSetup, check_speed_limit, ensure_setup, parse_line, parse_points, replaced_by,
                               with_kept)
from its_faust.codecs import SchemaError, decode, encode
from schemas.control import (
    AddCamera,
    AddLine,
    AddZone,
    CameraCommand,
    CameraConfig,
    RemoveCamera,
    RemoveLine,
    RemoveZone,
    SetCalibration,
    SetSpeedLimit,
    UpdateCamera,
)
from schemas.geometry import Calibration, CountingLine, Zone
from tables.camera_config import CommandRejected, already_added, applied_before, apply, changes_nothing

LINE = CountingLine(name="north", x1=0, y1=100, x2=640, y2=100)


def cmd(change, camera="cam-a", at=1.0):
    return CameraCommand(camera_id=camera, issued_at=at, change=change)


def fold(*changes, camera="cam-a"):
    config = None
    for i, change in enumerate(changes):
        config = apply(config, cmd(change, camera, at=float(i)))
    return config


def test_zero_length_line_is_rejected_with_the_reason():
    with pytest.raises(ValidationError, match="two distinct ends"):
        CountingLine(name="x", x1=10, y1=10, x2=10.5, y2=10)


def test_self_crossing_zone_is_rejected_with_the_reason():
    with pytest.raises(ValidationError, match=r"not simple: its edges cross at \(50, 50\)"):
        Zone(name="bowtie", points=[(0, 0), (100, 100), (100, 0), (0, 100)])
    with pytest.raises(ValidationError, match="no area"):
        Zone(name="flat", points=[(0, 0), (50, 0), (100, 0)])


def test_shapes_far_past_any_frame_are_refused():
    """A zone at 1e308, sent straight to the commands topic, was applied, and every annotated picture of its camera
    failed after (a topic fuzz trial). Shapes reaching past a frame's edge stay fine."""
    with pytest.raises(ValidationError, match=r"points.1.0\n.*1e\+308 is out of range: pixels of a frame \(at most 8192 "
                                              r"a side\) are within \u00b165536"):
        Zone(name="huge", points=[(0, 0), (1e308, 0), (1e308, 1e308)])
    with pytest.raises(ValidationError, match="x2\n.*is out of range"):
        CountingLine(name="far", x1=0, y1=0, x2=1e6, y2=10)
    with pytest.raises(ValidationError, match=r"road_points.1.0\n.*1e\+09 is out of range: metres on the road are within"):
        Calibration(image_points=[(0, 0), (100, 0), (100, 100), (0, 100)],
                    road_points=[(0, 0), (1e9, 0), (1e9, 40), (0, 40)])
    assert Zone(name="past-edges", points=[(-50, -50), (700, -50), (700, 400)]).points[0] == (-50, -50)
    # A survey's coordinates are road points too (UTM northings run to 1e7 m).
    utm = [(500000, 5400000), (500007, 5400000), (500007, 5400040), (500000, 5400040)]
    assert Calibration(image_points=[(0, 0), (100, 0), (100, 100), (0, 100)], road_points=utm).road_points == utm
    # A configuration stored before the bounds is read as it is: else its camera could not be told to drop the zone.
    import json

    stored = json.loads(encode(apply(None, cmd(AddCamera()))))
    stored["zones"] = [{"name": "huge", "points": [[0, 0], [1e308, 0], [1e308, 1e308]], "kind": "area"}]
    config = decode(CameraConfig, json.dumps(stored).encode())
    assert config.zones[0].points[1] == (1e308, 0) and apply(config, cmd(RemoveZone(name="huge"))).zones == []
    with pytest.raises(SchemaError, match="out of range"):  # and a command bringing it in is refused
        decode(CameraCommand, encode(cmd(AddCamera())).replace(b'"op":"add_camera"', b'"op":"add_zone","zone":'
                                                               + json.dumps(stored["zones"][0]).encode()))


def test_calibration_points_in_a_different_order_are_rejected():
    image = [(100, 350), (540, 350), (400, 100), (240, 100)]
    with pytest.raises(ValidationError, match="road_points: the four points, in order, make a crossed shape"):
        Calibration(image_points=image, road_points=[(0, 0), (7, 40), (7, 0), (0, 40)])
    with pytest.raises(ValidationError, match="under 100 square pixels"):
        Calibration(image_points=[(0, 0), (1, 0), (1, 1), (0, 1)], road_points=[(0, 0), (7, 0), (7, 40), (0, 40)])


def test_degenerate_calibration_is_rejected():
    good_road = [(0, 0), (3.5, 0), (3.5, 30), (0, 30)]
    with pytest.raises(ValidationError, match="image_points: three of the four points"):
        Calibration(image_points=[(0, 0), (100, 100), (200, 200), (0, 300)], road_points=good_road)
    with pytest.raises(ValidationError, match="road_points"):
        Calibration(image_points=[(0, 0), (100, 0), (100, 100), (0, 100)], road_points=[(0, 0), (1, 0), (2, 0), (0, 5)])
    Calibration(image_points=[(100, 300), (540, 300), (400, 100), (240, 100)], road_points=good_road)


def test_a_zone_heading_is_taken_round_the_circle():
    """-90 was refused ("greater than or equal to 0"): it is 270, upwards on screen, in everyone's head."""
    triangle = [(0, 0), (100, 0), (100, 50)]
    assert [Zone(name="z", points=triangle, heading_deg=h).heading_deg for h in (-90, 360, 725.5, 0)] == [270, 0, 5.5, 0]
    for bad in (float("inf"), "north"):
        with pytest.raises(ValidationError):
            Zone(name="z", points=triangle, heading_deg=bad)


def test_commands_fold_into_the_configuration():
    zone = Zone(name="lane1", points=[(0, 0), (100, 0), (100, 50)], kind="lane", heading_deg=90)
    calibration = Calibration(image_points=[(0, 0), (10, 0), (10, 10), (0, 10)], road_points=[(0, 0), (1, 0), (1, 1), (0, 1)])
    config = fold(
        AddCamera(name="A1 north", source="rtsp://cam/a"),
        AddLine(line=LINE),
        AddZone(zone=zone),
        SetCalibration(calibration=calibration),
        SetSpeedLimit(kmh=50),
        UpdateCamera(name="A1 northbound"),
    )
    assert config.version == 6 and config.name == "A1 northbound" and config.source == "rtsp://cam/a"
    assert config.lines == [LINE] and config.zones == [zone]
    assert config.calibration == calibration and config.speed_limit_kmh == 50
    assert fold(AddCamera(), AddLine(line=LINE), RemoveLine(name="north")).lines == []
    assert fold(AddCamera(name="x"), UpdateCamera(name="")).name == "cam-a"  # no name shows the id, as at its add


@pytest.mark.parametrize(
    "changes, reason",
    [
        ((AddLine(line=LINE),), "unknown camera 'cam-a': add it first"),
        ((AddCamera(), AddCamera()), "already exists"),
        ((AddCamera(), AddLine(line=LINE), AddLine(line=LINE)), "already has a line 'north'"),
        ((AddCamera(), RemoveLine(name="south")), "has no line 'south'"),
        ((AddCamera(), RemoveCamera(), SetSpeedLimit(kmh=30)), "camera 'cam-a' was removed: add it again first"),
        ((RemoveCamera(),), "unknown camera 'cam-a': nothing to remove"),
        ((AddCamera(), RemoveCamera(), RemoveCamera()), "camera 'cam-a' was removed: nothing to remove"),
    ],
)
def test_a_command_that_cannot_apply_is_rejected_and_changes_nothing(changes, reason):
    *before, bad = changes
    config = fold(*before) if before else None
    snapshot = config.model_copy() if config else None
    with pytest.raises(CommandRejected, match=reason) as rejected:
        apply(config, cmd(bad))
    assert config == snapshot
    # What the command names is missing (an API's 404), or it conflicts with what is there (409).
    assert rejected.value.missing == (not reason.startswith("already"))


def test_removed_camera_keeps_no_geometry_and_can_come_back():
    config = fold(AddCamera(), AddLine(line=LINE), RemoveCamera())
    assert config.removed and config.lines == []
    again = apply(config, cmd(AddCamera(name="back")))
    assert not again.removed and again.name == "back" and again.version == 4


def test_each_adding_of_a_line_has_its_own_version_so_counts_start_afresh():
    config = fold(AddCamera(), AddLine(line=LINE), AddLine(line=LINE.model_copy(update={"name": "south"})))
    assert config.line_versions == {"north": 2, "south": 3}
    config = apply(config, cmd(RemoveLine(name="north")))
    assert config.line_versions == {"south": 3}
    config = apply(config, cmd(AddLine(line=LINE)))  # the same line again: a new one
    assert config.line_versions == {"south": 3, "north": 5}
    config = apply(apply(config, cmd(RemoveCamera())), cmd(AddCamera()))
    assert config.line_versions == {}
    assert apply(config, cmd(AddLine(line=LINE))).line_versions == {"north": 8}


def test_each_line_and_zone_remembers_when_it_was_added_for_replay_to_count_it_from_then():
    zone = Zone(name="box", points=[(0, 0), (9, 0), (9, 9)])
    config = apply(apply(apply(None, cmd(AddCamera(), at=10.0)), cmd(AddLine(line=LINE), at=20.0)),
                   cmd(AddZone(zone=zone), at=30.0))
    assert config.line_added_at == {"north": 20.0} and config.zone_added_at == {"box": 30.0}
    config = apply(apply(config, cmd(RemoveLine(name="north"), at=40.0)), cmd(AddLine(line=LINE), at=50.0))
    assert config.line_added_at == {"north": 50.0}  # added again: counted from the second adding
    config = apply(apply(config, cmd(RemoveZone(name="box"), at=60.0)), cmd(RemoveCamera(), at=70.0))
    assert config.zone_added_at == {} and config.line_added_at == {}


def test_a_frame_tracked_before_a_line_was_added_is_judged_without_it_by_the_workers_and_replay_alike():
    """A new line counted the frames tracked some 3 s before it was added (those waiting for the analyze stage), which
    replay did not: the workers now take the configuration as it was when each frame was tracked."""
    from tables.camera_config import AsAdded

    zone = Zone(name="box", points=[(0, 0), (9, 0), (9, 9)])
    config = apply(apply(apply(None, cmd(AddCamera(), at=10.0)), cmd(AddLine(line=LINE), at=20.0)),
                   cmd(AddZone(zone=zone), at=30.0))
    as_added = AsAdded(config)
    assert as_added.at(30.0) is config and as_added.at(99.0) is config  # (no copy once all were added)
    between = as_added.at(25.0)
    assert [line.name for line in between.lines] == ["north"] and between.zones == []
    assert between.version == config.version  # (alerts name the configuration they were raised under)
    assert as_added.at(19.9).lines == [] and as_added.at(19.9).zones == []
    assert as_added.at(25.0) is between  # once a moment
    assert list(as_added.added_after(25.0)) == ["zone box"]
    assert as_added.added_after(0.0) == {"line north": "1970-01-01T00:00:20+00:00", "zone box": "1970-01-01T00:00:30+00:00"}
    # A sender's clock ahead of the configure stage's: counted from when the stage applied it, not held back.
    ahead = apply(apply(None, cmd(AddCamera(), at=10.0)), cmd(AddLine(line=LINE), at=3600.0), now=40.0)
    assert ahead.line_added_at == {"north": 40.0}
    assert apply(ahead, cmd(AddZone(zone=zone), at=35.0), now=40.0).zone_added_at == {"box": 35.0}  # one behind: as sent


def test_replaying_the_commands_rebuilds_the_same_configuration():
    commands = [cmd(c, at=float(i)) for i, c in enumerate([AddCamera(), AddLine(line=LINE), SetSpeedLimit(kmh=80)])]
    wire = [encode(c) for c in commands]  # what the topic holds
    first = second = None
    for payload in wire:
        first = apply(first, decode(CameraCommand, payload))
    for payload in wire:
        second = apply(second, decode(CameraCommand, payload))
    assert first == second


def test_malformed_command_payload_has_a_reason():
    with pytest.raises(SchemaError, match="change"):
        decode(CameraCommand, b'{"schema":"its.camera-command","v":1,"camera_id":"c","issued_at":1,"change":{"op":"paint_it_red"}}')
    with pytest.raises(SchemaError, match="two distinct ends"):
        decode(CameraCommand, encode(cmd(AddCamera())).replace(b'{"op":"add_camera","name":"","source":""}',
               b'{"op":"add_line","line":{"name":"a","x1":1,"y1":1,"x2":1,"y2":1}}'))


def test_cli_syntax_for_lines_and_points():
    assert parse_line("140,120,620,120:y120") == CountingLine(name="y120", x1=140, y1=120, x2=620, y2=120)
    assert parse_line("0,0,10,10").name == "line1"
    for bad, reason in (("1,2,3", "expected x1,y1,x2,y2"), ("a,b,c,d", "numbers"), ("5,5,5,5", "distinct ends"),
                        ("1,2,3,4:", "a name after ':'")):  # a trailing ':' named the line "line1"
        with pytest.raises(ValueError, match=reason):
            parse_line(bad)
    # A name that cannot be one says what a name is, not the regular expression it failed
    from its_faust.cameras import validation_message

    with pytest.raises(ValidationError) as refused:
        parse_line("1,2,3,4:a:b")
    assert validation_message(refused.value) == (
        "name: 'a:b' is not a name: 1-64 letters, digits, '_', '.' or '-', beginning with a letter or digit")
    assert parse_points(["1,2", "3.5,4"]) == [(1, 2), (3.5, 4)]
    with pytest.raises(ValueError, match="expected x,y"):
        parse_points(["1"])


def test_ensure_setup_adds_replaces_and_leaves_equal_things_alone():
    zone = Zone(name="z", points=[(0, 0), (10, 0), (10, 10)])
    setup = CameraSetup(lines=[LINE], zones=[zone])
    assert [c.op for c in ensure_setup(None, "cam-a", setup)] == ["add_camera", "add_line", "add_zone"]
    config = fold(AddCamera(), AddLine(line=LINE), AddZone(zone=zone))
    assert ensure_setup(config, "cam-a", setup) == []
    moved = LINE.model_copy(update={"y1": 120, "y2": 120})
    assert [c.op for c in ensure_setup(config, "cam-a", CameraSetup(lines=[moved]))] == ["remove_line", "add_line"]


def test_ensure_setup_records_where_the_frames_come_from():
    """``run`` and ``demo`` name the clip they play, so the API and dashboard show it."""
    added = ensure_setup(None, "cam-a", CameraSetup(), source="clip.mp4")
    assert [(c.op, c.source) for c in added] == [("add_camera", "clip.mp4")]
    config = fold(AddCamera(source="clip.mp4"))
    assert ensure_setup(config, "cam-a", CameraSetup(), source="clip.mp4") == []
    assert ensure_setup(config, "cam-a", CameraSetup()) == []  # no source given: what it has stays
    moved = ensure_setup(config, "cam-a", CameraSetup(), source="other.mp4")
    assert [(c.op, c.source) for c in moved] == [("update_camera", "other.mp4")]
    assert apply(config, cmd(moved[0])).source == "other.mp4"


def test_a_run_reports_what_the_camera_kept_from_before():
    """``run`` on a camera the broker knows: the lines, zones, calibration and limit it had stay (the
    workers count them), so they are analysed and named; what the run gives replaces its namesake."""
    zone = Zone(name="z", points=[(0, 0), (10, 0), (10, 10)])
    calibration = Calibration(image_points=[(100, 350), (540, 350), (400, 100), (240, 100)],
                              road_points=[(0, 0), (7, 0), (7, 40), (0, 40)])
    other = CountingLine(name="south", x1=0, y1=300, x2=640, y2=300)
    config = fold(AddCamera(), AddLine(line=LINE), AddLine(line=other), AddZone(zone=zone),
                  SetCalibration(calibration=calibration), SetSpeedLimit(kmh=50))
    moved = LINE.model_copy(update={"y1": 120, "y2": 120})
    whole, kept = with_kept(CameraSetup(lines=[moved]), config)
    assert [line for line in whole.lines] == [moved, other] and whole.zones == [zone]
    assert whole.calibration == calibration and whole.speed_limit_kmh == 50
    assert kept == ["line south", "zone z", "calibration", "speed limit"]
    assert ensure_setup(config, "cam-a", whole) == ensure_setup(config, "cam-a", CameraSetup(lines=[moved]))
    assert with_kept(CameraSetup(lines=[moved]), None) == (CameraSetup(lines=[moved]), [])
    assert with_kept(CameraSetup(), fold(AddCamera(), AddLine(line=LINE), RemoveCamera())) == (CameraSetup(), [])


def test_camera_config_file_is_checked():
    data = {"lines": [LINE.model_dump()], "zones": [{"name": "z", "points": [[0, 0], [10, 0], [10, 10]]}],
            "calibration": {"image_points": [[0, 0], [10, 0], [10, 10], [0, 10]], "road_points": [[0, 0], [1, 0], [1, 1], [0, 1]]},
            "speed_limit_kmh": 50}
    setup = CameraSetup.from_json(data).check()
    assert setup.lines == [LINE] and setup.zones[0].name == "z" and setup.speed_limit_kmh == 50
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lanes'\]"):
        CameraSetup.from_json({"lanes": []})
    assert CameraSetup.from_json({"zones": None}).zones == []
    with pytest.raises(ValueError, match="speed_limit_kmh"):
        CameraSetup.from_json({"speed_limit_kmh": "fast"})
    with pytest.raises(ValueError, match="finite number"):
        CameraSetup.from_json({"lines": [{"name": "a", "x1": float("nan"), "y1": 0, "x2": 100, "y2": 0}]})
    with pytest.raises(ValueError, match="a speed limit needs a calibration"):
        check_speed_limit(CameraSetup(speed_limit_kmh=50).check())
    # Judged with the camera's own: a limit given alone, for a camera calibrated already, was refused.
    calibrated = fold(AddCamera(), SetCalibration(calibration=Calibration(**data["calibration"])))
    check_speed_limit(calibrated.model_copy(update={"speed_limit_kmh": 50}))
    with pytest.raises(ValueError, match="line names must differ"):
        CameraSetup(lines=[LINE, LINE]).check()


def test_each_adding_of_a_zone_has_its_own_version_so_its_figures_start_afresh():
    zone = Zone(name="lanes", points=[(0, 0), (100, 0), (100, 50)])
    config = fold(AddCamera(), AddZone(zone=zone))
    assert config.zone_versions == {"lanes": 2}
    config = apply(apply(config, cmd(RemoveZone(name="lanes"))), cmd(AddZone(zone=zone)))
    assert config.zone_versions == {"lanes": 4}
    config = apply(config, cmd(RemoveCamera()))
    assert config.zone_versions == {} and config.zones == []


def test_a_change_to_what_is_so_already_changes_nothing():
    """The same name again, the same speed limit, no calibration removed: nothing to send (no new version)."""
    config = fold(AddCamera(name="Dual carriageway"), SetSpeedLimit(kmh=50))
    assert changes_nothing(config, cmd(UpdateCamera(name="Dual carriageway")))
    assert changes_nothing(config, cmd(SetSpeedLimit(kmh=50)))
    assert changes_nothing(config, cmd(SetCalibration(calibration=None)))
    assert not changes_nothing(config, cmd(SetSpeedLimit(kmh=60)))
    assert not changes_nothing(config, cmd(AddLine(line=LINE)))
    assert not changes_nothing(None, cmd(AddCamera()))
    with pytest.raises(CommandRejected, match="already has a line"):
        changes_nothing(apply(config, cmd(AddLine(line=LINE))), cmd(AddLine(line=LINE)))


def test_an_add_of_what_the_camera_has_already_is_found_so_and_anything_else_of_that_name_is_not():
    zone = Zone(name="bay", points=[(0, 0), (100, 0), (100, 50)])
    config = fold(AddCamera(name="Gate", source="rtsp://cam"), AddLine(line=LINE), AddZone(zone=zone))
    assert already_added(config, cmd(AddCamera(name="Gate", source="rtsp://cam")))
    assert already_added(config, cmd(AddLine(line=LINE))) and already_added(config, cmd(AddZone(zone=zone)))
    assert not already_added(config, cmd(AddCamera(name="Gate")))  # another source
    assert not already_added(config, cmd(AddLine(line=LINE.model_copy(update={"count": "in"}))))
    assert not already_added(config, cmd(AddZone(zone=zone.model_copy(update={"kind": "lane"}))))
    assert not already_added(None, cmd(AddCamera())) and not already_added(config, cmd(SetSpeedLimit(kmh=50)))
    assert already_added(fold(AddCamera()), cmd(AddCamera()))  # no name given either time: the id
    assert not already_added(fold(AddCamera(), RemoveCamera()), cmd(AddCamera()))


def test_a_setup_whose_calibration_lies_outside_the_frame_is_refused():
    from schemas.geometry import Calibration

    far = Calibration(image_points=[(5000, 5000), (5400, 5000), (5400, 5100), (5000, 5100)],
                      road_points=[(0, 0), (7, 0), (7, 40), (0, 40)])
    with pytest.raises(ValueError, match="clip.mp4: the calibration's image points lie wholly outside"):
        CameraSetup(calibration=far).check_in_view(640, 360, "clip.mp4")


def test_a_line_reaching_far_past_the_frame_is_accepted_with_a_warning_that_x_and_y_may_be_swapped(caplog):
    swapped = CameraSetup(lines=[parse_line("200,0,200,640:cut")])  # meant 0,200,640,200 on a 640x360 frame
    with caplog.at_level("WARNING"):
        swapped.check_in_view(640, 360, "clip.mp4")
    assert "line 'cut' reaches far past the 640x360 frame (x 200 to 200, y 0 to 640)" in caplog.text
    assert "swapped" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # edge to edge and a little past, as lines across a road are drawn
        CameraSetup(lines=[parse_line("-20,200,660,200:road")]).check_in_view(640, 360, "clip.mp4")
    assert caplog.text == ""


def test_a_command_delivered_again_is_skipped_but_one_on_a_commands_log_started_again_applies():
    first = cmd(AddCamera(name="Bridge"))
    config = apply(None, first).model_copy(update={"applied_offset": 7})
    # Delivered again after a worker's restart: the log still holds offset 7 and beyond.
    assert applied_before(config, first, 7, log_end=8)
    assert applied_before(config, cmd(AddCamera()), 3, log_end=8)  # an older one, the same log
    assert not applied_before(config, cmd(AddLine(line=LINE)), 8, log_end=9)  # past the last applied: new
    assert not applied_before(None, first, 0, log_end=1)
    # The topic deleted and created again, or an in-memory broker restarted: offsets begin at 0 again.
    assert not applied_before(config, cmd(AddLine(line=LINE)), 0, log_end=1)
    # Another command at the very offset last applied: not the log it was applied from, whatever its end.
    assert not applied_before(config, cmd(AddLine(line=LINE)), 7, log_end=20)
    # The broker could not be asked: skipped, as a redelivery (the safe side: nothing applies twice).
    assert applied_before(config, cmd(AddLine(line=LINE)), 3, log_end=None)


def test_an_add_that_conflicts_says_what_is_there_so_what_differs():
    config = fold(AddCamera(name="Main St", source="rtsp://cam/1"), AddLine(line=LINE.model_copy(update={"count": "in"})),
                  AddZone(zone=Zone(name="bay", points=[(0, 0), (100, 0), (100, 50)], kind="lane", heading_deg=90)))
    conflicts = [(AddCamera(name="Other"), "already exists (name 'Main St', source 'rtsp://cam/1')"),
                 (AddLine(line=LINE), "already has a line 'north' (0,100,640,100, count in)"),
                 (AddZone(zone=Zone(name="bay", points=[(0, 0), (100, 0), (100, 60)])),
                  "already has a zone 'bay' (0,0 100,0 100,50, lane, heading 90)")]
    for change, told in conflicts:
        with pytest.raises(CommandRejected, match=re.escape(told)):
            apply(config, cmd(change))


def test_a_config_file_that_does_not_validate_is_named_in_the_error(tmp_path):
    from its_faust.cli import _setup_from

    path = tmp_path / "camera.json"
    path.write_text('{"lines": [{"name": "a", "x1": 0, "x2": 10, "y2": 5}]}')
    with pytest.raises(ValueError, match=re.escape(f"{path}: lines.0.y1: Field required")):
        _setup_from((), path)
    with pytest.raises(ValueError, match="two distinct ends") as refused:  # a --line's own error stays as it was
        _setup_from(("5,5,5,5",), None)
    assert "camera.json" not in str(refused.value)


def test_a_run_on_a_broker_of_its_own_refuses_a_speed_limit_without_a_calibration_before_it_starts(monkeypatch):
    import asyncio

    from its_faust.pipeline import run_source
    from its_faust.settings import load_settings

    monkeypatch.delenv("ITS_FAUST_BROKER_URL", raising=False)
    settings = load_settings()
    assert not settings.broker_url
    with pytest.raises(ValueError, match="a speed limit needs a calibration"):
        asyncio.run(run_source(settings, "no-such-clip.mp4", setup=CameraSetup(lines=[LINE], speed_limit_kmh=50)))


def test_what_a_run_replaces_of_a_cameras_setup_is_named():
    """`run --line` with a line of a name the camera has, elsewhere, replaced it silently (its counts started again)."""
    y120 = CountingLine(name="y120", x1=140, y1=120, x2=620, y2=120)
    zone = Zone(name="near", points=[(0, 200), (640, 200), (640, 360)])
    config = fold(AddCamera(), AddLine(line=y120), AddZone(zone=zone), SetSpeedLimit(kmh=50))
    assert replaced_by(CameraSetup(lines=[y120], zones=[zone], speed_limit_kmh=50), config) == []  # the same: kept
    moved = y120.model_copy(update={"y1": 200, "y2": 200})
    other = CountingLine(name="x10", x1=10, y1=0, x2=10, y2=300)
    assert replaced_by(CameraSetup(lines=[moved, other], speed_limit_kmh=30), config) == ["line y120", "speed limit"]
    assert replaced_by(CameraSetup(lines=[moved]), None) == []


def test_ingest_warns_of_lines_and_zones_its_frames_do_not_reach_at_its_first_frame_and_at_a_new_size(caplog):
    """A camera restarted on a 640x360 clip kept a line drawn at y=420 for its 640x480 one, which counted nothing,
    without a word (a trial)."""
    import logging
    from types import SimpleNamespace

    from its_faust.cameras import ShapesInView

    low = CountingLine(name="y420", x1=0, y1=420, x2=640, y2=420)
    config = fold(AddCamera(), AddLine(line=low), AddLine(line=LINE))
    in_view = ShapesInView(config)
    with caplog.at_level(logging.WARNING, logger="its_faust.cameras"):
        in_view(SimpleNamespace(frame_size=(640, 480)))
        assert caplog.text == ""
        in_view(SimpleNamespace(frame_size=(640, 360)))
        in_view(SimpleNamespace(frame_size=(640, 360)))  # said once a size
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and warned[0].startswith("camera 'cam-a': line 'y420' lies wholly outside the camera's "
                                                     "640x360 frame"), warned
    assert warned[0].endswith("as its source sends them now (`its-faust cameras remove-line cam-a y420`)"), warned
    ShapesInView(None)(SimpleNamespace(frame_size=(640, 360)))  # a camera not configured: nothing to say


def test_a_line_running_outside_the_calibrated_road_is_said_with_how_much(caplog):
    """A speed trial drew a line over all four lanes and calibrated two: the fast lane's vehicles, crossing outside,
    had no speed and were left out of the line's mean and p85, with nothing said."""
    import logging

    from its_faust.cameras import CameraSetup, uncalibrated_share
    from schemas.geometry import Calibration

    calibration = Calibration(image_points=[(100, 300), (400, 300), (400, 100), (100, 100)],
                              road_points=[(0, 0), (10, 0), (10, 40), (0, 40)])
    inside = CountingLine(name="inside", x1=150, y1=200, x2=350, y2=200)
    across = CountingLine(name="across", x1=100, y1=200, x2=600, y2=200)  # (the 40% past x=400 is outside)
    assert uncalibrated_share(inside, calibration) == 0
    edge_to_edge = CountingLine(name="edges", x1=100, y1=200, x2=400, y2=200)  # (it said 5% outside)
    assert uncalibrated_share(edge_to_edge, calibration) == 0
    assert 0.35 < uncalibrated_share(across, calibration) < 0.45
    with caplog.at_level(logging.WARNING, "its_faust.cameras"):
        CameraSetup(lines=[inside, across], calibration=calibration).check_in_view(640, 360, "clip.mp4")
        CameraSetup(lines=[across]).check_in_view(640, 360, "clip.mp4")  # no calibration: no speeds to miss
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("clip.mp4: 38% of line 'across' lies outside the calibrated road"), said
