"""The machine's coverage maps (world, USA, Europe), drawn offline with Pillow from `render-world.geojson`.

Projections, extents, width and colours are the machine's (§1.8): 1920 px wide, the height following the
extent. Layers in its order: land, coverage fills of countries, US states, US counties, then sources' own areas
(custom geometry, output hulls, points), then US state borders and country borders (hairlines: drawn as half
opaque 1 px lines, which is what the machine's 0.25 px at resolution 2 looks like), and coastlines (1 px black).
No lake polygons are bundled, so lakes are not punched out of the land.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyproj
import shapely
from PIL import Image, ImageDraw
from shapely.geometry.base import BaseGeometry

from .boundaries import Boundaries, polygons_of
from .render_features import KIND_ORDER
from .shapes import from_geojson

WIDTH = 1920
WATER = (255, 255, 255)
LAND = (221, 221, 221)  # #dddddd
GOOD = (116, 165, 120)  # #74A578: countries, states
BAD = (244, 109, 67)
GOOD_DARK = (28, 137, 63)  # #1C893F: counties and sources' own areas
BAD_DARK = (215, 48, 39)
HAIRLINE = (0, 0, 0, 128)  # borders
COASTLINE = (0, 0, 0, 255)


@dataclass(frozen=True)
class MapView:
    """One map: its projection, its extent in projected metres, and the lon/lat box worth projecting."""

    name: str
    crs: str
    extent: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax
    lonlat_box: tuple[float, float, float, float]  # shapes outside it are never projected (far side of the globe)
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


MIN_MARK_PIXELS = 7  # the smallest area drawn: below it, a dot this wide

MAPS: dict[str, MapView] = {
    "world": MapView("world", "ESRI:54029", (-18.0e6, -7.5e6, 19.5e6, 14.05e6), (-180, -90, 180, 90)),
    "usa": MapView("usa", "EPSG:2163", (-2.04e6, -2.13e6, 2.525e6, 0.74e6), (-170, 5, -40, 80)),
    "europe": MapView("europe", "ESRI:54029", (-2.7e6, 3.6e6, 5.8e6, 8.7e6), (-45, 20, 80, 85)),
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

    def fill(self, geometries: Sequence[BaseGeometry], colour: tuple[int, int, int]) -> None:
        """Fill polygons, largest first so an enclave drawn in a hole of its neighbour stays filled. An area smaller
        than `MIN_MARK_PIXELS` (a town's output hull on a world map) is drawn as a dot of that size, so it shows."""
        if not geometries:
            return
        mask = Image.new("L", self.image.size, 0)
        draw = ImageDraw.Draw(mask)
        for geometry in sorted(geometries, key=lambda g: -g.area):
            for shell, holes in self._rings(geometry):
                xs, ys = shell[0::2], shell[1::2]
                if xs and max(xs) - min(xs) < MIN_MARK_PIXELS and max(ys) - min(ys) < MIN_MARK_PIXELS:
                    x, y, r = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2, MIN_MARK_PIXELS / 2
                    draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
                    continue
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

    def png(self) -> bytes:
        out = io.BytesIO()
        self.image.save(out, format="PNG", optimize=True)
        return out.getvalue()


def _runs(inside: np.ndarray) -> list[slice]:
    """Slices of consecutive True values."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], inside.astype(np.int8), [0]))))
    return [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def coverage_layers(geojson: Mapping[str, Any]) -> list[tuple[str, list[BaseGeometry], tuple[int, int, int]]]:
    """The fills in draw order: (name, geometries, colour) per map layer and status."""
    groups: dict[tuple[int, str], list[BaseGeometry]] = {}
    for feature in geojson.get("features") or []:
        props = feature.get("properties") or {}
        kind = props.get("kind", "geometry")
        try:
            geometry = from_geojson(feature["geometry"])
        except (KeyError, ValueError):
            continue
        groups.setdefault((KIND_ORDER.get(kind, 3), props.get("status", "bad")), []).append(geometry)
    layers = []
    for (order, status), geometries in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] == "good")):
        dark = order >= KIND_ORDER["county"]
        colour = (GOOD_DARK if dark else GOOD) if status == "good" else (BAD_DARK if dark else BAD)
        layers.append((f"{order}:{status}", geometries, colour))
    return layers


def render_map(view: MapView, geojson: Mapping[str, Any], boundaries: Boundaries) -> bytes:
    """One map as PNG bytes."""
    canvas = _Canvas(view)
    canvas.fill(boundaries.land, LAND)
    for _, geometries, colour in coverage_layers(geojson):
        canvas.fill(geometries, colour)
    canvas.lines(boundaries.lines.state_borders + boundaries.lines.country_borders, HAIRLINE)
    canvas.lines(boundaries.lines.coastlines, COASTLINE)
    return canvas.png()


def thumbnail(png: bytes, width: int = 480) -> bytes:
    """A small copy for the UI's metadata (a data: URI must stay small)."""
    image = Image.open(io.BytesIO(png))
    image.thumbnail((width, width))
    out = io.BytesIO()
    image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(out, format="PNG", optimize=True)
    return out.getvalue()
