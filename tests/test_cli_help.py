"""Every command shows its help for -h, including those whose arguments may start with a dash."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from its_faust.cli import main


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


@pytest.mark.parametrize("path", list(_commands(main)), ids=" ".join)
def test_dash_h_shows_the_help(path):
    done = CliRunner().invoke(main, [*path, "-h"])
    assert done.exit_code == 0 and done.output.startswith("Usage: "), done.output



@pytest.mark.parametrize("path", [p for p in _commands(main) if "-h, --help" not in CliRunner().invoke(main, [*p, "-h"]).output],
                         ids=" ".join)
def test_a_help_without_the_short_option_listed_says_that_h_works_too(path):
    """Commands whose arguments may start with a dash parse -h themselves; their help must still say so."""
    assert "(-h too)" in CliRunner().invoke(main, [*path, "-h"]).output


@pytest.mark.parametrize("args, said", [
    (["bench", "--sizes", "1,2"], "--sizes is for --batch-sweep"),
    (["bench", "--batch-sweep", "--skip-baseline"], "--batch-sweep measures the detector alone"),
    (["bench", "--batch-sweep", "--repeat", "3"], "--batch-sweep measures the detector alone"),
    (["cameras", "calibrate", "cam-8", "--clear", "--image", "1,2"], "--clear removes the calibration: give it alone"),
    (["cameras", "add", "cam-8", "--timeout", "-1"], "Invalid value for '--timeout'"),
    (["cameras", "add", "cam-8", "--timeout", "0"], "Invalid value for '--timeout'"),
])
def test_options_that_contradict_each_other_or_make_no_sense_are_a_usage_error(args, said):
    """They were taken without a word: --sizes alone ran the whole benchmark, --clear with points cleared the
    calibration and dropped them, --timeout -1 sent the command and waited for nothing (a CLI review)."""
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 2 and said in done.output, done.output


def test_a_calibration_of_other_than_four_points_says_four_exactly():
    """It said "needs at least 4 points" for three and "at most 4" for five."""
    points = [f"--image={x},{y}" for x, y in ((0, 0), (100, 0), (100, 100))] + [f"--road={x},{y}" for x, y in ((0, 0), (7, 0), (7, 40), (0, 40))]
    done = CliRunner().invoke(main, ["cameras", "calibrate", "cam-8", *points])
    assert done.exit_code == 2
    assert "exactly four --image points and four --road points, in the same order (given: 3 and 4)" in done.output


def test_a_config_file_with_a_key_that_is_none_is_named_in_the_error(tmp_path):
    """A wrong key said "camera config: unknown key(s) ['zonez']" without the file, unlike every other mistake in it."""
    from its_faust.cli import _setup_from

    config = tmp_path / "bad3.json"
    config.write_text('{"zonez": []}')
    with pytest.raises(ValueError, match=r"bad3\.json: unknown key\(s\) \['zonez'\]; expected some of"):
        _setup_from((), config)


def test_every_command_that_writes_its_result_to_a_file_takes_out():
    """`run --summary`, `replay --out`, `bench --out`: a script that used one name for all was refused by run."""
    for path in (["run"], ["replay"], ["bench"]):
        assert "--out" in CliRunner().invoke(main, [*path, "-h"]).output, path


def test_a_replay_of_a_file_on_a_shared_broker_runs_as_a_camera_of_its_own():
    """Two replays at once on a shared broker both ran as "replay": the second dropped the first's lines and sent
    its frames into the first's counts, and both exited 0 (a trial of jobs side by side)."""
    import re

    from its_faust.cli import replay_camera_id
    from its_faust.settings import Settings

    assert replay_camera_id(Settings(broker_url=None)) == "replay"  # a broker of its own: nothing to share
    shared = Settings(broker_url="kafka://127.0.0.1:9092")
    ids = {replay_camera_id(shared) for _ in range(20)}
    assert len(ids) == 20 and all(re.fullmatch(r"replay-[0-9a-f]{6}", i) for i in ids)


@pytest.mark.parametrize("failure", [TimeoutError("no frame tracked for 60s (0 tracked so far)"),
                                     "WorkerGone"])
def test_a_run_that_fails_once_started_exits_1_not_as_a_usage_error(monkeypatch, failure):
    """A run whose pipeline tracked nothing in time exited 2, as a mistyped option does: a script retried its
    arguments, or gave up on a run worth trying again."""
    import its_faust.pipeline
    from its_faust.worker import WorkerGone

    problem = WorkerGone("no worker is left to track the frames (0 tracked)") if failure == "WorkerGone" else failure

    async def fails(*args, **kwargs):
        raise problem

    monkeypatch.setattr(its_faust.pipeline, "run_source", fails)
    done = CliRunner().invoke(main, ["run", "--source", "dual_carriageway_abhishek.mp4"])
    assert done.exit_code == 1 and f"its-faust: error: {problem}" in done.output, done.output
