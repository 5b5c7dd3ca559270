"""Geometry helpers in lon/lat: areas on an equal-area projection, 10 km around points, GeoJSON in and out."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyproj
import shapely
import shapely.affinity
import shapely.errors
import shapely.geometry
from shapely.geometry.base import BaseGeometry

EQUAL_AREA = "ESRI:54009"  # Mollweide: areas anywhere on the globe in one projection
POINT_RADIUS_KM = 10.0  # the machine buffered point coverage by 10 km
KM_PER_DEGREE = 111.32


@functools.cache
def _to_equal_area() -> pyproj.Transformer:
    return pyproj.Transformer.from_crs("EPSG:4326", EQUAL_AREA, always_xy=True)


def area_km2(geometry: BaseGeometry | None) -> float:
    """The area of a lon/lat geometry in km², measured on Mollweide (equal area)."""
    if geometry is None or geometry.is_empty:
        return 0.0
    transformer = _to_equal_area()
    projected = shapely.transform(geometry, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))
    return float(projected.area) / 1e6


def widen(geometry: BaseGeometry, radius_km: float = POINT_RADIUS_KM) -> BaseGeometry:
    """Points and lines become areas (`radius_km` around them, the machine's 10 km); areas stay as they are.

    The buffer is taken in degrees after squeezing longitudes by the cosine of the mean latitude, so the disc
    is round on the ground rather than in degrees.
    """
    if geometry.geom_type in ("Polygon", "MultiPolygon"):
        return geometry
    points = shapely.get_coordinates(geometry)
    if len(points) == 0:
        return shapely.Polygon()
    squeeze = max(math.cos(math.radians(float(np.mean(points[:, 1])))), 0.05)
    narrow = shapely.affinity.scale(geometry, xfact=squeeze, yfact=1.0, origin=(0, 0))
    area = narrow.buffer(radius_km / KM_PER_DEGREE, quad_segs=8)
    return shapely.affinity.scale(area, xfact=1 / squeeze, yfact=1.0, origin=(0, 0))


def from_geojson(value: Mapping[str, Any]) -> BaseGeometry:
    """A GeoJSON geometry as a valid shapely geometry; raises ValueError with the cause when it is unusable."""
    try:
        geometry = shapely.geometry.shape(value)
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException) as exc:
        raise ValueError(f"unusable GeoJSON geometry: {exc}") from exc
    if geometry.is_empty:
        raise ValueError("empty GeoJSON geometry")
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    return geometry


def to_geojson(geometry: BaseGeometry, digits: int = 4) -> dict[str, Any]:
    """A GeoJSON geometry with coordinates rounded to `digits` decimals (the machine wrote 4)."""
    rounded = shapely.transform(geometry, lambda xy: np.round(xy, digits))
    return shapely.geometry.mapping(rounded)
