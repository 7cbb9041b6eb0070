"""Line counts per (camera, line, direction, class): 1-minute and 15-minute tumbling windows and running totals.

Faust windowed tables, windowed on the crossing's capture time (the Kafka
message time the analytics actor sets), so a replayed clip lands in the same
windows as the live run. Each value remembers the last crossing it counted:
crossings of one camera arrive in (seq, track id) order, so one that is not
past it is a redelivery and is not counted again. That makes every table
exact under redelivery on its own, whatever else a crash left half-done.
"""

from __future__ import annotations

from datetime import timedelta

from its_faust.app import app, settings
from schemas.analytics import CountUpdate, Crossing, WindowCount

MINUTE_S = 60.0
QUARTER_S = 900.0

_table_kw = dict(key_type=str, default=dict, partitions=settings.partitions)
minute_counts = (
    app.Table("line-counts-1m", **_table_kw).tumbling(MINUTE_S, expires=timedelta(hours=6)).relative_to_stream()
)
quarter_counts = (
    app.Table("line-counts-15m", **_table_kw).tumbling(QUARTER_S, expires=timedelta(days=2)).relative_to_stream()
)
total_counts = app.Table("line-counts-total", **_table_kw)


def count_key(c: Crossing) -> str:
    return f"{c.camera_id}|{c.line}|{c.direction}|{c.label}"


def add_once(value: dict, crossing: Crossing) -> dict | None:
    """The value with the crossing counted, or None when it was counted already."""
    last = (value.get("seq", -1), value.get("track_id", -1))
    if crossing.order <= last:
        return None
    return {"n": value.get("n", 0) + 1, "seq": crossing.seq, "track_id": crossing.track_id}


def _window(table, size: float, key: str, crossing: Crossing) -> WindowCount:
    value = table[key].current()
    new = add_once(value, crossing)
    if new is not None:
        table[key] = new
        value = new
    start = (crossing.captured_at // size) * size
    return WindowCount(start=start, end=start + size, count=value.get("n", 0))


def count(crossing: Crossing) -> CountUpdate:
    """Count a crossing (at most once) in every table; call while processing its event."""
    key = count_key(crossing)
    total = total_counts[key]
    new_total = add_once(total, crossing)
    if new_total is not None:
        total_counts[key] = total = new_total
    return CountUpdate(
        camera_id=crossing.camera_id, seq=crossing.seq, captured_at=crossing.captured_at,
        line=crossing.line, direction=crossing.direction, label=crossing.label,
        total=total.get("n", 0),
        minute=_window(minute_counts, MINUTE_S, key, crossing),
        quarter=_window(quarter_counts, QUARTER_S, key, crossing),
    )
