"""The demo's live figures: line counts per camera from the counts topic."""

from its_faust.demo import CameraFigures
from schemas.analytics import CountUpdate


def _update(line: str, direction: str, label: str, total: int) -> CountUpdate:
    window = {"start": 0.0, "end": 60.0, "count": total}
    return CountUpdate(camera_id="demo-cam-1", seq=total, captured_at=1.0, line=line, direction=direction, label=label,
                       total=total, minute=window, quarter={**window, "end": 900.0})


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
