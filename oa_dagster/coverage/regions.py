"""Statistics per country, US state and US county: sources, entries good and failing, features, area covered.

A region counts the sources placed in it (by code, or where their geometry lies). Its covered area is the union
of those sources' areas clipped to the region, measured on an equal-area projection; a source placed on the
region itself, or on an area containing it (the US for a state, a state for its counties), covers all of it
without any geometry work. Two shares are given: of every placed source (the machine counted failing ones too)
and of the sources good now.

Population: Natural Earth's `pop_est` per country times the covered area share, i.e. assuming people spread
evenly over a country. No gridded population is bundled (the machine used GPWv4 1° boxes), so this is a rough
figure, and none is given for US states and counties.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from oa_dagster.sources.model import LAYERS

from .boundaries import Boundaries, Boundary
from .entry_status import EntryStatus
from .matching import Placement
from .shapes import area_km2

POPULATION_METHOD = (
    "Natural Earth 1:110m pop_est per country x covered area share (people assumed evenly spread within a country)"
)
AREA_METHOD = "union of the placed sources' areas clipped to the region, measured on Mollweide (ESRI:54009)"


@dataclass(frozen=True)
class SourceCoverage:
    """A source, where it is, and the state of its entries."""

    key: str
    placement: Placement
    entries: tuple[EntryStatus, ...] = field(repr=False)
    county: str | None = None  # GEOID of the US county it is counted in, when known

    @property
    def good(self) -> bool:
        return any(entry.good for entry in self.entries)

    @property
    def path(self) -> str:
        return f"sources/{self.key}.json"


def _counts(sources: Sequence[SourceCoverage]) -> dict[str, Any]:
    entries = {layer: {"good": 0, "failing": 0} for layer in LAYERS}
    features = dict.fromkeys(LAYERS, 0)
    for source in sources:
        for entry in source.entries:
            if entry.skipped:
                continue
            entries.setdefault(entry.layer, {"good": 0, "failing": 0})["good" if entry.good else "failing"] += 1
            features[entry.layer] = features.get(entry.layer, 0) + entry.features
    return {
        "sources": len(sources),
        "sources_good": sum(1 for s in sources if s.good),
        "entries": {layer: n for layer, n in entries.items() if n["good"] or n["failing"]},
        "features": {layer: n for layer, n in features.items() if n},
    }


def _covers(placement: Placement, region: Boundary) -> bool:
    """Whether a placement covers all of `region` by what it is (no geometry needed)."""
    if placement.boundary is None:
        return False
    own = placement.boundary
    if own.kind == region.kind and own.code == region.code:
        return True
    if own.kind == "country" and own.code == "US" and region.kind in ("state", "county"):
        return True
    return own.kind == "state" and region.kind == "county" and region.code[:2] == own.code


def covered_km2(region: Boundary, placements: Iterable[Placement]) -> float:
    """The area of `region` the placements cover, in km²."""
    pieces: list[BaseGeometry] = []
    for placement in placements:
        if _covers(placement, region):
            return region.area_km2
        if placement.geometry is not None and placement.geometry.intersects(region.geometry):
            pieces.append(placement.geometry.intersection(region.geometry))
    if not pieces:
        return 0.0
    return min(region.area_km2, area_km2(shapely.union_all(pieces)))


def region_row(region: Boundary, sources: Sequence[SourceCoverage], area_sources: Sequence[SourceCoverage]) -> dict:
    """One row: counts of the `sources` counted in the region, shares covered by `area_sources`."""
    every = covered_km2(region, (s.placement for s in area_sources))
    good = covered_km2(region, (s.placement for s in area_sources if s.good)) if every else 0.0
    total = region.area_km2 or 1.0
    row = {
        "code": region.code,
        "name": region.name,
        **_counts(sources),
        "status": "good" if any(s.good for s in sources) else ("bad" if sources else None),
        "area_km2": round(region.area_km2, 1),
        "covered_km2": round(every, 1),
        "covered_share": round(every / total, 4),
        "good_share": round(good / total, 4),
    }
    if region.kind == "country":
        pop = region.extra.get("pop_est")
        row["pop_est"] = pop
        row["covered_pop_est"] = round(pop * every / total) if pop is not None else None
    if region.kind == "state":
        row["usps"] = region.extra.get("usps")
    return row


def country_rows(boundaries: Boundaries, sources: Sequence[SourceCoverage]) -> list[dict]:
    by_country: dict[str, list[SourceCoverage]] = {}
    for source in sources:
        if source.placement.country in boundaries.countries:
            by_country.setdefault(str(source.placement.country), []).append(source)
    rows = [region_row(boundaries.countries[code], members, members) for code, members in by_country.items()]
    return sorted(rows, key=lambda row: row["code"])


def state_rows(boundaries: Boundaries, sources: Sequence[SourceCoverage]) -> list[dict]:
    us_wide = [s for s in sources if s.placement.boundary is not None and s.placement.boundary.code == "US"]
    by_state: dict[str, list[SourceCoverage]] = {}
    for source in sources:
        if source.placement.state in boundaries.states:
            by_state.setdefault(str(source.placement.state), []).append(source)
    codes = set(by_state) | (set(boundaries.states) if us_wide else set())
    rows = [
        region_row(boundaries.states[code], by_state.get(code, []), by_state.get(code, []) + us_wide) for code in codes
    ]
    return sorted(rows, key=lambda row: row["code"])


def county_rows(boundaries: Boundaries, sources: Sequence[SourceCoverage]) -> list[dict]:
    """Counties with a source counted in them, or any part covered by their state's sources."""
    us_wide = [s for s in sources if s.placement.boundary is not None and s.placement.boundary.code == "US"]
    by_state: dict[str, list[SourceCoverage]] = {}
    by_county: dict[str, list[SourceCoverage]] = {}
    for source in sources:
        if source.placement.state:
            by_state.setdefault(source.placement.state, []).append(source)
        if source.county:
            by_county.setdefault(source.county, []).append(source)
    rows = []
    for code, county in boundaries.counties.items():
        area_sources = by_state.get(code[:2], []) + us_wide
        members = by_county.get(code, [])
        if not members and not any(_may_cover(s.placement, county) for s in area_sources):
            continue
        row = region_row(county, members, area_sources)
        if members or row["covered_km2"] > 0:
            rows.append({**row, "state": code[:2]})
    return sorted(rows, key=lambda row: row["code"])


def _may_cover(placement: Placement, county: Boundary) -> bool:
    return _covers(placement, county) or (
        placement.geometry is not None and shapely.intersects(placement.geometry, county.geometry)
    )
