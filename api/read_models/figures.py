"""Each camera's current counts and zone figures, and the counts' windows over time."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Callable

from api.read_models.camera_sets import CamerasByPartition, HeardCameras, Removals
from api.topic_ring import Message
from its_faust.codecs import SchemaError
from schemas.analytics import CountUpdate, ZoneStats
from schemas.control import CameraConfig

if TYPE_CHECKING:
    from api.read_models.camera_events import CameraEvents

# How many minute (and quarter-hour) windows of history the API keeps per count key.
HISTORY_WINDOWS = 24 * 60
WINDOW_S = {"1m": 60.0, "15m": 900.0}


class CurrentFigures:
    """The current records of each camera (keyed by camera first), gone when it is removed or its log is lost.
    Bounded: the configured cameras, and the ``max_cameras`` others heard from most recently (:class:`HeardCameras`)."""

    # The record's field that says which configuration version added its line or zone (each subclass names it).
    VERSION_FIELD: str

    def __init__(self, max_cameras: int = 10_000, configured: Callable[[str], bool] = lambda camera_id: False):
        self.latest: dict[tuple, object] = {}
        self._partitions = CamerasByPartition()
        self._removals = Removals()
        self._heard = HeardCameras(max_cameras, configured)

    def _current(self, m: Message, schema: type):
        """``m`` decoded, or None: not a ``schema`` record (any producer may write a topic), or one of a camera removed since."""
        record = self._decoded(m, schema)
        if record is None or self._before_removal(record):
            return None  # of a line or zone of before the camera's removal (the rings fill side by side at start)
        return record

    def _decoded(self, m: Message, schema: type):
        """``m`` decoded, or None: not a ``schema`` record (any producer may write a topic)."""
        try:
            record = m.decoded(schema)
        except SchemaError:
            return None
        self._partitions.note(record.camera_id, m.partition)
        gone = self._heard.note(record.camera_id)
        if gone:
            self._forget(gone)
            self._partitions.forget(gone)
        return record

    def camera_removed(self, config: CameraConfig) -> None:
        """A removed camera's lines and zones went with it: it has no current figures (a count history stays)."""
        self._removals.note(config.camera_id, config.version, config.updated_at)
        # Only those of before it: the rings fill side by side at start, so a camera added again may have had its
        # new figures read before the old removal.
        for key in [k for k, record in self.latest.items() if k[0] == config.camera_id and self._before_removal(record)]:
            del self.latest[key]

    def _before_removal(self, record) -> bool:
        return self._removals.before(record.camera_id, getattr(record, self.VERSION_FIELD), record.captured_at)

    def forget_partition(self, partition: int) -> None:
        """Figures from a lost log would hide the new ones (they start again from 0) until they passed them."""
        self._forget(set(self._partitions.take(partition)))

    def _forget(self, cameras: set[str]) -> None:
        """Everything held of these cameras."""
        for key in [k for k in self.latest if k[0] in cameras]:
            del self.latest[key]

    def has(self, camera_id: str) -> bool:
        return any(k[0] == camera_id for k in self.latest)


