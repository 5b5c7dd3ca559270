"""The coverage maps (world, USA, Europe), drawn offline with Pillow from `render-world.geojson`.

Projections, width and colours follow the OpenAddresses machine's maps: 1920 px wide, the height following the
extent (Europe's extent is wider than the machine's, which cut off the Urals and the far north). Layers in its
order: land, coverage fills of countries, US states, US counties, then sources' own areas (custom geometry, output
hulls, points), then US state borders and country borders (hairlines: half opaque 1 px lines, what the machine's
0.25 px at resolution 2 looks like) and coastlines (1 px black). Two additions make a map readable at any scale: an
area smaller than a marker (a town on the world map) is drawn as an outlined dot above the lines, and each map has
a legend (`legend.py`). A partly covered area (some of its entries failing) is amber. No lake polygons are
bundled, so lakes are not punched out of the land.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyproj
import shapely
from PIL import Image, ImageDraw
from shapely.geometry.base import BaseGeometry

from . import legend
from .boundaries import Boundaries, polygons_of
from .render_features import KIND_ORDER
from .shapes import from_geojson

WIDTH = 1920
WATER = (255, 255, 255)
LAND = legend.LAND
GOOD, GOOD_DARK = legend.COVERED.light, legend.COVERED.dark  # #74A578 countries, states; #1C893F the rest
PARTLY, PARTLY_DARK = legend.PARTLY.light, legend.PARTLY.dark
BAD, BAD_DARK = legend.FAILING.light, legend.FAILING.dark
HAIRLINE = (0, 0, 0, 128)  # borders
COASTLINE = (0, 0, 0, 255)
MARKER_PIXELS = 20  # an area narrower and lower than this is drawn as a dot this wide, outlined, above the lines
THUMBNAIL_WIDTH = 400  # what the Dagster UI's metadata column shows whole in a 1,280 px window


@dataclass(frozen=True)
class MapView:
    """One map: its projection, its extent in projected metres, and the lon/lat box worth projecting."""

    name: str
    crs: str
    extent: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax
    lonlat_box: tuple[float, float, float, float]  # shapes outside it are never projected (far side of the globe)
    legend_corner: str = "bottom-left"  # where the map has sea to spare
    width: int = WIDTH

    @property
    def height(self) -> int:
        xmin, ymin, xmax, ymax = self.extent
        return round(self.width * (ymax - ymin) / (xmax - xmin))

    @functools.cached_property
    def _transformer(self) -> pyproj.Transformer:
        return pyproj.Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)

    def pixels(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Pixel positions (x right, y down) of lon/lat positions; (n, 2) floats."""
        x, y = self._transformer.transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
        xmin, ymin, xmax, ymax = self.extent
        scale = self.width / (xmax - xmin)
        return np.column_stack(((np.asarray(x) - xmin) * scale, (ymax - np.asarray(y)) * scale))

    def pixel(self, lon: float, lat: float) -> tuple[int, int]:
        """The pixel a lon/lat position falls in (what a test samples)."""
        x, y = self.pixels(np.array([lon]), np.array([lat]))[0]
        return int(x), int(y)


MAPS: dict[str, MapView] = {
    "world": MapView("world", "ESRI:54029", (-18.0e6, -7.5e6, 19.5e6, 14.05e6), (-180, -90, 180, 90)),
    "usa": MapView("usa", "EPSG:2163", (-2.04e6, -2.13e6, 2.525e6, 0.74e6), (-170, 5, -40, 80)),
    # the machine's x -2.7M..5.8M, y 3.6M..8.7M cut Europe at the Urals and above 66 N (northern Norway, Finland
    # and Iceland); this one reaches 60 E and the North Cape
    "europe": MapView("europe", "ESRI:54029", (-2.7e6, 3.6e6, 6.3e6, 10.2e6), (-45, 20, 80, 85), "top-left"),
}


