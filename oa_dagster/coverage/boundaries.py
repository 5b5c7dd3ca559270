"""The bundled boundaries (see `data/NOTICE`): countries by ISO alpha-2, US states by FIPS and USPS, counties by GEOID.

Loaded once per process (about a second) and shared read-only: the coverage and every map use the same shapes.
Codes were baked into the data by `scripts/build_boundaries.py`, so nothing here needs a lookup table.
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from .shapes import area_km2
from .topojson import Topology

DATA_DIR = Path(__file__).resolve().parent / "data"
WORLD_FILE = "world-countries-50m.topo.json.gz"
US_FILE = "us-counties-10m.topo.json.gz"


@dataclass(frozen=True)
class Boundary:
    """One area a source's coverage can be matched to."""

    kind: str  # "country" | "state" | "county"
    code: str  # ISO 3166-1 alpha-2 | state FIPS ("06") | county GEOID ("06001")
    name: str
    geometry: BaseGeometry = field(repr=False)  # lon/lat
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # iso_a3, pop_est, usps

    @functools.cached_property
    def area_km2(self) -> float:
        return area_km2(self.geometry)


@dataclass(frozen=True)
class Lines:
    """Lines the maps draw over the fills: country borders, coastlines, US state borders (lon/lat arrays)."""

    country_borders: list[np.ndarray]
    coastlines: list[np.ndarray]
    state_borders: list[np.ndarray]


@dataclass(frozen=True)
class Boundaries:
    countries: dict[str, Boundary]  # by alpha-2
    states: dict[str, Boundary]  # by FIPS
    counties: dict[str, Boundary]  # by GEOID
    land: list[BaseGeometry] = field(repr=False)  # polygons of every country, coded or not (the maps' land fill)
    lines: Lines = field(repr=False)

    @functools.cached_property
    def states_by_usps(self) -> dict[str, Boundary]:
        return {b.extra["usps"]: b for b in self.states.values()}

    @functools.cached_property
    def country_index(self) -> tuple[shapely.STRtree, list[Boundary]]:
        items = list(self.countries.values())
        return shapely.STRtree([b.geometry for b in items]), items

    @functools.cached_property
    def state_index(self) -> tuple[shapely.STRtree, list[Boundary]]:
        items = list(self.states.values())
        return shapely.STRtree([b.geometry for b in items]), items

    @functools.cached_property
    def county_index(self) -> tuple[shapely.STRtree, list[Boundary]]:
        items = list(self.counties.values())
        return shapely.STRtree([b.geometry for b in items]), items

    def containing(self, kind: str, point: BaseGeometry) -> Boundary | None:
        """The country, state or county (`kind`) a lon/lat point lies in, if any."""
        tree, items = {"country": self.country_index, "state": self.state_index, "county": self.county_index}[kind]
        hits = tree.query(point, predicate="intersects")
        return items[int(hits[0])] if len(hits) else None


def polygons_of(geometry: BaseGeometry) -> list[BaseGeometry]:
    """The polygons in any geometry (what `make_valid` returns may be a collection with lines in it)."""
    if geometry.geom_type == "Polygon":
        return [] if geometry.is_empty else [geometry]
    if geometry.geom_type in ("MultiPolygon", "GeometryCollection"):
        return [polygon for part in geometry.geoms for polygon in polygons_of(part)]
    return []


def _read(name: str) -> Topology:
    with gzip.open(DATA_DIR / name, "rb") as raw:
        return Topology(json.load(raw))


def _merge(shapes: list[BaseGeometry]) -> BaseGeometry:
    """Features sharing one code (world-atlas has Australia twice) become one multipolygon."""
    return shapes[0] if len(shapes) == 1 else shapely.union_all(shapes)


@functools.cache
def load_boundaries() -> Boundaries:
    world, us = _read(WORLD_FILE), _read(US_FILE)
    by_code: dict[str, list[Any]] = {}
    all_countries = []
    for feature in world.features("countries"):
        all_countries.append(feature.geometry)
        if feature.properties.get("iso_a2"):
            by_code.setdefault(feature.properties["iso_a2"], []).append(feature)
    countries = {
        code: Boundary(
            "country",
            code,
            features[0].properties["name"],
            _merge([f.geometry for f in features]),
            {k: features[0].properties.get(k) for k in ("iso_a3", "pop_est")},
        )
        for code, features in by_code.items()
    }
    states = {
        f.id: Boundary("state", str(f.id), f.properties["name"], f.geometry, {"usps": f.properties["usps"]})
        for f in us.features("states")
    }
    counties = {
        f.id: Boundary("county", str(f.id), f.properties["name"], f.geometry, {"state": str(f.id)[:2]})
        for f in us.features("counties")
    }
    lines = Lines(
        country_borders=world.arc_lines("countries", shared=True),
        coastlines=world.arc_lines("countries", shared=False),
        state_borders=us.arc_lines("states", shared=True),
    )
    land = [part for geometry in all_countries for part in polygons_of(geometry)]
    return Boundaries(countries, states, counties, land, lines)
