"""Counting lines, zones and calibration: the geometry a camera is configured with.

Coordinates are pixels of the camera's frames (x right, y down). Each shape
validates itself when it is built, so a command with bad geometry is rejected
with a precise reason before it can change any camera.
"""

from __future__ import annotations

import contextvars
import math
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from schemas.base import NAME_PATTERN, Record
from schemas.frames import MAX_SIDE_PX

# Shapes may reach past a frame's edges, but not this far: frames are at most MAX_SIDE_PX a side. A zone at 1e308
# was taken from a command sent straight to the topic, and every annotated picture of its camera failed after.
MAX_PIXEL = 8 * MAX_SIDE_PX
# A calibration's road points: any survey's coordinates (UTM northings run to 1e7 m), not 1e308.
MAX_METRES = 1e8
# Set while a stored configuration is read (CameraConfig): its shapes are taken as they are. One stored before the
# bounds (a worker's table, its.camera-configs) must still be read, or its camera could not even be told to drop
# the shape; what brings a shape in (a command, a config file, an API body) is checked.
reading_stored = contextvars.ContextVar("reading_stored", default=False)


def _within(limit: float, unit: str) -> tuple:
    """A float's bounds, checked with their reason (pydantic's own ge/le would say only the number), and given in the
    JSON Schema."""
    def check(value: float) -> float:
        if not -limit <= value <= limit and not reading_stored.get():
            raise ValueError(f"{value:g} is out of range: {unit} within \u00b1{limit:g}")
        return value
    return AfterValidator(check), Field(json_schema_extra={"minimum": -limit, "maximum": limit})


Pixel = Annotated[float, *_within(MAX_PIXEL, f"pixels of a frame (at most {MAX_SIDE_PX} a side) are")]
Point = tuple[Pixel, Pixel]
Metres = Annotated[float, *_within(MAX_METRES, "metres on the road are")]
RoadPoint = tuple[Metres, Metres]


_SCREEN_DIRECTIONS = ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")


class CountingLine(Record):
    """A segment from A to B. Stand at A facing B: traffic crossing from your left to your right is ``in``.

    On screen that means: a line drawn left-to-right counts downward motion as ``in``,
    a line drawn bottom-to-top counts rightward motion as ``in`` (Ultralytics' convention too).
    """

    name: str = Field(pattern=NAME_PATTERN)
    x1: Pixel
    y1: Pixel
    x2: Pixel
    y2: Pixel
    count: Literal["both", "in", "out"] = Field("both", description="Which crossing directions are counted")

    @model_validator(mode="after")
    def _not_degenerate(self) -> "CountingLine":
        length = math.hypot(self.x2 - self.x1, self.y2 - self.y1)
        if length < 2.0:
            raise ValueError(f"line {self.name!r} is {length:.1f} px long: a counting line needs two distinct ends")
        return self

    @property
    def a(self) -> Point:
        return (self.x1, self.y1)

    def travel(self) -> dict[str, str]:
        """Which way on screen the traffic counted ``in`` and ``out`` moves: {"in": "down", "out": "up"}."""
        # The in side's normal is A->B turned a quarter clockwise on screen (y grows downwards).
        clockwise_from_right = math.degrees(math.atan2(self.x2 - self.x1, -(self.y2 - self.y1)))
        step = round(clockwise_from_right / 45) % 8
        return {"in": _SCREEN_DIRECTIONS[step], "out": _SCREEN_DIRECTIONS[(step + 4) % 8]}

    @property
    def b(self) -> Point:
        return (self.x2, self.y2)


class Zone(Record):
    """A polygon. ``lane`` zones watch for stopped vehicles; ``heading_deg`` is the allowed direction of travel.

    ``heading_deg`` is measured on screen, clockwise from "right" (0 = rightwards, 90 = down the
    frame); tracks moving against it (more than ``ITS_FAUST_ANALYTICS__WRONG_WAY_DEG``, 120 degrees, off) are
    driving the wrong way.
    """

    name: str = Field(pattern=NAME_PATTERN)
    points: list[Point] = Field(min_length=3, max_length=64)
    kind: Literal["area", "lane"] = "area"
    heading_deg: float | None = Field(None, ge=0, lt=360, description="Degrees clockwise from rightwards on "
                                      "screen; any angle is taken round to [0, 360) (-90 is 270, upwards)")

    @field_validator("heading_deg", mode="before")
    @classmethod
    def _heading_round_the_circle(cls, value):
        # -90 is 270 in everyone's head: it was refused ("greater than or equal to 0"). Not a number, or not a
        # finite one, is left to the field's own check.
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return value % 360
        return value

    @field_validator("points")
    @classmethod
    def _simple_polygon(cls, points: list[Point]) -> list[Point]:
        from shapely.geometry import Polygon
        from shapely.validation import explain_validity

        try:
            polygon = Polygon(points)
            hull_area, valid = polygon.convex_hull.area, polygon.is_valid
        except Exception as exc:  # shapely's own errors, e.g. on huge coordinates
            raise ValueError(f"zone polygon cannot be built: {exc}") from None
        if hull_area < 1.0:
            raise ValueError("zone polygon has no area (are its points collinear or repeated?)")
        if not valid:
            raise ValueError(f"zone polygon is not simple: {_validity_in_words(explain_validity(polygon))}")
        return points