class _Canvas:
    """An RGB picture with fills drawn through masks (so holes stay holes) and lines drawn half opaque."""

    def __init__(self, view: MapView) -> None:
        self.view = view
        self.image = Image.new("RGB", (view.width, view.height), WATER)
        self.box = shapely.box(*view.lonlat_box)

    def _rings(self, geometry: BaseGeometry) -> Iterable[tuple[list[float], list[list[float]]]]:
        if not geometry.intersects(self.box):
            return
        clipped = geometry if self.box.contains(geometry) else geometry.intersection(self.box)
        for polygon in polygons_of(clipped):
            rings = [np.asarray(polygon.exterior.coords)] + [np.asarray(r.coords) for r in polygon.interiors]
            projected = [self.view.pixels(r[:, 0], r[:, 1]) for r in rings]
            if all(np.isfinite(p).all() for p in projected):
                yield projected[0].ravel().tolist(), [p.ravel().tolist() for p in projected[1:]]

    def pixel_box(self, geometry: BaseGeometry) -> tuple[float, float, float, float] | None:
        """The pixels a geometry spans (x0, y0, x1, y1), None when it is not on this map."""
        shells = [shell for shell, _ in self._rings(geometry) if shell]
        if not shells:
            return None
        xs = [x for shell in shells for x in shell[0::2]]
        ys = [y for shell in shells for y in shell[1::2]]
        x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
        if x1 < 0 or y1 < 0 or x0 > self.view.width or y0 > self.view.height:
            return None
        return x0, y0, x1, y1

    def fill(self, geometries: Sequence[BaseGeometry], colour: tuple[int, int, int]) -> None:
        """Fill polygons, largest first so an enclave drawn in a hole of its neighbour stays filled."""
        if not geometries:
            return
        mask = Image.new("L", self.image.size, 0)
        draw = ImageDraw.Draw(mask)
        for geometry in sorted(geometries, key=lambda g: -g.area):
            for shell, holes in self._rings(geometry):
                if len(shell) >= 6:
                    draw.polygon(shell, fill=255)
                for hole in holes:
                    if len(hole) >= 6:
                        draw.polygon(hole, fill=0)
        self.image.paste(colour, mask=mask)

    def lines(self, arcs: Sequence[np.ndarray], colour: tuple[int, int, int, int]) -> None:
        overlay = Image.new("RGBA", self.image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        west, south, east, north = self.view.lonlat_box
        for arc in arcs:
            inside = (arc[:, 0] >= west) & (arc[:, 0] <= east) & (arc[:, 1] >= south) & (arc[:, 1] <= north)
            for run in _runs(inside):
                points = self.view.pixels(arc[run, 0], arc[run, 1])
                if len(points) >= 2 and np.isfinite(points).all():
                    draw.line(points.ravel().tolist(), fill=colour, width=1)
        self.image = Image.alpha_composite(self.image.convert("RGBA"), overlay).convert("RGB")

    @property
    def marker(self) -> int:
        """The dot's width: `MARKER_PIXELS` on a 1920 px map, no less than 10 px on a thumbnail."""
        return max(round(MARKER_PIXELS * self.view.width / WIDTH), 10)

    def markers(self, centres: Sequence[tuple[float, float, tuple[int, int, int]]]) -> None:
        """Dots with a dark outline, so a covered town shows on a map of the world."""
        draw = ImageDraw.Draw(self.image)
        r = self.marker / 2
        for x, y, colour in centres:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour, outline=legend.MARKER_OUTLINE, width=2)

    def png(self) -> bytes:
        out = io.BytesIO()
        self.image.save(out, format="PNG", optimize=True)
        return out.getvalue()


def _runs(inside: np.ndarray) -> list[slice]:
    """Slices of consecutive True values."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], inside.astype(np.int8), [0]))))
    return [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


@dataclass(frozen=True)
class Area:
    """One feature of `render-world.geojson` as the maps draw it."""

    geometry: BaseGeometry
    order: int  # KIND_ORDER: countries first, sources' own areas last
    status: legend.AreaStatus
    properties: Mapping[str, Any]

    @property
    def colour(self) -> tuple[int, int, int]:
        return self.status.dark if self.order >= KIND_ORDER["county"] else self.status.light


def areas_of(geojson: Mapping[str, Any]) -> list[Area]:
    """The areas in draw order: by map layer, and within a layer failing, partly covered, then covered on top."""
    areas = []
    for feature in geojson.get("features") or []:
        props = feature.get("properties") or {}
        try:
            geometry = from_geojson(feature["geometry"])
        except (KeyError, ValueError):
            continue
        areas.append(Area(geometry, KIND_ORDER.get(props.get("kind", "geometry"), 3), legend.area_status(props), props))
    rank = {status.name: i for i, status in enumerate(reversed(legend.STATUSES))}
    return sorted(areas, key=lambda a: (a.order, rank[a.status.name]))


def render_map(view: MapView, geojson: Mapping[str, Any], boundaries: Boundaries, as_of: str | None = None) -> bytes:
    """One map as PNG bytes, with its legend (`as_of`: when the coverage was computed): on the map, or below it on
    a map narrower than 1,000 px."""
    canvas = _Canvas(view)
    canvas.fill(boundaries.land, LAND)
    counts = legend.LegendCounts.empty()
    markers = []
    for (_, colour), group in itertools.groupby(areas_of(geojson), key=lambda a: (a.order, a.colour)):
        filled = []
        for area in group:
            box = canvas.pixel_box(area.geometry)
            if box is None:
                continue
            counts.add(area.properties)
            x0, y0, x1, y1 = box
            if x1 - x0 < canvas.marker and y1 - y0 < canvas.marker:
                markers.append(((x0 + x1) / 2, (y0 + y1) / 2, colour))
            else:
                filled.append(area.geometry)
        canvas.fill(filled, colour)
    canvas.lines(boundaries.lines.state_borders + boundaries.lines.country_borders, HAIRLINE)
    canvas.lines(boundaries.lines.coastlines, COASTLINE)
    canvas.markers(markers)
    if view.width < 1000:
        canvas.image = legend.add_legend_strip(canvas.image, counts, as_of, canvas.marker)
    else:
        canvas.image = legend.draw_legend(canvas.image, counts, as_of, view.legend_corner, canvas.marker)
    return canvas.png()


def render_thumbnail(view: MapView, geojson: Mapping[str, Any], boundaries: Boundaries, as_of: str | None) -> bytes:
    """The map drawn again `THUMBNAIL_WIDTH` wide (crisper than a shrunk copy, its dots and legend still legible):
    what the Dagster UI shows in place."""
    return render_map(dataclasses.replace(view, width=THUMBNAIL_WIDTH), geojson, boundaries, as_of)
