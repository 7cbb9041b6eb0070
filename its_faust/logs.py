"""Logging set-up: readable lines in a terminal, one JSON object per line for log pipelines."""

from __future__ import annotations

import json
import logging
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


def setup_logging(level: str = "info", json_lines: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RepeatedLines())
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "ultralytics", "httpx"):  # httpx: a line per request of the demo's readiness probe
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
