"""preview.png: a picture of a run's features, drawn offline with Pillow (no basemap download).

Features are projected to Web Mercator and framed on their dense part (mean ± 5 sd across, ± 3 sd
up and down, like the original machine), so a few stray points far away do not shrink the picture to a dot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAX_POINTS = 400_000
MAX_SHAPES = 20_000
WIDTH = 1000
BACKGROUND = (250, 250, 247)
INK = (29, 84, 167)
FILL = (120, 160, 220)


@dataclass
class PreviewData:
    """A bounded sample of a run's output geometry, collected while features are written."""

    lon: list[np.ndarray] = field(default_factory=list)
    lat: list[np.ndarray] = field(default_factory=list)
    shapes: list[Any] = field(default_factory=list)
    points_kept: int = 0

    def add_points(self, lon: np.ndarray, lat: np.ndarray) -> None:
        """Keep every `stride`-th point; a copy, since a strided view would keep the whole batch's array alive
        (at 5M points that held 80 MB more than at 1M: memory grew with the row count)."""
        stride = 1 + self.points_kept // MAX_POINTS
        kept_lon = lon[::stride] if stride == 1 else lon[::stride].copy()
        kept_lat = lat[::stride] if stride == 1 else lat[::stride].copy()
        self.lon.append(kept_lon)
        self.lat.append(kept_lat)
        self.points_kept += len(kept_lon)

    def add_shapes(self, shapes: Any) -> None:
        room = MAX_SHAPES - len(self.shapes)
        if room > 0:
            self.shapes.extend(list(shapes[:room]))

    @property
    def empty(self) -> bool:
        return self.points_kept == 0 and not self.shapes


def _mercator(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat = np.clip(lat, -85.05, 85.05)
    return np.radians(lon), np.log(np.tan(np.pi / 4 + np.radians(lat) / 2))


def _frame(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    xmin = max(float(x.min()), float(x.mean() - 5 * x.std()))
    xmax = min(float(x.max()), float(x.mean() + 5 * x.std()))
    ymin = max(float(y.min()), float(y.mean() - 3 * y.std()))
    ymax = min(float(y.max()), float(y.mean() + 3 * y.std()))
    span = max(xmax - xmin, ymax - ymin, 1e-6)
    pad = span * 0.02
    return xmin - pad, ymin - pad, xmax + pad, ymax + pad


def render_preview(data: PreviewData, path: Path) -> bool:
    """Draw the sample to `path`; False (and no file) when there is nothing to draw."""
    if data.empty:
        return False
    import shapely
    from PIL import Image, ImageDraw

    if data.points_kept:
        lon, lat = np.concatenate(data.lon), np.concatenate(data.lat)
    else:
        coords = shapely.get_coordinates(np.asarray(data.shapes, dtype=object))
        lon, lat = coords[:, 0], coords[:, 1]
    mx, my = _mercator(lon, lat)
    xmin, ymin, xmax, ymax = _frame(mx, my)
    scale = WIDTH / (xmax - xmin)
    height = int(min(max((ymax - ymin) * scale, 200), 1400))
    scale = min(scale, height / (ymax - ymin))

    def to_pixels(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (x - xmin) * scale, height - (y - ymin) * scale

    image = Image.new("RGB", (WIDTH, height), BACKGROUND)
    if data.points_kept:
        px, py = to_pixels(mx, my)
        inside = (px >= 0) & (px < WIDTH - 1) & (py >= 0) & (py < height - 1)
        cols, rows = px[inside].astype(int), py[inside].astype(int)
        pixels = np.asarray(image).copy()
        for dx in (0, 1):
            for dy in (0, 1):
                pixels[rows + dy, cols + dx] = INK
        image = Image.fromarray(pixels)
    else:
        draw = ImageDraw.Draw(image)
        for shape in data.shapes:
            for part in getattr(shape, "geoms", [shape]):
                _draw_shape(draw, part, to_pixels)
    image.save(path, optimize=True)
    return True


def _draw_shape(draw: Any, shape: Any, to_pixels: Any) -> None:
    import shapely

    def ring_pixels(coords: np.ndarray) -> list[tuple[float, float]]:
        x, y = to_pixels(*_mercator(coords[:, 0], coords[:, 1]))
        return list(zip(x.tolist(), y.tolist(), strict=True))

    kind = shape.geom_type
    if kind == "Polygon":
        exterior = ring_pixels(np.asarray(shape.exterior.coords))
        if len(exterior) >= 3:
            draw.polygon(exterior, fill=FILL, outline=INK)
    elif kind in ("LineString", "LinearRing"):
        draw.line(ring_pixels(np.asarray(shape.coords)), fill=INK, width=2)
    elif kind == "Point":
        x, y = ring_pixels(shapely.get_coordinates(shape))[0]
        draw.rectangle([x - 1, y - 1, x + 1, y + 1], fill=INK)
    elif hasattr(shape, "geoms"):
        for part in shape.geoms:
            _draw_shape(draw, part, to_pixels)
