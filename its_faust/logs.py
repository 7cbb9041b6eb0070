"""Logging set-up: readable lines in a terminal, one JSON object per line for log pipelines."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class RepeatedLines(logging.Filter):
    """Lets a library's line through once per ``every_s`` seconds, then says how many like it were held back.

    aiokafka logs every failed attempt while a broker is down: 3,500 lines in 40 s from one API process
    (a consumer per topic, each retrying), which buries what the system says itself. Lines are alike when
    they come from the same logger with the same template (the numbers in them may differ)."""

    def __init__(self, prefixes: tuple[str, ...] = ("aiokafka",), every_s: float = 30.0):
        super().__init__()
        self.prefixes, self.every_s = prefixes, every_s
        self._seen: dict[tuple, tuple[float, int]] = {}  # (logger, level, template) -> (last let through, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        last, held = self._seen.get(key, (None, 0))
        if last is not None and now - last < self.every_s:
            self._seen[key] = (last, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} [{held} more like this in the last {now - last:.0f} s]"
        return True


class RebalanceRestarts(logging.Filter):
    """An agent restarted by a rebalance is said as that, at INFO, not as a crash with a traceback.

    Faust cancels each agent's task when partitions move and starts it again; it says "Restarting on rebalance"
    at INFO, then mode logs the same cancellation as "Crashed reason=CancelledError()" at ERROR with a
    traceback, which sent operators looking for a fault at every worker joining or leaving."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.msg == "Crashed reason=%r" and isinstance(record.args, tuple) and len(record.args) == 1
                and isinstance(record.args[0], asyncio.CancelledError)):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args, record.exc_info, record.exc_text = (
                "a task was cancelled (partitions moved: Faust starts it again); not a fault", (), None, None)
        return True


class StorageFailuresInCallbacks(logging.Filter):
    """Faust's write of a table's changelog offset, after each changelog send, failing for the disk: one line per
    ``every_s`` with a count, not asyncio's "Exception in callback" with a traceback every time (a full disk
    logged one a second). Missing, the offset only makes a restarted worker read more of the changelog."""

    def __init__(self, every_s: float = 60.0):
        super().__init__()
        self.every_s = every_s
        self._told_at: float | None = None
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        from tables.storage import storage_failed

        exc = record.exc_info[1] if record.exc_info else None
        # Only RocksDB's IO error in a callback (Faust's offset write after a changelog send): an OSError of a
        # socket or a task is no storage's, and must stay as asyncio tells it.
        if (record.name != "asyncio" or exc is None or isinstance(exc, OSError) or not storage_failed(exc)
                or not str(record.msg).startswith("Exception in callback")):
            return True
        now = time.monotonic()
        if self._told_at is not None and now - self._told_at < self.every_s:
            self._held += 1
            return False
        held, self._told_at, self._held = self._held, now, 0
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "a table's changelog offset was not stored (%s): a restarted worker reads more of the changelog%s"
        record.args = (exc, f" [{held} more like this in the last {self.every_s:.0f} s]" if held else "")
        record.exc_info, record.exc_text = None, None
        return True


def json_logging() -> bool:
    """Whether this process logs JSON lines (``setup_logging``)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def json_line(level: int, logger: str, message: str) -> str:
    """One line as the JSON logs have it, for what is written without the logging module (a command's error)."""
    return JsonFormatter().format(logging.makeLogRecord(
        {"name": logger, "levelno": level, "levelname": logging.getLevelName(level), "msg": message}))


def setup_logging(level: str = "info", json_lines: bool = False) -> None:
    if json_lines or level.lower() != "debug":
        # OpenCV and FFmpeg write to stderr themselves ("[tcp @ 0x...] Connection ... failed", "[ WARN:0@0.2]
        # ... VIDEOIO(FFMPEG)", "[mov,mp4 @ 0x...] moov atom not found"): lines a log pipeline cannot parse, and
        # noise between ours in a terminal. Read when a camera is first opened; what they would say, our own
        # lines say (the stream lost, a file that is not a video, with the reason). At debug level they stay.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
        if "OPENCV_LOG_LEVEL" not in os.environ:
            import cv2  # (imported already by now, where the environment would come too late)

            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    handler = logging.StreamHandler()
    handler.addFilter(RebalanceRestarts())
    handler.addFilter(StorageFailuresInCallbacks())
    handler.addFilter(RepeatedLines())
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "ultralytics", "httpx"):  # httpx: a line per request of the demo's readiness probe
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