class Counts(CurrentFigures):
    """Latest totals per (camera, line, direction, class), and per-window counts over time."""

    VERSION_FIELD = "line_version"

    def __init__(self, max_cameras: int = 10_000, configured: Callable[[str], bool] = lambda camera_id: False):
        super().__init__(max_cameras, configured)
        self.latest: dict[tuple[str, str, str, str], CountUpdate] = {}
        # (camera, window) -> OrderedDict[start -> {(line, direction, label): count}]
        self.history: dict[tuple[str, str], OrderedDict] = {}

    def apply(self, m: Message) -> None:
        u = self._decoded(m, CountUpdate)
        if u is None:
            return
        # A removed camera's counts are no current figures, but its history keeps them, whether the API read
        # them before the removal or after it (at start, the rings fill side by side: the history of a camera
        # removed and added again differed from one start of the API to the next, a trial).
        if not self._before_removal(u):
            self._take_latest(u)
        key = (u.camera_id, u.line, u.direction, u.label)
        for name, window in (("1m", u.minute), ("15m", u.quarter)):
            windows = self.history.setdefault((u.camera_id, name), OrderedDict())
            slot = windows.setdefault(window.start, {})
            # (version, count): a window in which the line was added again shows the new line's count.
            slot[key[1:]] = max(slot.get(key[1:], (0, 0)), (u.line_version, window.count))
            while len(windows) > HISTORY_WINDOWS:
                windows.popitem(last=False)

    def _take_latest(self, u: CountUpdate) -> None:
        key = (u.camera_id, u.line, u.direction, u.label)
        known = self.latest.get(key)
        if known is not None and (u.line_version, u.total) < (known.line_version, known.total):
            return  # an older update (or one of the line before it was added again)
        if known is None or u.line_version > known.line_version:
            # The line was added again: its other directions and classes from before are not its counts now.
            for k in [k for k, v in self.latest.items() if k[:2] == key[:2] and v.line_version < u.line_version]:
                del self.latest[k]
        self.latest[key] = u

    def _forget(self, cameras: set[str]) -> None:
        super()._forget(cameras)
        for key in [k for k in self.history if k[0] in cameras]:
            del self.history[key]

    def current(self, camera_id: str, config: CameraConfig | None = None) -> list[CountUpdate]:
        """The camera's totals by line, direction and class; with its configuration, only those of the lines it has
        now, as added now (a line removed, or removed and added again since, is not counting them)."""
        return [u for k, u in sorted(self.latest.items()) if k[0] == camera_id and _counts_line_now(u, config)]

    def all_current(self, config_of: Callable[[str], CameraConfig | None]) -> list[CountUpdate]:
        """``current`` of every camera in one pass (``config_of``: a camera's configuration, or None)."""
        return [u for k, u in sorted(self.latest.items()) if _counts_line_now(u, config_of(k[0]))]

    def idle(self, camera_id: str, config: CameraConfig | None) -> list[str]:
        """The camera's lines with no current count held: none crossed since it was added (or not in what the API has read)."""
        if config is None:
            return []
        held = {u.line for u in self.current(camera_id, config)}
        return sorted(line.name for line in config.lines if line.name not in held)

    def has(self, camera_id: str) -> bool:
        return super().has(camera_id) or any(k[0] == camera_id for k in self.history)

    def windows(self, camera_id: str, window: str, shed: CameraEvents | None = None) -> list[dict]:
        """The windows with crossings, oldest first; with ``shed``, also those in which live frames were shed,
        and in each how many (``frames_shed``: its counts miss what those frames showed)."""
        size = WINDOW_S[window]
        history = self.history.get((camera_id, window), {})
        shed_by_window = shed.shed_by_window(camera_id, size) if shed is not None else {}
        out = []
        for start in sorted(set(history) | set(shed_by_window)):
            counts = history.get(start, {})
            out.append({
                "start": start, "end": start + size,
                "counts": [{"line": l, "line_version": v, "direction": d, "label": c, "count": n}
                           for (l, d, c), (v, n) in sorted(counts.items())],
                **({"frames_shed": shed_by_window.get(start, 0)} if shed is not None else {}),
            })
        return out


def _counts_line_now(u: CountUpdate, config: CameraConfig | None) -> bool:
    if config is None:
        return True  # not configured (or not read yet): nothing to judge by
    return (any(line.name == u.line for line in config.lines)
            and u.line_version >= config.line_versions.get(u.line, 0))


class Zones(CurrentFigures):
    """Each zone's latest figures: occupancy now, entries and exits since it was added, the current windows."""

    VERSION_FIELD = "zone_version"

    def __init__(self, max_cameras: int = 10_000, configured: Callable[[str], bool] = lambda camera_id: False):
        super().__init__(max_cameras, configured)
        self.latest: dict[tuple[str, str], ZoneStats] = {}

    def apply(self, m: Message) -> None:
        stats = self._current(m, ZoneStats)
        if stats is None:
            return
        key = (stats.camera_id, stats.zone)
        known = self.latest.get(key)
        # Every zone event adds one entry or exit: a record with fewer than the figure held is an older one that
        # landed late (a refused batch-mate sent again on its own lands after its camera's later records); a
        # redelivered one has as many, and may stand.
        if known is not None and (stats.zone_version, stats.entries + stats.exits) < (known.zone_version,
                                                                                      known.entries + known.exits):
            return
        self.latest[key] = stats

    def current(self, camera_id: str, config: CameraConfig | None) -> list[ZoneStats]:
        """The camera's zones, by name; with its configuration, only the zones it has now, as added now (one removed,
        or removed and added again since, has no figures yet)."""
        return [s for (camera, _), s in sorted(self.latest.items()) if camera == camera_id and _zone_now(s, config)]

    def all_current(self, config_of: Callable[[str], CameraConfig | None]) -> list[ZoneStats]:
        """``current`` of every camera in one pass (``config_of``: a camera's configuration, or None)."""
        return [s for (camera, _), s in sorted(self.latest.items()) if _zone_now(s, config_of(camera))]

    def idle(self, camera_id: str, config: CameraConfig | None) -> list[str]:
        """The camera's zones with no current figures held: none entered since it was added (or not in what the API has read)."""
        if config is None:
            return []
        held = {s.zone for s in self.current(camera_id, config)}
        return sorted(z.name for z in config.zones if z.name not in held)


def _zone_now(s: ZoneStats, config: CameraConfig | None) -> bool:
    if config is None:
        return True  # not configured (or not read yet): nothing to judge by
    return config.zone(s.zone) is not None and s.zone_version >= config.zone_versions.get(s.zone, 0)
