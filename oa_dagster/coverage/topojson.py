"""A small TopoJSON decoder: the bundled boundaries are TopoJSON because shared, quantized arcs are compact.

Only what the boundaries use: a quantized `transform`, delta-encoded arcs, and Polygon / MultiPolygon geometries
(rings are arcs joined end to start; a negative index `~i` is arc `i` reversed). Besides the shapes, it says how
many features use each arc, which is how borders (arcs shared by two features) differ from coastlines.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
import shapely.affinity
from shapely.geometry.base import BaseGeometry


@dataclass(frozen=True)
class TopoFeature:
    id: str | None
    properties: dict[str, Any]
    geometry: BaseGeometry  # Polygon or MultiPolygon, lon/lat, made valid
    arcs: frozenset[int]  # the arc indices its rings use (not reversed)


class Topology:
    """The decoded arcs of one topology, and its objects' features on demand."""

    def __init__(self, topology: Mapping[str, Any]) -> None:
        if topology.get("type") != "Topology":
            raise ValueError("not a TopoJSON topology (type is not 'Topology')")
        self.objects: Mapping[str, Any] = topology["objects"]
        transform = topology.get("transform")
        scale = np.asarray(transform["scale"], dtype=float) if transform else np.ones(2)
        translate = np.asarray(transform["translate"], dtype=float) if transform else np.zeros(2)
        self.arcs: list[np.ndarray] = []
        for arc in topology["arcs"]:
            positions = np.asarray(arc, dtype=float)[:, :2]
            if transform:
                positions = np.cumsum(positions, axis=0)
            self.arcs.append(positions * scale + translate)

    def ring(self, indices: Sequence[int]) -> np.ndarray:
        """The positions of one ring: each arc after the first starts where the previous one ended."""
        pieces = []
        for n, index in enumerate(indices):
            arc = self.arcs[index] if index >= 0 else self.arcs[~index][::-1]
            pieces.append(arc if n == 0 else arc[1:])
        return np.concatenate(pieces)

    def _rings(self, rings: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """A polygon's rings; quantization collapses some tiny rings to fewer than 4 positions: dropped."""
        shell, *holes = (self.ring(indices) for indices in rings)
        return [shell, *(hole for hole in holes if len(hole) >= 4)] if len(shell) >= 4 else []

    def features(self, name: str) -> Iterator[TopoFeature]:
        """The Polygon and MultiPolygon features of object `name` (other geometry types are skipped)."""
        collection = self.objects[name]
        geometries = collection["geometries"] if collection.get("type") == "GeometryCollection" else [collection]
        for item in geometries:
            polygons = _polygon_arcs(item)
            if not polygons:
                continue
            geometry = _flat_geometry([rings for indices in polygons if (rings := self._rings(indices))])
            if geometry is None:
                continue
            used = frozenset(i if i >= 0 else ~i for rings in polygons for ring in rings for i in ring)
            yield TopoFeature(item.get("id"), dict(item.get("properties") or {}), geometry, used)

    def arc_lines(self, name: str, *, shared: bool) -> list[np.ndarray]:
        """Arcs of object `name` used by two features or more (`shared`: borders) or by one (outer edges)."""
        uses: dict[int, int] = {}
        for feature in self.features(name):
            for index in feature.arcs:
                uses[index] = uses.get(index, 0) + 1
        arcs = [self.arcs[i] for i, n in sorted(uses.items()) if (n >= 2) == shared]
        return [piece for arc in arcs for piece in _split_at_antimeridian(arc) if len(piece) >= 2]


WORLD = shapely.box(-180, -90, 180, 90)


def _unwrapped(ring: np.ndarray) -> np.ndarray:
    """A ring whose longitudes never jump across the antimeridian; a ring around a pole is closed over it."""
    lon = np.unwrap(ring[:, 0], period=360)
    out = np.column_stack((lon, ring[:, 1]))
    if abs(lon[-1] - lon[0]) > 180:  # it went once around the globe: it encloses a pole
        pole = -90.0 if ring[:, 1].mean() < 0 else 90.0
        out = np.vstack((out, [[lon[-1], pole], [lon[0], pole]], out[:1]))
    return out


def _crosses_antimeridian(rings: list[np.ndarray]) -> bool:
    return any(np.abs(np.diff(ring[:, 0])).max(initial=0) > 180 for ring in rings)


def _split_at_antimeridian(arc: np.ndarray) -> list[np.ndarray]:
    """A line in pieces that never jump from one side of ±180° to the other (as a flat map draws it)."""
    jumps = np.flatnonzero(np.abs(np.diff(arc[:, 0])) > 180) + 1
    return np.split(arc, jumps) if len(jumps) else [arc]


def _flat_geometry(polygons: list[list[np.ndarray]]) -> BaseGeometry | None:
    """Polygons as lon/lat shapes on a flat map: TopoJSON rings are spherical, so a ring crossing ±180° (Russia,
    Fiji) or circling a pole (Antarctica) is unwrapped and cut into pieces within -180..180."""
    if not any(_crosses_antimeridian(rings) for rings in polygons):
        shapes = [shapely.Polygon(rings[0], rings[1:]) for rings in polygons]
        flat: BaseGeometry | None = shapes[0] if len(shapes) == 1 else shapely.MultiPolygon(shapes) if shapes else None
        return flat if flat is None or flat.is_valid else shapely.make_valid(flat)
    pieces: list[BaseGeometry] = []
    for rings in polygons:
        if not _crosses_antimeridian(rings):
            pieces.append(shapely.Polygon(rings[0], rings[1:]))
            continue
        whole = shapely.make_valid(shapely.Polygon(_unwrapped(rings[0]), [_unwrapped(r) for r in rings[1:]]))
        for shift in (-360.0, 0.0, 360.0):
            part = shapely.affinity.translate(whole, xoff=shift).intersection(WORLD)
            if not part.is_empty and part.area > 0:
                pieces.append(part)
    if not pieces:
        return None
    geometry = pieces[0] if len(pieces) == 1 else shapely.union_all(pieces)
    return geometry if geometry.is_valid else shapely.make_valid(geometry)


def _polygon_arcs(item: Mapping[str, Any]) -> list[list[list[int]]]:
    kind = item.get("type")
    if kind == "Polygon":
        return [item["arcs"]]
    if kind == "MultiPolygon":
        return list(item["arcs"])
    return []
