"""Geometry: reprojection to WGS84 lon/lat, point-on-surface for addresses, 7-decimal rounding.

All work is vectorised (shapely 2 arrays, pyproj on numpy arrays). Source axis order is always read as
x=lon/easting, y=lat/northing (`always_xy`), which closes the reference processor's axis swap for
geographic `srs` overrides. A geometry whose output coordinates are not finite or not within lon [-180, 180]
and lat [-90, 90] is left out and counted (`out_of_range`): `inf` is not JSON, and 500/100 is no place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from oa_dagster.conform.arrow_buffers import value_offsets
from oa_dagster.errors import ConformError

WGS84 = "EPSG:4326"
DECIMALS = 7


@dataclass
class Reprojector:
    """Transforms x/y arrays from a source CRS to WGS84 lon/lat; identity when the source is WGS84."""

    source_crs: str
    transformer: Any = None

    @classmethod
    def for_crs(cls, crs: str | None) -> Reprojector:
        if crs is None:
            return cls(WGS84)
        from pyproj import CRS, Transformer
        from pyproj.exceptions import CRSError

        from oa_dagster.conform.gdal_sandbox import refuse_external_crs

        refuse_external_crs(crs, "the projection (the file's or conform.srs)")
        try:
            source = CRS.from_user_input(crs)
        except CRSError as exc:
            raise ConformError(f"unknown coordinate reference system {crs!r}: {exc}") from exc
        if source.equals(CRS.from_epsg(4326), ignore_axis_order=True):
            return cls(WGS84)
        return cls(source.to_string(), Transformer.from_crs(source, 4326, always_xy=True))

    @property
    def identity(self) -> bool:
        return self.transformer is None

    def xy(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.transformer is None:
            return x, y
        lon, lat = self.transformer.transform(x, y)
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)

    def coords(self, coords: np.ndarray) -> np.ndarray:
        lon, lat = self.xy(coords[:, 0], coords[:, 1])
        return np.column_stack([lon, lat])


@dataclass
class Bounds:
    """Running bounding box over batches."""

    min_x: float = np.inf
    min_y: float = np.inf
    max_x: float = -np.inf
    max_y: float = -np.inf

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        if len(x):
            self.min_x = min(self.min_x, float(np.min(x)))
            self.max_x = max(self.max_x, float(np.max(x)))
            self.min_y = min(self.min_y, float(np.min(y)))
            self.max_y = max(self.max_y, float(np.max(y)))

    def as_list(self) -> list[float] | None:
        corners = [self.min_x, self.min_y, self.max_x, self.max_y]
        if not np.isfinite(corners).all():
            return None
        return [round(v, DECIMALS) for v in corners]


@dataclass
class BatchGeometry:
    """The output geometry of one batch: `keep` marks rows with a usable geometry.

    Points carry `lon`/`lat` (for fast writing); other shapes carry `geojson` text, both for kept rows only.
    Rows with a geometry outside lon/lat range are not kept; `out_of_range` counts them and `example` gives
    the source x/y of the first.
    """

    keep: np.ndarray
    lon: np.ndarray | None = None
    lat: np.ndarray | None = None
    geojson: list[str] | None = None
    shapes: Any = None  # shapely geometries of kept rows (non-point layers), for the preview
    warnings: list[str] = field(default_factory=list)
    out_of_range: int = 0
    example: tuple[float, float] | None = None


def _points_on_surface(geoms: np.ndarray, log: logging.Logger | None) -> np.ndarray:
    """Point-on-surface, falling back to the envelope centre for geometries GEOS cannot handle."""
    import shapely

    try:
        return shapely.point_on_surface(geoms)
    except shapely.errors.GEOSException:
        pass
    out = np.empty(len(geoms), dtype=object)
    for i, geom in enumerate(geoms):
        try:
            out[i] = shapely.point_on_surface(geom)
        except shapely.errors.GEOSException:
            out[i] = shapely.centroid(shapely.envelope(geom)) if geom is not None else None
    if log:
        log.debug("point-on-surface failed for some geometries; used envelope centres")
    return out


def _round(values: np.ndarray) -> np.ndarray:
    return np.round(values, DECIMALS)


def in_lon_lat_range(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Where both are finite and within lon/lat ranges (NaN and inf fail every comparison)."""
    with np.errstate(invalid="ignore"):
        return (np.abs(lon) <= 180) & (np.abs(lat) <= 90)


