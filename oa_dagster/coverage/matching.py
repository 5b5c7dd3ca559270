"""Where a source is: its `coverage` matched to a bundled boundary, its own geometry, or its output's hull.

The order, most exact first (a source keeps the first that applies):
1. `US Census` GEOID of a county (5 digits) or a state (2 digits) -> that county / state;
2. `ISO 3166` alpha-2 of a country -> the country; of a US subdivision (`US-CA`) -> the state;
3. `coverage.geometry` that is a Polygon / MultiPolygon -> as given;
4. free-text keys naming a whole area: only `country` -> the country; `country` us with only `state` -> the state;
5. the convex hull of the source's output (sources with no usable code, non-US subdivisions, US places);
6. a Point `coverage.geometry` -> 10 km around it (the machine's buffer);
7. the nearest enclosing area a code names, marked approximate: a US place GEOID -> its state, a non-US
   subdivision -> its country (no admin-1 boundaries are bundled), a free-text state / country.
A source matching none is unplaced: counted in the statistics, drawn nowhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pycountry
import shapely
from shapely.geometry.base import BaseGeometry

from .boundaries import Boundaries, Boundary
from .shapes import from_geojson, widen

# free-text keys narrower than a state: a source naming one of them covers less than its state or country
NARROWER_KEYS = ("county", "city", "place", "province", "region", "district", "municipality", "town", "fips")
Hull = Callable[[], BaseGeometry | None]  # the source's output hull, computed only when asked for


@dataclass(frozen=True)
class Placement:
    """Where one source is drawn and counted."""

    kind: str  # "country" | "state" | "county" | "geometry" | "hull" | "point" | "unplaced"
    geometry: BaseGeometry | None = field(repr=False)  # lon/lat; None when unplaced
    boundary: Boundary | None = None  # for country / state / county
    code_property: str | None = None  # "ISO 3166" | "ISO 3166-2" | "US Census GEOID" (render-world.geojson)
    code: str | None = None
    country: str | None = None  # alpha-2 of the country the source is counted in
    state: str | None = None  # FIPS of the US state it is counted in
    approximate: str | None = None  # why the area is only an approximation

    @property
    def area_key(self) -> str:
        """Sources on the same boundary share one map feature; others have their own."""
        return f"{self.kind}:{self.boundary.code}" if self.boundary else self.kind


def iso_code(coverage: Mapping[str, Any]) -> str | None:
    """The `ISO 3166` code upper-cased: `alpha2` (or the older `code`), or a bare string."""
    value = coverage.get("ISO 3166")
    if isinstance(value, Mapping):
        value = value.get("alpha2") or value.get("code")
    return value.strip().upper() if isinstance(value, str) and value.strip() else None


def census_geoid(coverage: Mapping[str, Any]) -> str | None:
    value = coverage.get("US Census")
    if isinstance(value, Mapping):
        value = value.get("geoid")
    text = str(value).strip() if value not in (None, "") else ""
    return text if text.isdigit() else None


def country_of(source_key: str, coverage: Mapping[str, Any], iso: str | None, geoid: str | None) -> str | None:
    """The source's country: its ISO code, US for a GEOID, the `country` key, or its path's first folder."""
    if iso:
        return iso.split("-")[0]
    if geoid:
        return "US"
    for candidate in (coverage.get("country"), source_key.split("/")[0]):
        if isinstance(candidate, str) and pycountry.countries.get(alpha_2=candidate.strip().upper()) is not None:
            return candidate.strip().upper()
    return None


def _state_of(boundaries: Boundaries, source_key: str, coverage: Mapping[str, Any], iso: str | None) -> str | None:
    """A US source's state FIPS from its GEOID, ISO code, `state` key or `us/<state>/` path."""
    geoid = census_geoid(coverage)
    if geoid and geoid[:2] in boundaries.states:
        return geoid[:2]
    candidates = [iso.split("-", 1)[1] if iso and iso.startswith("US-") else None, coverage.get("state")]
    parts = source_key.split("/")
    if parts[0] == "us" and len(parts) > 1:
        candidates.append(parts[1])
    for candidate in candidates:
        if isinstance(candidate, str):
            state = boundaries.states_by_usps.get(candidate.strip().upper()) or _state_by_name(boundaries, candidate)
            if state is not None:
                return state.code
    return None


def _state_by_name(boundaries: Boundaries, name: str) -> Boundary | None:
    wanted = name.strip().lower()
    return next((b for b in boundaries.states.values() if b.name.lower() == wanted), None)


