"""``its-faust tail``: what goes through a topic, one line a record, as it arrives or from the start.

For operators: why a record was dead-lettered, what a camera reported, whether detections and
tracks are flowing, what the analytics emit. Records are shown as they are on the broker and read
leniently: a value that is not what its topic should hold (not JSON, another schema, a field
missing) is shown as it is, never a reason to stop. ``--json`` gives each record whole, with its
topic, partition, offset, timestamp and key, for other tools.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from collections.abc import Callable, Collection
from typing import Any

from its_faust.broker import BrokerError, wait_reachable
from its_faust.cli_support import terminal_safe
from its_faust.topic_reader import TopicReader
from its_faust.topic_names import (
    ALERTS,
    CAMERA_COMMANDS,
    CAMERA_CONFIGS,
    CAMERA_EVENTS,
    COUNTS,
    CROSSINGS,
    DEAD_LETTERS,
    DETECTIONS,
    FRAMES,
    TRACKS,
    WORKERS,
    ZONE_EVENTS,
    ZONE_STATS,
)

# A follower polls on and on: a fetch of several partitions costs the embedded broker CPU for each
# partition every time (see topic_reader.py), so it waits as long as a worker does between answers.
FOLLOW_FETCH_WAIT_MS = 500
LINE_WIDTH = 160
# A record stamped this long before tail started is not "from now on" (stamps are the producer's
# clock, or scene time for tracks, which trails the clock by the pipeline's latency).
STALE_MARGIN_MS = 2000
# A follower that has had nothing for this long asks whether the broker is still there (a Kafka
# client retries a lost broker for ever, quietly or with a log line a retry); one that has not
# answered for BROKER_GONE_S ends the tail with an error.
QUIET_CHECK_S = 5.0
BROKER_GONE_S = 10.0


class BrokerGone(RuntimeError):
    """The broker stopped answering while a tail followed it."""


class BrokerWatch:
    """Whether the broker of a quiet topic still answers; raises :class:`BrokerGone` once it has not for a while."""

    def __init__(self, bootstrap: str, *, check_after_s: float = QUIET_CHECK_S, gone_after_s: float = BROKER_GONE_S):
        self.bootstrap, self.check_after_s, self.gone_after_s = bootstrap, check_after_s, gone_after_s
        self.heard = time.monotonic()  # last news from the broker: records, or an answer to a check
        self.unanswered_since: float | None = None

    def records_came(self) -> None:
        self.heard, self.unanswered_since = time.monotonic(), None

    async def check_when_quiet(self) -> None:
        now = time.monotonic()
        if now - self.heard < self.check_after_s:
            return
        try:
            await asyncio.to_thread(wait_reachable, self.bootstrap, 1.0)
        except BrokerError as exc:
            self.unanswered_since = self.unanswered_since or now
            if now - self.unanswered_since >= self.gone_after_s:
                raise BrokerGone(f"stopped following: {exc}, for {now - self.unanswered_since:.0f}s now") from None
            return
        self.records_came()


def _labels(objects: list[dict]) -> str:
    counts = Counter(o.get("label", str(o.get("cls", "?"))) for o in objects)
    return ", ".join(f"{label} {n}" for label, n in counts.most_common())


def _bytes_size(b64: str) -> int:
    """Bytes that base64 text (either alphabet, padded or not) stands for, without decoding it."""
    return len(b64.rstrip("=")) * 3 // 4


def _speed(kmh: float | None) -> str:
    return f", {kmh:.0f} km/h" if kmh is not None else ""


def _frame(v: dict) -> str:
    return f"seq {v['seq']}  {v['width']}x{v['height']}  JPEG {_bytes_size(v['jpeg']) / 1024:.1f} KiB"


def _detections(v: dict) -> str:
    boxes = v["boxes"]
    kinds = f" ({_labels(boxes)})" if boxes else ""
    return (f"seq {v['seq']}  {len(boxes)} boxes{kinds}  {v['inference_ms']:.1f} ms in a batch of {v['batch_size']}, "
            f"{v['model']['name']} on {v['model']['device']}")


def _tracks(v: dict) -> str:
    objects = v["objects"]
    ids = ",".join(str(o["track_id"]) for o in objects)
    kinds = f" ({_labels(objects)}): ids {ids}" if objects else ""
    latency = f"  {(v['tracked_at'] - v['captured_at']) * 1000:.0f} ms after capture"
    return f"seq {v['seq']}  {len(objects)} tracks{kinds}{latency}"


def _camera_event(v: dict) -> str:
    text = f"{v['kind']}: {v['reason']}" if v.get("reason") else v["kind"]
    if v["kind"] == "started" and v.get("seq") is not None:
        text += f"; first seq {v['seq']}"  # where replay's stretches of this run begin
    # Counts only where there is no reason: the workers' and ingest's reasons give them already
    # ("12 live frame(s) shed, ...", "finished: 40 frames sent").
    if v.get("reason"):
        return text
    if v.get("frames_shed"):
        return f"{text}; {v['frames_shed']} frames shed"
    return f"{text}; {v['frames_sent']} frames sent" if v.get("frames_sent") else text


def _dead_letter(v: dict) -> str:
    return f"{v['stage']} rejected {v['topic']}[{v['partition']}]@{v['offset']} ({_bytes_size(v['value'])} bytes): {v['reason']}"


def _crossing(v: dict) -> str:
    return f"line {v['line']} {v['direction']}: track {v['track_id']} {v['label']}{_speed(v.get('speed_kmh'))}"


def _count(v: dict) -> str:
    return f"line {v['line']} {v['direction']} {v['label']}: total {v['total']}, {v['minute']['count']} this minute"


def _zone_event(v: dict) -> str:
    dwell = f", {v['dwell_s']:.1f} s inside" if v.get("dwell_s") is not None else ""
    return f"zone {v['zone']} {v['kind']}: track {v['track_id']} {v['label']}{dwell}{_speed(v.get('mean_speed_kmh'))}; {v['occupancy']} inside"


def _zone_stats(v: dict) -> str:
    return f"zone {v['zone']}: {v['occupancy']} inside, {v['entries']} entries, {v['exits']} exits"


def _alert(v: dict) -> str:
    state, message = v["state"], v["message"]  # a clear's message says so, with its reason: "cleared (...): ..."
    return f"{v['kind']} ({v['severity']}) {message if message.startswith(state) else f'{state}: {message}'}"


def _command(v: dict) -> str:
    change = dict(v["change"])
    op = change.pop("op")
    parts = [op, json.dumps(change, separators=(",", ":")) if change else None, f"by {v.get('issued_by') or '?'}", f"({v['command_id']})"]
    return " ".join(p for p in parts if p)


def _config(v: dict) -> str:
    if v.get("removed"):
        return f"v{v['version']} removed"
    calibrated = ", calibrated" if v.get("calibration") else ""
    limit = f", limit {v['speed_limit_kmh']:.0f} km/h" if v.get("speed_limit_kmh") else ""
    name = f" {v['name']}" if v.get("name") else ""
    return f"v{v['version']}{name} lines {len(v['lines'])}, zones {len(v['zones'])}{calibrated}{limit}"


def _worker(v: dict) -> str:
    if v["state"] == "stopped":
        return "stopped"
    model = f", {v['model']['name']} on {v['model']['device']}" if v.get("model") else ""
    waiting = f", {v['frames_waiting']} frames waiting" if v.get("frames_waiting") else ""
    partitions = ",".join(map(str, v["partitions"])) or "none"
    return f"{v['state']}: partitions {partitions}, {v['fps']:.1f} fps, {v['frames_tracked']} frames tracked{waiting}{model}"


SUMMARIES: dict[str, Callable[[dict], str]] = {
    FRAMES: _frame, DETECTIONS: _detections, TRACKS: _tracks, CAMERA_EVENTS: _camera_event, DEAD_LETTERS: _dead_letter,
    CROSSINGS: _crossing, COUNTS: _count, ZONE_EVENTS: _zone_event, ZONE_STATS: _zone_stats, ALERTS: _alert,
    CAMERA_COMMANDS: _command, CAMERA_CONFIGS: _config, WORKERS: _worker,
}


def _parse(value: bytes | None) -> tuple[Any, str | None]:
    """The value as JSON, or None and why not."""
    if value is None:
        return None, "no value (a tombstone)"
    try:
        return json.loads(value), None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, f"not JSON: {len(value)} bytes: {value[:40]!r}"


def summary(name: str, value: bytes | None) -> str:
    """One record of topic ``name`` (without the prefix) in a few words; what does not fit its topic, as it is."""
    parsed, problem = _parse(value)
    if problem:
        return f"({problem})"
    describe = SUMMARIES.get(name)
    if describe is not None and isinstance(parsed, dict):
        try:
            return describe(parsed)
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # not this topic's record, or another version of it: shown as it is
    text = json.dumps(parsed, separators=(",", ":"))
    return text if len(text) <= LINE_WIDTH else text[: LINE_WIDTH - 3] + "..."


def _clock(timestamp_ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(timestamp_ms / 1000)) + f".{timestamp_ms % 1000:03d}"


def human_line(name: str, message) -> str:
    """One record as a line for a terminal: anything a producer wrote in its key or value that a terminal would
    act on (an escape sequence, a newline) is written out."""
    key = message.key.decode(errors="backslashreplace") if message.key is not None else "-"
    line = f"{_clock(message.timestamp)}  {key}  p{message.partition}@{message.offset}  {summary(name, message.value)}"
    return terminal_safe(line)


def json_line(message) -> str:
    """The record whole: its value as JSON where it is JSON, else as text with the problem beside it."""
    parsed, problem = _parse(message.value)
    record = {
        "topic": message.topic, "partition": message.partition, "offset": message.offset,
        "timestamp": message.timestamp / 1000, "key": message.key.decode(errors="replace") if message.key is not None else None,
        "value": parsed if problem is None else (message.value.decode(errors="replace") if message.value is not None else None),
    }
    if problem is not None:
        record["problem"] = problem
    return json.dumps(record, separators=(",", ":"))


async def _newest(reader: TopicReader, last: int, wanted: set[bytes] | None) -> list:
    """The newest ``last`` records (of the ``wanted`` keys), oldest first; the reader is left at the end.

    The reader starts at the end; each partition is read back ``last`` records, and further back
    while the wanted cameras, which share their partitions with others, have fewer than that there.
    Only the newest ``last`` of each partition are held meanwhile (a partition of frames would not fit).
    """
    consumer = reader.consumer
    tps = list(consumer.assignment())
    firsts = await consumer.beginning_offsets(tps)
    ends = {tp: await consumer.position(tp) for tp in tps}
    back = max(last, 1)
    while True:
        for tp in tps:
            consumer.seek(tp, max(firsts[tp], ends[tp] - back))
        newest: dict[int, deque] = {tp.partition: deque(maxlen=last) for tp in tps}
        async for batch in reader.batches_to_end():
            for m in batch:
                if wanted is None or m.key in wanted:
                    newest[m.partition].append(m)
        found = [m for kept in newest.values() for m in kept]
        if len(found) >= last or all(ends[tp] - back <= firsts[tp] for tp in tps):
            found.sort(key=lambda m: (m.timestamp, m.partition, m.offset))
            return found[-last:] if last else []
        back *= 4


async def tail(bootstrap: str, topic: str, emit: Callable[[Any], None], *, keys: Collection[bytes] | None = None,
               from_beginning: bool = False, last: int | None = None, follow: bool = True, limit: int | None = None) -> int:
    """Hand ``emit`` the topic's records; returns how many.

    Starts at the end (only what arrives from now on), at the beginning, or ``last`` records back
    (the newest ``last`` of the chosen cameras across the partitions that hold them); without
    ``follow`` it stops at the end the topic had when it started, with ``limit`` after that many records.
    Each partition's records come in their order; what arrives together is put in time order
    (a whole topic read from the beginning comes a batch of partitions at a time).
    """
    started_ms = time.time() * 1000
    reader = TopicReader(bootstrap, topic, from_beginning=from_beginning, keys=keys,
                         many_partitions_wait_ms=FOLLOW_FETCH_WAIT_MS if follow else 10)
    await reader.start()
    wanted = set(keys) if keys is not None else None
    shown = 0

    def show(messages) -> bool:
        """Emit in time order; False once the limit is reached."""
        nonlocal shown
        for message in sorted(messages, key=lambda m: (m.timestamp, m.partition, m.offset)):
            if wanted is not None and message.key not in wanted:
                continue  # another camera in the same partition
            emit(message)
            shown += 1
            if limit is not None and shown >= limit:
                return False
        return True

    try:
        if last is not None and not from_beginning:
            if not show(await _newest(reader, last, wanted)) or not follow:
                return shown
        elif from_beginning:  # batch by batch: a topic of frames does not fit in memory
            async for batch in reader.batches_to_end():
                if not show(batch):
                    return shown
            if not follow:
                return shown
        else:
            # From the end: the embedded broker's end offset is one past its last record batch's start
            # (see TopicReader.batches_to_end), so the first fetch can bring the rest of that batch; its
            # records from before this started are not "from now on". (Draining to an empty fetch
            # instead would never end on a busy topic.)
            if not show([m for m in await reader.poll(600) if m.timestamp >= started_ms - STALE_MARGIN_MS]):
                return shown
        watch = BrokerWatch(bootstrap)
        while True:
            messages = await reader.poll(1000)
            if not show(messages):
                return shown
            if messages:
                watch.records_came()
            else:
                await watch.check_when_quiet()
    finally:
        try:
            await asyncio.wait_for(reader.stop(), 5)
        except (asyncio.CancelledError, asyncio.TimeoutError):
            pass  # a consumer whose broker is gone stops with its fetch task's cancellation

