"""The coverage of the stored catalog, end to end: entry states, placements, regions, lost entries; and the files.

Reads `catalog/current.json`, the `latest/` pointers, the run manifests and (for sources placed by their hull)
the latest good outputs; writes `coverage/stats.json`, `coverage/render-world.geojson` and
`coverage/lost-sources.json`. One broken source (an output that cannot be read, a geometry that cannot be used)
is recorded in `problems` with its cause and placed as well as the rest allows; it never stops the others.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.content_types import GEOJSON
from oa_dagster.platform.store import OutputStore, get_json, put_json

from .boundaries import Boundaries, load_boundaries
from .entry_status import EntryStatus, entry_statuses, newest_set
from .hull import output_hull
from .keys import COVERAGE_FILES, LOST_SOURCES_KEY, RENDER_GEOJSON_KEY, STATS_KEY
from .lost_sources import LostEntry, lost_entries
from .matching import counted_in, place
from .regions import (
    AREA_METHOD,
    POPULATION_METHOD,
    SourceCoverage,
    country_rows,
    county_rows,
    state_rows,
)
from .render_features import render_features
from .shapes import from_geojson

HULL_MAX_FEATURES = 2_000_000  # per entry: beyond it the hull is that of the first features (said in `problems`)
HULL_MAX_ENTRIES = 3  # per source: addresses first, then the smallest outputs of other layers


@dataclass
class CoverageReport:
    catalog_id: str
    sources: list[SourceCoverage]
    countries: list[dict[str, Any]]
    states: list[dict[str, Any]]
    counties: list[dict[str, Any]]
    lost: list[LostEntry]
    newest_set: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def placements(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for source in self.sources:
            counts[source.placement.kind] = counts.get(source.placement.kind, 0) + 1
        return dict(sorted(counts.items()))

    def stats(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "catalog": self.catalog_id,
            "set": (self.newest_set or {}).get("set_id"),
            "methods": {"area": AREA_METHOD, "population": POPULATION_METHOD},
            "placements": self.placements(),
            "unplaced": sorted(s.key for s in self.sources if s.placement.kind == "unplaced"),
            "approximate": {s.key: s.placement.approximate for s in self.sources if s.placement.approximate},
            "countries": self.countries,
            "us_states": self.states,
            "us_counties": self.counties,
            "problems": self.problems,
        }

    def lost_table(self) -> dict[str, Any]:
        """The machine's shape (`headers`, `rows`) plus the rows as records."""
        return {
            "created": self.created,
            "set": (self.newest_set or {}).get("set_id"),
            "headers": ["Source", "Layer", "Entry", "Max Features", "Last Good", "Problem"],
            "rows": [[r.source, r.layer, r.entry, r.max_features, r.last_good, r.problem] for r in self.lost],
            "entries": [r.to_dict() for r in self.lost],
        }


class _Hulls:
    """Outlines sources from their latest good outputs (downloaded to a scratch folder, one at a time)."""

    def __init__(self, store: OutputStore, work: Path, max_features: int, problems: list[str]) -> None:
        self.store, self.work, self.max_features, self.problems = store, work, max_features, problems

    def of(self, source: str, entries: list[EntryStatus]) -> BaseGeometry | None:
        with_output = [e for e in entries if e.output_key]
        with_output.sort(key=lambda e: (e.layer != "addresses", (e.pointer or {}).get("sizes", {}).get("output", 0)))
        hulls = [h for entry in with_output[:HULL_MAX_ENTRIES] if (h := self._entry(source, entry)) is not None]
        return shapely.union_all(hulls).convex_hull if hulls else None

    def _entry(self, source: str, entry: EntryStatus) -> BaseGeometry | None:
        path = self.work / "output.geojson"
        try:
            self.store.download(str(entry.output_key), path)
            hull = output_hull(path, self.max_features)
        except (OSError, ValueError) as exc:
            self.problems.append(f"{source} {entry.layer} {entry.key}: cannot read the output for its hull: {exc}")
            return None
        finally:
            path.unlink(missing_ok=True)
        if hull.truncated:
            self.problems.append(
                f"{source} {entry.layer} {entry.key}: hull of the first {hull.features_read:,} features only"
            )
        return hull.geometry


def _placed(
    key: str,
    data: Mapping[str, Any],
    entries: list[EntryStatus],
    boundaries: Boundaries,
    hulls: _Hulls,
    problems: list[str],
) -> SourceCoverage:
    """One source placed; a `coverage.geometry` that cannot be used is reported (and the next rule applies)."""
    coverage = data.get("coverage")
    if isinstance(coverage, Mapping) and isinstance(coverage.get("geometry"), Mapping):
        try:
            from_geojson(coverage["geometry"])
        except ValueError as exc:
            problems.append(f"{key}: coverage.geometry not used: {exc}")
    placement = counted_in(place(key, data, boundaries, lambda: hulls.of(key, entries)), boundaries)
    county = placement.boundary.code if placement.kind == "county" and placement.boundary else None
    if county is None and placement.country == "US" and placement.kind in ("geometry", "hull", "point"):
        assert placement.geometry is not None
        found = boundaries.containing("county", shapely.Point(placement.geometry.representative_point()))
        county = found.code if found else None
    return SourceCoverage(key, placement, tuple(entries), county)


def compute_coverage(
    store: OutputStore, *, catalog: Mapping[str, Any] | None = None, hull_max_features: int = HULL_MAX_FEATURES
) -> CoverageReport:
    """The coverage of the store's current catalog (or `catalog`). Raises LookupError when there is none."""
    catalog = catalog if catalog is not None else get_json(store, layout.CURRENT_CATALOG)
    if catalog is None:
        raise LookupError(f"no catalog in the store ({layout.CURRENT_CATALOG}): materialize source_catalog first")
    boundaries = load_boundaries()
    statuses = entry_statuses(store, catalog)
    by_source: dict[str, list[EntryStatus]] = {}
    for status in statuses:
        by_source.setdefault(status.source, []).append(status)
    problems: list[str] = []
    sources = []
    with tempfile.TemporaryDirectory(prefix="oa-coverage-") as work:
        hulls = _Hulls(store, Path(work), hull_max_features, problems)
        for key, record in sorted((catalog.get("sources") or {}).items()):
            data = record.get("data") if isinstance(record, Mapping) else None
            if not isinstance(data, Mapping):
                problems.append(f"{key}: no source JSON in the catalog")
                continue
            sources.append(_placed(key, data, by_source.get(key, []), boundaries, hulls, problems))
    return CoverageReport(
        catalog_id=str(catalog.get("id")),
        sources=sources,
        countries=country_rows(boundaries, sources),
        states=state_rows(boundaries, sources),
        counties=county_rows(boundaries, sources),
        lost=lost_entries(store, statuses),
        newest_set=newest_set(store),
        problems=problems,
    )


def write_coverage(store: OutputStore, report: CoverageReport) -> dict[str, str]:
    """The three files; returns role -> key."""
    geojson = render_features(report.sources)
    document = json.dumps(geojson, ensure_ascii=False, separators=(",", ":")).encode()
    store.put_bytes(RENDER_GEOJSON_KEY, document, content_type=GEOJSON)  # one document, not GeoJSON lines
    put_json(store, STATS_KEY, report.stats())
    put_json(store, LOST_SOURCES_KEY, report.lost_table())
    return dict(COVERAGE_FILES)
