"""Esri JSON geometry → GeoJSON geometry (spec §3.9), with the reference's bugs fixed.

Fixed: a coordinate of 0 is a real coordinate (the reference treated x or y == 0 as missing); holes are
given to the outer ring that contains them rather than simply the preceding one; rings are written in
RFC 7946 order (outer counter-clockwise, holes clockwise).
"""

from __future__ import annotations

import math
from typing import Any

Position = list[float]
Ring = list[Position]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    return None  # "NaN" strings and the like: an empty point


def _position(point: Any) -> Position | None:
    if not isinstance(point, list | tuple) or len(point) < 2:
        return None
    x, y = _number(point[0]), _number(point[1])
    return [x, y] if x is not None and y is not None else None


def _positions(points: Any) -> list[Position]:
    return [p for p in (_position(q) for q in points or ()) if p is not None]


def signed_area2(ring: Ring) -> float:
    """Twice the signed area: negative for clockwise rings (y up), Esri's outer-ring orientation."""
    total = 0.0
    for (x1, y1), (x2, y2) in zip(ring, ring[1:], strict=False):
        total += x1 * y2 - x2 * y1
    return total


def _inside(point: Position, ring: Ring) -> bool:
    x, y = point
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:], strict=False):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def _close(ring: Ring) -> Ring | None:
    if len(ring) < 3:
        return None
    if ring[0] != ring[-1]:
        ring = [*ring, ring[0]]
    return ring if len(ring) >= 4 else None


def rings_to_geojson(rings: Any) -> dict[str, Any] | None:
    closed = [r for r in (_close(_positions(ring)) for ring in rings or ()) if r is not None]
    closed = [r for r in closed if signed_area2(r) != 0.0]
    if not closed:
        return None
    outers = [r for r in closed if signed_area2(r) < 0]
    holes = [r for r in closed if signed_area2(r) > 0]
    if not outers:  # every ring wound the "wrong" way: treat them all as outer rings
        outers, holes = holes, []
    polygons: list[list[Ring]] = [[outer[::-1]] for outer in outers]  # outer rings counter-clockwise
    for hole in holes:
        home = next((p for p, outer in zip(polygons, outers, strict=True) if _inside(hole[0], outer)), None)
        if home is None:
            home = next(
                (p for p, outer in zip(polygons, outers, strict=True) if any(_inside(v, outer) for v in hole)), None
            )
        if home is not None:
            home.append(hole[::-1])  # holes clockwise
    if len(polygons) == 1:
        return {"type": "Polygon", "coordinates": polygons[0]}
    return {"type": "MultiPolygon", "coordinates": polygons}


def esri_to_geojson(geometry: Any) -> dict[str, Any] | None:
    """A GeoJSON geometry for an Esri JSON geometry, or None when it is empty or unusable."""
    if not isinstance(geometry, dict):
        return None
    if "x" in geometry:
        x, y = _number(geometry.get("x")), _number(geometry.get("y"))
        return {"type": "Point", "coordinates": [x, y]} if x is not None and y is not None else None
    if "points" in geometry:
        points = _positions(geometry["points"])
        if not points:
            return None
        if len(points) == 1:
            return {"type": "Point", "coordinates": points[0]}
        return {"type": "MultiPoint", "coordinates": points}
    if "paths" in geometry:
        paths = [p for p in (_positions(path) for path in geometry["paths"] or ()) if len(p) >= 2]
        if not paths:
            return None
        if len(paths) == 1:
            return {"type": "LineString", "coordinates": paths[0]}
        return {"type": "MultiLineString", "coordinates": paths}
    if "rings" in geometry:
        return rings_to_geojson(geometry["rings"])
    return None
