"""Has a track crossed a counting line? Once per track and line, robust to jitter and short losses.

A point's side of line A->B is the sign of the cross product, with a dead band
of ``margin`` pixels around the line: inside the band the track keeps the side
it had, so a box that jitters on the line never flips. A crossing is a change
of confirmed side whose path (from the last confirmed point to the new one)
passes through the segment itself, not just its extension. Each track counts
at most once per line, whatever it does afterwards.

A crossing by a track the tracker has followed for a few frames only is held
(``pending``) until the track has been seen long enough, and dropped with it
if it never is: such tracks are mostly a second one on a vehicle already
tracked (a truck's trailer) or a box the tracker jumped to another vehicle.

On a line that counts one direction only, a crossing the other way is confirmed
only once the track is clearly past the line (``clearance``: a quarter of its box
across the line), since it is not counted: a box whose centre wobbles back over
the line just after it would otherwise count, the counted way, a vehicle that
drove the other way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from schemas.geometry import CountingLine, Point, segments_cross


def signed_distance(line: CountingLine, p: Point) -> float:
    """Pixels from the line, positive on the right of A->B (the ``in`` side: y grows downwards)."""
    (ax, ay), (bx, by) = line.a, line.b
    cross = (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax)
    return cross / math.hypot(bx - ax, by - ay)


# The part of a box's extent across a line that its centre must be past the line for a crossing the line
# does not count to be confirmed: boxes' centres wobble by a few percent of their size from frame to frame.
CLEARANCE_OF_BOX = 0.25


def clearance(line: CountingLine, width: float, height: float) -> float:
    """Pixels past ``line`` that a box of this size must be for a crossing it does not count."""
    (ax, ay), (bx, by) = line.a, line.b
    length = math.hypot(bx - ax, by - ay)
    across = (width * abs(by - ay) + height * abs(bx - ax)) / length  # the box's extent along the line's normal
    return CLEARANCE_OF_BOX * across


@dataclass
class LineSide:
    """One track's memory of one line: the side it is confirmed on and where it last was confirmed."""

    side: int = 0  # -1 left of A->B, +1 right, 0 not yet known
    x: float = 0.0
    y: float = 0.0
    counted: bool = False
    pending: str | None = None  # a crossing by a track too young to count yet: "in"/"out", counted once it is not

    def observe(self, line: CountingLine, p: Point, margin: float, clearance: float = 0.0) -> str | None:
        """Feed the track's new point; returns ``"in"``/``"out"`` the one time it crosses, else None.

        A crossing in a direction the line does not count is not a count and does not use up
        the track's one count: a vehicle that backs over an ``in``-only line and then drives
        over it is counted once, as ``in``. Such a crossing is confirmed only ``clearance``
        pixels past the line (see the module's notes).
        """
        d = signed_distance(line, p)
        side = 1 if d > margin else -1 if d < -margin else 0
        if side == 0:
            return None  # in the dead band: keep the confirmed side
        crossed = None
        if self.side and side != self.side:
            direction = "in" if side > 0 else "out"
            if line.count not in ("both", direction) and abs(d) < clearance:
                return None  # not clearly past yet: keep the confirmed side
            if not self.counted and line.count in ("both", direction) and segments_cross(
                    (self.x, self.y), p, line.a, line.b, slack=margin):
                crossed = direction
                self.counted = True
        self.side, self.x, self.y = side, p[0], p[1]
        return crossed
