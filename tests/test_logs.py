"""Log lines: what a library repeats while a broker is down is held back and counted."""

from __future__ import annotations

import logging

from its_faust import logs


def test_a_librarys_repeated_log_lines_are_held_back_and_counted(monkeypatch):
    """A broker down made aiokafka log thousands of lines a minute; one a template per 30 s is enough."""
    clock = [100.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
    held = logs.RepeatedLines(every_s=30.0)

    def line(name, msg, *args):
        record = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)
        return record.getMessage() if held.filter(record) else None

    assert line("aiokafka.conn", "Unable connect to node with id %s", 1) == "Unable connect to node with id 1"
    assert line("aiokafka.conn", "Unable connect to node with id %s", 2) is None  # alike: same template
    assert line("aiokafka.conn", "Other failure") == "Other failure"
    assert line("its_faust.worker", "worker ready") == line("its_faust.worker", "worker ready") == "worker ready"
    clock[0] += 31
    assert line("aiokafka.conn", "Unable connect to node with id %s", 3) == (
        "Unable connect to node with id 3 [1 more like this in the last 31 s]")


def test_with_json_logs_the_error_a_command_ends_on_is_a_json_line_too(monkeypatch, capsys):
    """The line that says why a process died was the one plain-text line a log pipeline could not parse."""
    import json

    import pytest

    from its_faust.cli_support import fail

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # restored after the test
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "-8")  # (set by setup_logging: undone with the test)
    logs.setup_logging("info", json_lines=True)
    with pytest.raises(SystemExit) as exited:
        fail("broker 127.0.0.1:1 is not reachable")
    entry = json.loads(capsys.readouterr().err)
    assert exited.value.code == 2 and entry["level"] == "error"
    assert entry["msg"] == "its-faust: error: broker 127.0.0.1:1 is not reachable"
    logs.setup_logging("info", json_lines=False)
    with pytest.raises(SystemExit):
        fail("plain")
    assert capsys.readouterr().err == "its-faust: error: plain\n"


def test_an_agent_restarted_by_a_rebalance_is_no_crash_with_a_traceback(monkeypatch, capsys):
    """Every rebalance logged "Crashed reason=CancelledError()" at ERROR, with a traceback (mode, for each agent
    Faust restarts); a real crash still is one."""
    import asyncio

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # restored after the test
    monkeypatch.setattr(root, "level", root.level)
    logs.setup_logging("info", json_lines=False)
    actor = logging.getLogger("faust.agents.agent")
    for reason in (asyncio.CancelledError(), RuntimeError("IO error: No space left on device")):
        try:
            raise reason
        except BaseException as exc:
            actor.exception("Crashed reason=%r", exc)
    restarted, crashed = capsys.readouterr().err.split("\n", 1)
    assert " INFO    faust.agents.agent: a task was cancelled (partitions moved: Faust starts it again); not a fault" in restarted
    assert " ERROR   faust.agents.agent: Crashed reason=RuntimeError('IO error" in crashed and "Traceback" in crashed


def test_a_table_offset_the_full_disk_did_not_take_is_one_line_a_minute_not_a_traceback_a_second(monkeypatch, capsys):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    logs.setup_logging("info", json_lines=False)
    callbacks = logging.getLogger("asyncio")
    for _ in range(3):
        try:
            raise Exception("IO error: No space left on device: While appending to file: camera-tracker-2.db/000004.log")
        except Exception:
            callbacks.error("Exception in callback %s", "Topic._on_published", exc_info=True)
    try:
        raise RuntimeError("another callback's bug")
    except RuntimeError:
        callbacks.error("Exception in callback %s", "other", exc_info=True)
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except OSError:
        callbacks.error("Fatal error on transport", exc_info=True)  # a socket's: as asyncio tells it
    lines = capsys.readouterr().err
    assert lines.count("WARNING asyncio: a table's changelog offset was not stored (IO error: No space left") == 1
    assert "Exception in callback other" in lines and "RuntimeError: another callback's bug" in lines
    assert "Fatal error on transport" in lines and "ConnectionResetError" in lines
    assert lines.count("Traceback") == 2