def point_geometry(x: np.ndarray, y: np.ndarray, reproject: Reprojector, bounds: Bounds) -> BatchGeometry:
    """Geometry for rows given as coordinates (CSV lon/lat columns); NaN marks a row without coordinates."""
    present = ~(np.isnan(x) | np.isnan(y))
    lon, lat = reproject.xy(x, y)
    keep = present & in_lon_lat_range(lon, lat)
    outside = np.flatnonzero(present & ~keep)
    example = (float(x[outside[0]]), float(y[outside[0]])) if len(outside) else None
    lon, lat = _round(lon[keep]), _round(lat[keep])
    bounds.update(lon, lat)
    return BatchGeometry(keep=keep, lon=lon, lat=lat, out_of_range=len(outside), example=example)


_WKB_POINT = np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])


def _plain_wkb_points(wkb: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """x/y straight from the bytes when every row is a little-endian 2D WKB point (shapefiles of points).

    Saves decoding a million geometry objects; anything else returns None and takes the general path.
    """
    if not isinstance(wkb, pa.Array) or wkb.null_count or len(wkb) == 0 or not pa.types.is_binary(wkb.type):
        return None
    offsets = value_offsets(wkb)
    if not np.all(np.diff(offsets) == _WKB_POINT.itemsize):
        return None
    points = np.frombuffer(wkb.buffers()[2], dtype=_WKB_POINT, count=len(wkb), offset=int(offsets[0]))
    if not (np.all(points["order"] == 1) and np.all(points["type"] == 1)):
        return None
    return points["x"].copy(), points["y"].copy()


def _decode(wkb: Any) -> np.ndarray:
    import shapely

    if not isinstance(wkb, pa.Array):
        return np.asarray(wkb, dtype=object)  # shapely geometries already
    values = wkb.to_numpy(zero_copy_only=False)
    try:
        return shapely.from_wkb(values, on_invalid="ignore")
    except TypeError:  # shapely < 2.1 has no on_invalid="ignore"
        return shapely.from_wkb(values, on_invalid="warn")


def wkb_geometry(
    wkb: Any, num_rows: int, layer: str, reproject: Reprojector, bounds: Bounds, log: logging.Logger | None = None
) -> BatchGeometry:
    """Geometry for rows given as WKB (OGR formats) or shapely objects: points for addresses, shapes otherwise."""
    import shapely

    if wkb is None:
        return BatchGeometry(keep=np.zeros(num_rows, dtype=bool), lon=np.empty(0), lat=np.empty(0))
    plain = _plain_wkb_points(wkb)
    if plain is not None:
        return point_geometry(plain[0], plain[1], reproject, bounds)
    geoms = _decode(wkb)
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if layer == "addresses":
        points = np.full(len(geoms), None, dtype=object)
        is_point = present & (shapely.get_type_id(geoms) == 0)
        points[is_point] = geoms[is_point]
        others = present & ~is_point
        if others.any():
            points[others] = _points_on_surface(geoms[others], log)
        return point_geometry(shapely.get_x(points), shapely.get_y(points), reproject, bounds)
    source = shapely.force_2d(geoms[present])
    shapes = source if reproject.identity else shapely.transform(source, reproject.coords)
    # a shape outside its projection's valid area reprojects to inf/NaN, a projected file read as lon/lat
    # lies far outside: leave both out and count them; rounding only what stays cannot overflow
    with np.errstate(invalid="ignore"):
        xmin, ymin, xmax, ymax = shapely.bounds(shapes).T
    empty = shapely.is_empty(shapes)
    coords_ok = ~empty & in_lon_lat_range(xmin, ymin) & in_lon_lat_range(xmax, ymax)
    outside = np.flatnonzero(~empty & ~coords_ok)
    example = None
    if len(outside):
        first = shapely.get_coordinates(source[outside[0]])
        example = (float(first[0, 0]), float(first[0, 1])) if len(first) else None
    keep = present.copy()
    keep[present] = coords_ok
    shapes = shapely.transform(shapes[coords_ok], _round)
    if len(shapes):
        bounds.update(
            np.concatenate([xmin[coords_ok], xmax[coords_ok]]), np.concatenate([ymin[coords_ok], ymax[coords_ok]])
        )
    return BatchGeometry(
        keep=keep, geojson=list(shapely.to_geojson(shapes)), shapes=shapes, out_of_range=len(outside), example=example
    )
