"""`render-world.geojson`: one feature per matched area, in the machine's shape (what the maps are drawn from).

Sources on the same boundary (a country, a US state or county) share one feature; a source placed by its own
geometry, its output's hull or a point has a feature of its own. Properties as the machine wrote them (`name`,
`status`, `source paths`, `source count`, `source dates`, `address count`, and one of `ISO 3166`, `ISO 3166-2`,
`US Census GEOID`), plus `kind` (the map layer it is drawn in), `entries good` and `entries failing` (skipped
entries not counted; an area with both is drawn as partly covered), `features` per layer and `approximate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .regions import SourceCoverage
from .shapes import to_geojson

# draw order of the maps (the machine's): countries, then states, counties, then sources' own areas
KIND_ORDER = {"country": 0, "state": 1, "county": 2, "geometry": 3, "hull": 3, "point": 3}


def _feature(members: Sequence[SourceCoverage]) -> dict[str, Any]:
    first = members[0].placement
    good = [s for s in members if s.good]
    features: dict[str, int] = {}
    for source in good:
        for entry in source.entries:
            features[entry.layer] = features.get(entry.layer, 0) + entry.features
    entries = [entry for source in members for entry in source.entries if not entry.skipped]
    dates = sorted({e.last_good[:19] for s in members for e in s.entries if e.last_good})
    properties: dict[str, Any] = {
        "name": first.boundary.name if first.boundary else members[0].key,
        "status": "good" if good else "bad",
        "source paths": ", ".join(sorted(s.path for s in members)),
        "source count": len(members),
        "source dates": ", ".join(dates),
        "address count": features.get("addresses", 0),
        "entries good": sum(1 for entry in entries if entry.good),
        "entries failing": sum(1 for entry in entries if not entry.good),
        "kind": first.kind,
        "features": features,
    }
    if first.boundary is not None:
        code_property = {"country": "ISO 3166", "state": "US Census GEOID", "county": "US Census GEOID"}
        properties[code_property[first.boundary.kind]] = first.boundary.code
    elif first.code_property and first.code:
        properties[first.code_property] = first.code
    notes = sorted({s.placement.approximate for s in members if s.placement.approximate})
    if notes:
        properties["approximate"] = "; ".join(notes)
    assert first.geometry is not None
    return {"type": "Feature", "properties": properties, "geometry": to_geojson(first.geometry)}


def render_features(sources: Sequence[SourceCoverage]) -> dict[str, Any]:
    """The FeatureCollection, features in draw order (countries first, sources' own areas last)."""
    groups: dict[str, list[SourceCoverage]] = {}
    for source in sources:
        if source.placement.geometry is None:
            continue
        key = source.placement.area_key
        groups.setdefault(key if source.placement.boundary else f"{key}:{source.key}", []).append(source)
    ordered = sorted(groups.items(), key=lambda item: (KIND_ORDER[item[1][0].placement.kind], item[0]))
    return {"type": "FeatureCollection", "features": [_feature(members) for _, members in ordered]}
