"""Statistics of one output (`out.geojson`, a Feature per line), gathered in one streaming pass.

They feed the asset checks (features present, geometry valid and in range, address quality) and the quality
gate (which fields were filled), so they are computed once per run and stored in the run's manifest.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# House numbers the batch service's validator accepts: 12, 12a, 10-19a, grid 6N23, Wisconsin W350N5337 /
# N453, Russian 12к1 / 12с2; at most 10 characters after lower-casing and removing inner spaces.
_NUMBER = re.compile(r"^(?:\d+[a-z]?(?:-\d+[a-z]?)?|\d+[nsew]\d+|[nsew]\d+(?:[nsew]\d+)?|\d+(?:[кс]\d+)+)$")


def plausible_number(value: str) -> bool:
    text = value.strip().lower().replace(" ", "")
    return 0 < len(text) <= 10 and bool(_NUMBER.match(text))


@dataclass
class OutputStats:
    features: int = 0
    filled: dict[str, int] = field(default_factory=dict)  # property -> features with a non-empty value
    bad_geometry: int = 0  # missing, malformed, or coordinates outside lon/lat bounds
    bad_geometry_example: str | None = None
    plausible_numbers: int = 0  # addresses only
    streets: int = 0  # addresses only
    number_and_street: int = 0  # addresses only: both a plausible number and a street

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutputStats:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _positions(coords: Any, depth: int) -> list[Any]:
    """Flatten nested coordinate arrays `depth` levels deep into a list of positions."""
    items = [coords]
    for _ in range(depth):
        items = [inner for outer in items if isinstance(outer, list) for inner in outer]
    return items


_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}


def geometry_problem(geometry: Any) -> str | None:
    """Why a geometry is unusable as lon/lat output, or None when it is fine."""
    if not isinstance(geometry, dict) or geometry.get("type") not in _DEPTH:
        return "missing or unknown geometry type"
    gtype = geometry["type"]
    positions = _positions(geometry.get("coordinates"), _DEPTH[gtype])
    if not positions:
        return f"empty {gtype}"
    for pos in positions:
        if not (isinstance(pos, list) and len(pos) >= 2 and all(isinstance(c, int | float) for c in pos[:2])):
            return f"malformed position in {gtype}"
        lon, lat = pos[0], pos[1]
        if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
            return f"position {lon}, {lat} outside lon/lat bounds"
    if gtype in ("Polygon", "MultiPolygon"):
        rings = _positions(geometry["coordinates"], _DEPTH[gtype] - 1)
        if any(len(ring) < 4 or ring[0][:2] != ring[-1][:2] for ring in rings):
            return f"unclosed or degenerate ring in {gtype}"
    if gtype in ("LineString", "MultiLineString"):
        lines = _positions(geometry["coordinates"], _DEPTH[gtype] - 1)
        if any(len(line) < 2 for line in lines):
            return f"line with fewer than 2 positions in {gtype}"
    return None


def output_stats(path: Path, layer: str) -> OutputStats:
    """Stream `path` once; memory stays flat whatever the output size."""
    stats = OutputStats()
    filled: dict[str, int] = {}
    addresses = layer == "addresses"
    with path.open("rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            feature = json.loads(line)
            stats.features += 1
            props = feature.get("properties") or {}
            for name, value in props.items():
                if value not in ("", None):
                    filled[name] = filled.get(name, 0) + 1
                else:
                    filled.setdefault(name, 0)
            problem = geometry_problem(feature.get("geometry"))
            if problem:
                stats.bad_geometry += 1
                stats.bad_geometry_example = stats.bad_geometry_example or problem
            if addresses:
                number = plausible_number(str(props.get("number") or ""))
                street = bool(str(props.get("street") or "").strip())
                stats.plausible_numbers += number
                stats.streets += street
                stats.number_and_street += number and street
    stats.filled = filled
    return stats
