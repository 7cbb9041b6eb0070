"""Windowed statistics: line counts and zone traffic, in 1-minute and 15-minute tumbling windows plus totals.

Windows are on scene time (the event's ``at``), so a replayed clip lands in the
same windows as the live run. Every value carries a watermark: the seq of the
last event it took and which events of that frame it has taken. One camera's
events arrive in seq order, so an event at or behind the watermark is a
redelivery and changes nothing. That makes every table exact under redelivery on
its own, whatever else a crash left half-done.

A window table keeps, per key, one watermark and the two windows it added to
last: every window's figures went out on ``its.counts`` / ``its.zone-stats`` as
they changed, so older ones are not needed again. Faust's own
windowed tables kept a key per window for ever: their expiry deleted a window
from the worker's local store but not from its changelog, never expired a window
restored from the changelog, and held an in-memory entry per write for the whole
retention.

A redelivered event's record is sent again as it was: each minute window keeps the last event it took and the
record that event sent. A redelivery of that event sends that record again; one of an event the window took
more after sends nothing (a repeat under its seq would carry the later figures: 5 exits at a moment of 3),
since those events come again right after it. A window's last figures are so not lost: its last event's
record is the one sent again (unless the key went on through more than KEPT_WINDOWS windows before the repeat:
minutes of scene time between two commits). A repeat whose total or quarter the tables had taken later events
into (a crash that kept one table's writes and lost another's) sends nothing either: its figures would mix.
"""

from __future__ import annotations

from its_faust.app import table
from schemas.analytics import CountUpdate, Crossing, WindowCount, ZoneEvent, ZoneStats, ZoneWindow
from tables.speed import speed_stats

MINUTE_S = 60.0
QUARTER_S = 900.0
KEPT_WINDOWS = 2  # per key: the two windows it added to last
# Speeds kept per window value for the percentile; a 15-minute window on one line rarely sees more.
MAX_SPEEDS = 5000


def _table(name: str):
    return table(name, key_type=str, default=dict)


line_minute = _table("line-counts-minute")  # key -> {window start: value}
line_quarter = _table("line-counts-quarter")
line_total = _table("line-counts-total")
zone_minute = _table("zone-stats-minute")
zone_quarter = _table("zone-stats-quarter")
zone_total = _table("zone-stats-total")


def once(value: dict, seq: int, event_id: str) -> dict | None:
    """A copy of ``value`` with the watermark past this event, or None when it has taken the event already."""
    last = value.get("seq", -1)
    done = value.get("done", []) if last == seq else []
    if seq < last or event_id in done:
        return None
    return {**value, "seq": seq, "done": [*done, event_id]}


def _with_speed(value: dict, kmh: float | None) -> dict:
    if kmh is not None and len(value.get("speeds", [])) < MAX_SPEEDS:
        value["speeds"] = [*value.get("speeds", []), round(kmh, 2)]
    return value


TAKEN, LAST, BEHIND = "taken", "last", "behind"  # what a table did with an event (see _in_window)


def _apply(table, key: str, seq: int, event_id: str, change) -> tuple[dict, str]:
    """Apply ``change`` to the key's value once; returns the value now and what it did (as :func:`_in_window`)."""
    value = table[key]
    new = once(value, seq, event_id)
    if new is None:
        return value, LAST if value.get("seq") == seq and value.get("done", [])[-1:] == [event_id] else BEHIND
    value = change(new)
    table[key] = value
    return value, TAKEN


def _in_window(table, size: float, key: str, at: float, seq: int, event_id: str, change):
    """The ``size``-second window that ``at`` falls in, with ``change`` applied once: (its start, its value, what
    it did, ``write``). What it did: TAKEN (applied now: ``write(value)`` stores the value, with anything added
    to it), LAST (taken before, and the last event the window took: its value is still the one right after it),
    or BEHIND (taken before, and the window took more since: its value now; None if the key no longer holds it).

    The watermark is the key's, not a window's, so a redelivery is caught whichever window it falls in. The key
    keeps the KEPT_WINDOWS windows it added to last (a camera whose scene clock went back counts on in the
    older window, which is then the current one)."""
    start = _window_start(at, size)
    slot = f"{start:.0f}"  # a JSON object's keys are strings
    held = table[key]
    windows = held.get("windows", {})
    marked = once(held, seq, event_id)
    if marked is None:
        value = windows.get(slot)
        return start, value, LAST if value and value.get("last") == [seq, event_id] else BEHIND, None

    def write(final: dict) -> None:
        touched = {s: v for s, v in windows.items() if s != slot} | {slot: final}  # the one added to last, last
        table[key] = {**marked, "windows": dict(list(touched.items())[-KEPT_WINDOWS:])}

    return start, {**change(dict(windows.get(slot, {}))), "last": [seq, event_id]}, TAKEN, write


def _apply_in_window(table, size: float, key: str, at: float, seq: int, event_id: str, change) -> tuple[float, dict | None, str]:
    """:func:`_in_window`, its value stored at once; returns the window's start, its value (None: a redelivered
    event's window the key no longer holds) and what it did."""
    start, value, did, write = _in_window(table, size, key, at, seq, event_id, change)
    if did == TAKEN:
        write(value)
    return start, value, did


