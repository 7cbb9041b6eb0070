"""The demo's live figures: line counts per camera from the counts topic."""

from its_faust.demo import CameraFigures
from schemas.analytics import CountUpdate
from schemas.control import CameraConfig, CountingLine


def _update(line: str, direction: str, label: str, total: int, line_version: int = 0) -> CountUpdate:
    window = {"start": 0.0, "end": 60.0, "count": total}
    return CountUpdate(camera_id="demo-cam-1", seq=total, captured_at=1.0, line=line, direction=direction, label=label,
                       total=total, minute=window, quarter={**window, "end": 900.0}, line_version=line_version)


def _config(version: int, **line_versions: int) -> CameraConfig:
    lines = [CountingLine(name=name, x1=0, y1=100, x2=600, y2=100) for name in line_versions]
    return CameraConfig(camera_id="demo-cam-1", version=version, last_command_id=f"c{version}", updated_at=1.0,
                        lines=lines, line_versions=line_versions)


def test_counts_show_each_line_in_and_out_over_every_class():
    figures = CameraFigures(["y120"])
    assert figures.counts() == "y120 in 0 out 0"  # the demo's line, before anything crossed it
    for update in (_update("y120", "in", "car", 1), _update("y120", "in", "car", 2), _update("y120", "out", "truck", 1),
                   _update("y120", "in", "bus", 1), _update("y120", "in", "car", 2)):  # the last: a copy, redelivered
        figures.add_count(update)
    assert figures.counts() == "y120 in 3 out 1"
    figures.add_count(_update("x320", "out", "car", 1))  # a line added while it runs
    assert figures.counts() == "y120 in 3 out 1; x320 in 0 out 1"
    assert CameraFigures().counts() == "-"


def test_counts_follow_the_cameras_lines_as_they_change():
    """A line removed while the demo runs leaves the figures; one added again starts at 0, as its counts do."""
    figures = CameraFigures(["y120"])
    figures.configure(_config(1, y120=1))
    figures.add_count(_update("y120", "in", "car", 4, line_version=1))
    figures.configure(_config(2, y120=1, x320=2))  # a line added on the dashboard
    assert figures.counts() == "y120 in 4 out 0; x320 in 0 out 0"
    figures.configure(_config(3, x320=2))  # y120 removed
    figures.add_count(_update("y120", "in", "car", 5, line_version=1))  # its last update, still on its way
    assert figures.counts() == "x320 in 0 out 0"
    figures.configure(_config(4, x320=2, y120=4))  # y120 drawn again: a new line
    figures.add_count(_update("y120", "in", "car", 6, line_version=1))  # the old one's, late
    assert figures.counts() == "x320 in 0 out 0; y120 in 0 out 0"
    figures.add_count(_update("y120", "out", "bus", 1, line_version=4))
    assert figures.counts() == "x320 in 0 out 0; y120 in 0 out 1"


def test_a_line_added_again_restarts_even_before_its_configuration_arrives():
    figures = CameraFigures(["y120"])
    figures.add_count(_update("y120", "in", "car", 7, line_version=1))
    figures.add_count(_update("y120", "in", "car", 1, line_version=3))
    figures.add_count(_update("y120", "in", "car", 8, line_version=1))  # the earlier line's, late
    assert figures.counts() == "y120 in 1 out 0"


def test_figures_off_a_terminal_are_printed_once_per_change(capsys):
    """Under a pipe or a log file a line per interval, and the last figures at the end, not twice."""
    from its_faust.demo import _FiguresView

    figures = iter(["5s sent 10", "10s sent 20"])
    current = {"line": next(figures)}
    view = _FiguresView(lambda: "table", lambda: current["line"], every_s=0.0)
    with view:
        view.update()
        current["line"] = next(figures)
        view.update()
    assert capsys.readouterr().out.splitlines() == ["5s sent 10", "10s sent 20"]


class _Broker:
    def __init__(self, held):
        self.held = held

    def memory_bytes(self):
        return self.held


def test_broker_memory_is_shown_and_warned_about_once_past_the_limit(caplog):
    """The embedded broker drops no frame and slows as it grows: the demo says how much it holds, and once, what to do."""
    from its_faust.broker import BrokerMemoryNote
    from its_faust.demo import _lines

    broker = _Broker(300_000_000)
    note = BrokerMemoryNote(broker, warn_bytes=1_000_000_000, every_s=0.0)
    assert note.text() == "embedded broker holds 300 MB"
    assert not caplog.records
    broker.held = 1_200_000_000
    assert note.text() == "embedded broker holds 1200 MB"
    broker.held = 1_500_000_000
    note.text()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "1.2 GB" in warnings[0] and "ITS_FAUST_BROKER_URL" in warnings[0]
    broker.held = None  # stopped: the last figure stays
    assert note.text() == "embedded broker holds 1500 MB"
    assert BrokerMemoryNote(None, warn_bytes=1).text() == ""  # an external broker: nothing to say
    from its_faust.settings import Settings
    limit = Settings(embedded_broker_warn_mb=5)
    assert BrokerMemoryNote.for_settings(broker, limit)._warn_bytes == 5_000_000
    assert _lines({}, {}, 0.0, note.text()).endswith("s embedded broker holds 1500 MB")


def test_frames_a_camera_dropped_with_the_pipeline_behind_are_shown():
    """Demo cameras read 30 fps and sent 13-19 (a trial): the frames dropped for want of room were said nowhere."""
    from its_faust.demo import CameraFigures, _lines
    from its_faust.ingest import IngestStats

    stats = IngestStats("cam-1", frames_sent=40, frames_dropped=25)
    assert "cam-1: sent 40 dropped 25 tracked 0" in _lines({"cam-1": CameraFigures([])}, {"cam-1": stats}, 0.0)
    assert "cam-2: sent 0 dropped 0" in _lines({"cam-2": CameraFigures([])}, {}, 0.0)