def place(source_key: str, data: Mapping[str, Any], boundaries: Boundaries, hull: Hull) -> Placement:
    """The placement of one source (see the module docstring for the order)."""
    coverage = data.get("coverage") if isinstance(data.get("coverage"), Mapping) else {}
    assert isinstance(coverage, Mapping)
    iso, geoid = iso_code(coverage), census_geoid(coverage)
    country = country_of(source_key, coverage, iso, geoid)
    state = _state_of(boundaries, source_key, coverage, iso) if country == "US" else None
    where = {"country": country, "state": state}

    if geoid and len(geoid) == 5 and geoid in boundaries.counties:
        return _on("county", boundaries.counties[geoid], "US Census GEOID", geoid, **where)
    if geoid and len(geoid) == 2 and geoid in boundaries.states:
        return _on("state", boundaries.states[geoid], "US Census GEOID", geoid, **where)
    if iso and len(iso) == 2 and iso in boundaries.countries:
        return _on("country", boundaries.countries[iso], "ISO 3166", iso, **where)
    if iso and iso.startswith("US-") and iso[3:] in boundaries.states_by_usps:
        return _on("state", boundaries.states_by_usps[iso[3:]], "ISO 3166-2", iso, **where)
    code_property, code = ("ISO 3166-2", iso) if iso else ("US Census GEOID", geoid) if geoid else (None, None)
    given = _given_geometry(coverage)
    if given is not None and given.geom_type in ("Polygon", "MultiPolygon"):
        return Placement("geometry", given, None, code_property, code, **where)
    whole = _whole_area(boundaries, coverage, iso, geoid, country, state)
    if whole is not None:
        return whole
    outline = hull()
    if outline is not None and not outline.is_empty:
        return Placement("hull", widen(outline), None, code_property, code, **where)
    if given is not None:
        return Placement("point", widen(given), None, code_property, code, **where)
    return _approximate(boundaries, iso, geoid, country, state, code_property, code)


def _on(kind: str, boundary: Boundary, code_property: str, code: str, **where: Any) -> Placement:
    return Placement(kind, boundary.geometry, boundary, code_property, code, **where)


def _given_geometry(coverage: Mapping[str, Any]) -> BaseGeometry | None:
    """`coverage.geometry` as a valid geometry, or None when absent or unusable (then the hull is used)."""
    value = coverage.get("geometry")
    if not isinstance(value, Mapping):
        return None
    try:
        return from_geojson(value)
    except ValueError:
        return None


def _whole_area(
    boundaries: Boundaries,
    coverage: Mapping[str, Any],
    iso: str | None,
    geoid: str | None,
    country: str | None,
    state: str | None,
) -> Placement | None:
    """Free-text keys that name a whole country or US state and nothing narrower."""
    if iso or geoid or any(coverage.get(key) for key in NARROWER_KEYS):
        return None
    where = {"country": country, "state": state}
    if coverage.get("state"):
        if country == "US" and state is not None:
            return _on("state", boundaries.states[state], "US Census GEOID", state, **where)
        return None
    if isinstance(coverage.get("country"), str) and country in boundaries.countries:
        return _on("country", boundaries.countries[country], "ISO 3166", country, **where)
    return None


def _approximate(
    boundaries: Boundaries,
    iso: str | None,
    geoid: str | None,
    country: str | None,
    state: str | None,
    code_property: str | None,
    code: str | None,
) -> Placement:
    where = {"country": country, "state": state}
    if state is not None:
        area = boundaries.states[state]
        why = f"{code_property} {code}" if code else "the source's state"
        return Placement("state", area.geometry, area, code_property, code, approximate=f"{why}: whole state", **where)
    if country is not None and country in boundaries.countries:
        area = boundaries.countries[country]
        why = f"{code_property} {code}" if code else "the source's country"
        note = f"{why}: whole country (no boundary for it is bundled, and no output to outline)"
        return Placement("country", area.geometry, area, code_property, code, approximate=note, **where)
    return Placement("unplaced", None, None, code_property, code, **where)


def counted_in(placement: Placement, boundaries: Boundaries) -> Placement:
    """Fill in the country (and US state) of a geometry or hull placement from where it lies, when unknown."""
    if placement.geometry is None or (placement.country and (placement.country != "US" or placement.state)):
        return placement
    point = shapely.Point(placement.geometry.representative_point())
    country = placement.country
    if country is None:
        found = boundaries.containing("country", point)
        country = found.code if found else None
    state = placement.state
    if country == "US" and state is None:
        found = boundaries.containing("state", point)
        state = found.code if found else None
    return dataclasses.replace(placement, country=country, state=state)