def _validity_in_words(validity: str) -> str:
    """Shapely's ``Self-intersection[5 5]`` as ``its edges cross at (5, 5)``; other findings as shapely gives them."""
    found = re.fullmatch(r"(Ring )?Self-intersection\[(\S+) (\S+)\]", validity)
    return f"its edges cross at ({float(found[2]):g}, {float(found[3]):g})" if found else f"{validity} (edges cross)"


class Calibration(Record):
    """Four image points and where they lie on the road plane, in metres; gives the image-to-road homography."""

    image_points: list[Point] = Field(min_length=4, max_length=4)
    road_points: list[RoadPoint] = Field(min_length=4, max_length=4, description="metres on the road plane")

    @model_validator(mode="after")
    def _not_degenerate(self) -> "Calibration":
        for label, points in (("image_points", self.image_points), ("road_points", self.road_points)):
            for i in range(4):
                p, q, r = (points[j] for j in range(4) if j != i)
                twice_area = abs((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))
                scale = max(math.dist(p, q), math.dist(q, r), math.dist(p, r), 1e-9)
                if twice_area < 1e-3 * scale * scale:
                    raise ValueError(f"calibration {label}: three of the four points are (nearly) on one line")
            if not _simple_quad(points):
                raise ValueError(f"calibration {label}: the four points, in order, make a crossed shape "
                                 "(give both sets in the same order around the area)")
        if _quad_area(self.image_points) < 100.0:
            raise ValueError("calibration image_points span under 100 square pixels: too small to measure with")
        return self


def _quad_area(points: list[Point]) -> float:
    return abs(sum(points[i][0] * points[(i + 1) % 4][1] - points[(i + 1) % 4][0] * points[i][1] for i in range(4))) / 2


def _simple_quad(points: list[Point]) -> bool:
    """No two opposite edges of the quadrilateral cross (a bow-tie would fold the homography)."""
    p = points
    return not (segments_cross(p[0], p[1], p[2], p[3]) or segments_cross(p[1], p[2], p[3], p[0]))


def segments_cross(p: Point, q: Point, a: Point, b: Point, slack: float = 0.0) -> bool:
    """Does segment p-q meet segment a-b (extended by ``slack`` pixels at both ends)?"""
    length = math.dist(a, b)
    ux, uy = (b[0] - a[0]) / length, (b[1] - a[1]) / length
    a = (a[0] - ux * slack, a[1] - uy * slack)
    b = (b[0] + ux * slack, b[1] + uy * slack)

    def orient(o: Point, s: Point, t: Point) -> float:
        return (s[0] - o[0]) * (t[1] - o[1]) - (s[1] - o[1]) * (t[0] - o[0])

    d1, d2 = orient(a, b, p), orient(a, b, q)
    d3, d4 = orient(p, q, a), orient(p, q, b)
    return (d1 * d2 <= 0) and (d3 * d4 <= 0)


def out_of_view(shape: CountingLine | Zone | Calibration, width: int, height: int) -> str | None:
    """Why nothing in a ``width`` x ``height`` frame can cross the line, enter the zone or be measured in the
    calibrated area; None when something can. Shapes that reach past the frame's edges are fine: only one
    wholly outside is not."""
    from shapely.geometry import LineString, Polygon, box

    if isinstance(shape, CountingLine):
        what, geometry, then = f"line {shape.name!r} lies", LineString([shape.a, shape.b]), "cross it"
    elif isinstance(shape, Zone):
        what, geometry, then = f"zone {shape.name!r} lies", Polygon(shape.points), "enter it"
    else:  # speeds are measured inside the image points' quadrilateral only (tables/speed.py)
        what, geometry, then = "the calibration's image points lie", Polygon(shape.image_points), "have its speed measured"
    # The frame's inside: a shape that only touches its edge holds no pixel of it.
    if geometry.intersects(box(0.5, 0.5, width - 0.5, height - 0.5)):
        return None
    x0, y0, x1, y1 = geometry.bounds
    return (f"{what} wholly outside the camera's {width}x{height} frame (x {x0:g} to {x1:g}, y {y0:g} to {y1:g}): "
            f"nothing in view can {then}")