def _record_once(record_type, minute_table, key: str, at: float, seq: int, event_id: str, change, build, others: list[str]):
    """The event's record, built by ``build(minute_start, minute_value)`` and kept in its minute window, or the
    one kept there if the event comes again as the window's last; None for a repeat the window took more after,
    or one the other tables (``others``: what they did with it) took more after."""
    start, value, did, write = _in_window(minute_table, MINUTE_S, key, at, seq, event_id, change)
    if did == BEHIND or (did == TAKEN and BEHIND in others):
        if did == TAKEN:
            write(value)  # the minute's figures stand; the record would mix them with later ones
        return None
    if did == LAST:
        sent = value.get("sent")
        # None kept: its figures would have mixed (see above), and still would.
        return record_type.model_validate(sent) if sent else None
    record = build(start, value)
    write({**value, "sent": record.model_dump(mode="json", by_alias=True)})
    return record


def _window_start(at: float, size: float) -> float:
    return (at // size) * size


# ---- lines ---------------------------------------------------------------------------------------

def _count_crossing(crossing: Crossing):
    def change(value: dict) -> dict:
        value["n"] = value.get("n", 0) + 1
        return _with_speed(value, crossing.speed_kmh)

    return change


def count_crossing(crossing: Crossing) -> CountUpdate | None:
    """Count a crossing (at most once) in every line table; call while processing its event."""
    # The line's version is part of the key: a line removed and added again counts from zero.
    key = f"{crossing.camera_id}|{crossing.line}@{crossing.line_version}|{crossing.direction}|{crossing.label}"
    event_id = f"t{crossing.track_id}"
    change = _count_crossing(crossing)
    # Totals keep no speeds: they would grow for ever (speed statistics are per window).
    total, total_did = _apply(line_total, key, crossing.seq, event_id, lambda v: {**v, "n": v.get("n", 0) + 1})
    q_start, quarter, quarter_did = _apply_in_window(line_quarter, QUARTER_S, key, crossing.at, crossing.seq, event_id, change)

    def build(start: float, minute: dict) -> CountUpdate:
        return CountUpdate(
            camera_id=crossing.camera_id, seq=crossing.seq, captured_at=crossing.captured_at,
            scene_time=crossing.scene_time, line=crossing.line, line_version=crossing.line_version,
            direction=crossing.direction, label=crossing.label, total=total.get("n", 0),
            minute=_window_count(minute, start, MINUTE_S), quarter=_window_count(quarter or {}, q_start, QUARTER_S),
        )

    return _record_once(CountUpdate, line_minute, key, crossing.at, crossing.seq, event_id, change, build,
                        [total_did, quarter_did])


def _window_count(value: dict, start: float, size: float) -> WindowCount:
    return WindowCount(start=start, end=start + size, count=value.get("n", 0), speed=speed_stats(value.get("speeds", [])))


# ---- zones ---------------------------------------------------------------------------------------

def _zone_change(event: ZoneEvent):
    def change(value: dict) -> dict:
        if event.kind == "enter":
            value["entries"] = value.get("entries", 0) + 1
        else:
            value["exits"] = value.get("exits", 0) + 1
            if event.dwell_s is not None:
                value["dwell_sum"] = value.get("dwell_sum", 0.0) + event.dwell_s
                value["dwell_n"] = value.get("dwell_n", 0) + 1
            value = _with_speed(value, event.mean_speed_kmh)
        return value

    return change


def _zone_window(value: dict, start: float, size: float) -> ZoneWindow:
    dwell_n = value.get("dwell_n", 0)
    return ZoneWindow(
        start=start, end=start + size, entries=value.get("entries", 0), exits=value.get("exits", 0),
        mean_dwell_s=round(value["dwell_sum"] / dwell_n, 3) if dwell_n else None,
        speed=speed_stats(value.get("speeds", [])),
    )


def zone_stats(event: ZoneEvent) -> ZoneStats | None:
    """Add a zone event (at most once) to every zone table; call while processing its event."""
    # Each adding of a zone has figures of its own; zones from before versions (0) keep their bare key.
    key = f"{event.camera_id}|{event.zone}" + (f"@{event.zone_version}" if event.zone_version else "")
    event_id = f"{event.kind}:t{event.track_id}"
    change = _zone_change(event)
    total, total_did = _apply(zone_total, key, event.seq, event_id, lambda v: {k: x for k, x in change(v).items() if k != "speeds"})
    q_start, quarter, quarter_did = _apply_in_window(zone_quarter, QUARTER_S, key, event.at, event.seq, event_id, change)

    def build(start: float, minute: dict) -> ZoneStats:
        return ZoneStats(
            camera_id=event.camera_id, seq=event.seq, captured_at=event.captured_at, scene_time=event.scene_time,
            zone=event.zone, zone_version=event.zone_version,
            occupancy=event.occupancy, entries=total.get("entries", 0), exits=total.get("exits", 0),
            minute=_zone_window(minute, start, MINUTE_S), quarter=_zone_window(quarter or {}, q_start, QUARTER_S),
        )

    return _record_once(ZoneStats, zone_minute, key, event.at, event.seq, event_id, change, build,
                        [total_did, quarter_did])
