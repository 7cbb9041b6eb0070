"""Zone membership of one track: entered after a few frames inside, left after a few frames outside.

Requiring ``zone_frames`` frames in a row keeps a box that flickers on a zone's
edge from entering and leaving every frame. A track that is no longer seen
leaves its zones once it has been gone ``zone_lost_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.geometry import Point


def inside(polygon: list[Point], p: Point) -> bool:
    """Even-odd ray casting; points exactly on an edge may go either way (membership is debounced)."""
    x, y = p
    x0, y0, x1, y1 = _bounds(polygon)
    if x < x0 or x > x1 or y < y0 or y > y1:
        return False  # most tracks are outside most zones: a junction's 64 zones of 64 points took 8 ms a frame
    result = False
    n = len(polygon)
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            result = not result
    return result


_BOUNDS: dict[int, tuple[list[Point], tuple[float, float, float, float]]] = {}  # id -> (polygon, its box)


def _bounds(polygon: list[Point]) -> tuple[float, float, float, float]:
    """The polygon's bounding box, worked out once per polygon object (a configuration's zone keeps its own
    list of points until the configuration changes; the entry holds the list, so its id is not reused)."""
    held = _BOUNDS.get(id(polygon))
    if held is not None and held[0] is polygon:
        return held[1]
    if len(_BOUNDS) >= 4096:
        _BOUNDS.clear()
    xs, ys = [q[0] for q in polygon], [q[1] for q in polygon]
    box = (min(xs), min(ys), max(xs), max(ys))
    _BOUNDS[id(polygon)] = (polygon, box)
    return box


@dataclass
class Membership:
    inside: bool = False
    streak: int = 0  # frames in a row that disagree with ``inside``
    entered_at: float = 0.0
    speed_sum: float = 0.0
    speed_n: int = 0

    def observe(self, now_inside: bool, frames: int, at: float) -> str | None:
        """Returns ``"enter"``/``"exit"`` when membership changes on this frame."""
        if now_inside == self.inside:
            self.streak = 0
            return None
        self.streak += 1
        if self.streak < frames:
            return None
        self.inside, self.streak = now_inside, 0
        if now_inside:
            self.entered_at, self.speed_sum, self.speed_n = at, 0.0, 0
            return "enter"
        return "exit"

    def add_speed(self, kmh: float | None) -> None:
        if kmh is not None and self.inside:
            self.speed_sum += kmh
            self.speed_n += 1

    def mean_speed(self) -> float | None:
        return round(self.speed_sum / self.speed_n, 2) if self.speed_n else None
