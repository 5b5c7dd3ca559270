"""The convex hull of an output (GeoJSON lines), read in blocks so memory stays flat whatever its size.

Points (every address) are found with one regular expression per block of lines: the writer puts the geometry
last on each line, as `"geometry":{"type":"Point","coordinates":[x,y]}`. Lines with other geometries are parsed
as JSON. After each block only the hull's vertices are kept, so the work is linear and the memory bounded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

BLOCK_BYTES = 8 << 20
_NUMBER = rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_POINT = re.compile(rb'"geometry":\{"type":"Point","coordinates":\[(' + _NUMBER + rb"," + _NUMBER + rb")\]")


@dataclass(frozen=True)
class OutputHull:
    geometry: BaseGeometry | None  # None when no feature had a usable position
    features_read: int
    truncated: bool  # stopped at `max_features`: the hull is that of the first features only


def _positions_of_line(line: bytes) -> np.ndarray:
    """Every position of a line's geometry (any type), or none when the line is not a usable feature."""
    try:
        geometry = json.loads(line).get("geometry")
        coords = shapely.get_coordinates(shapely.geometry.shape(geometry)) if geometry else np.empty((0, 2))
    except (ValueError, TypeError, AttributeError, KeyError, shapely.errors.GEOSException):
        return np.empty((0, 2))
    return coords


def _block_positions(block: bytes) -> np.ndarray:
    found = _POINT.findall(block)  # b"x,y" each: one join and split make the numbers, no tuple per point
    points = np.array(b",".join(found).split(b","), dtype=float).reshape(-1, 2) if found else np.empty((0, 2))
    if len(found) == block.count(b"\n"):
        return points
    others = [_positions_of_line(line) for line in block.splitlines() if line.strip() and not _POINT.search(line)]
    return np.concatenate([points, *others]) if others else points


def _keep_hull(points: np.ndarray) -> np.ndarray:
    """The hull's vertices of `points` (lon/lat only). Points inside the octagon of the extremes in x, y, x+y and
    x-y cannot be on the hull: dropping them first (one vectorised test) spares building a geometry per point."""
    ok = np.isfinite(points).all(axis=1) & (np.abs(points[:, 0]) <= 180) & (np.abs(points[:, 1]) <= 90)
    points = points[ok]
    if len(points) <= 8:
        return points
    x, y = points[:, 0], points[:, 1]
    extremes = np.unique([f(d) for d in (x, y, x + y, x - y) for f in (np.argmin, np.argmax)])
    octagon = shapely.multipoints(points[extremes]).convex_hull
    if octagon.geom_type == "Polygon":
        inside = shapely.contains_xy(octagon, x, y)
        inside[extremes] = False
        points = points[~inside]
    return shapely.get_coordinates(shapely.multipoints(points).convex_hull)


def output_hull(path: Path, max_features: int | None = None) -> OutputHull:
    """The convex hull of the positions in `path` (a Point or a line when they are that degenerate)."""
    kept = np.empty((0, 2))
    read = 0
    truncated = False
    with path.open("rb") as lines:
        rest = b""
        while True:
            chunk = lines.read(BLOCK_BYTES)
            block = rest + chunk
            if not chunk:
                rest = b""
            else:
                cut = block.rfind(b"\n") + 1
                block, rest = block[:cut], block[cut:]
            if max_features is not None and read + block.count(b"\n") > max_features:
                block = b"".join(block.splitlines(keepends=True)[: max_features - read])
                truncated = True
            read += block.count(b"\n") + (1 if block and not block.endswith(b"\n") else 0)
            kept = _keep_hull(np.concatenate([kept, _block_positions(block)]))
            if truncated or not chunk:
                break
    if len(kept) == 0:
        return OutputHull(None, read, truncated)
    return OutputHull(shapely.multipoints(kept).convex_hull, read, truncated)
