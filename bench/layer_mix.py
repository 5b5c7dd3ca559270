"""The real workload's mix of layers, for benchmarks that stand in synthetic entries for the sources repository.

Counted from the sources snapshot (`tests/sources_snapshot.py`: `OA_SOURCES_SNAPSHOT`, else `shared/` beside the
repository) when there is one: the entries of each layer in every source's `layers`, less those marked
`skip: true` (they are no partitions, so a set never runs them). Without a snapshot, `SNAPSHOT_COUNTS` is that
count as made on the pinned snapshot (2,833 sources). `scaled` spreads any total in the same proportions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oa_dagster.sources.model import LAYERS

# non-skipped entries per layer in the pinned snapshot (2,833 sources, 4,752 entries; 110 more are skipped)
SNAPSHOT_COUNTS = {"addresses": 2636, "parcels": 1373, "buildings": 579, "centerlines": 164}


def snapshot_counts(sources: Path) -> dict[str, int]:
    """Non-skipped entries per layer in every `*.json` under `sources`; unreadable files are left out."""
    counts = dict.fromkeys(LAYERS, 0)
    for path in sources.rglob("*.json"):
        try:
            layers = json.loads(path.read_text(encoding="utf-8")).get("layers") or {}
        except (OSError, ValueError, AttributeError):
            continue
        for layer, entries in layers.items():
            if layer in counts and isinstance(entries, list):
                counts[layer] += sum(1 for e in entries if isinstance(e, dict) and not e.get("skip"))
    return counts


def real_counts() -> tuple[dict[str, int], str]:
    """The per-layer counts and where they come from (the snapshot's folder, or the pinned constant)."""
    from tests.sources_snapshot import snapshot_sources

    sources = snapshot_sources()
    if sources.is_dir():
        counts = snapshot_counts(sources)
        if sum(counts.values()):
            return counts, str(sources)
    return dict(SNAPSHOT_COUNTS), "SNAPSHOT_COUNTS (pinned snapshot)"


def scaled(counts: dict[str, int], total: int) -> dict[str, int]:
    """`total` entries in the proportions of `counts` (largest remainders get the rounding)."""
    whole = sum(counts.values())
    exact = {layer: total * n / whole for layer, n in counts.items()}
    result = {layer: int(value) for layer, value in exact.items()}
    by_remainder = sorted(exact, key=lambda layer: exact[layer] - result[layer], reverse=True)
    for layer in by_remainder[: total - sum(result.values())]:
        result[layer] += 1
    return result


def layer_sequence(mix: dict[str, int]) -> list[str]:
    """One layer per synthetic entry: each layer's entries one after another, in LAYERS order."""
    return [layer for layer in LAYERS for _ in range(mix.get(layer, 0))]


# each non-address layer's conform of the GeoJSON `write_shapes` makes
SHAPE_CONFORMS: dict[str, dict[str, str]] = {
    "parcels": {"format": "geojson", "pid": "num"},
    "buildings": {"format": "geojson", "id": "num", "levels": "floors"},
    "centerlines": {"format": "geojson", "id": "num", "name": "street"},
}


def _shape(layer: str, lon: float, lat: float) -> dict[str, Any]:
    size = 0.0004
    if layer == "centerlines":
        return {"type": "LineString", "coordinates": [[lon, lat], [lon + size, lat + size / 2]]}
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


def write_shapes(folder: Path, stem: str, layer: str, rows: int, seed: int) -> tuple[str, dict[str, str]]:
    """`rows` small polygons (parcels, buildings) or lines (centerlines) as `<stem>.geojson` in `folder`, each
    shifted by `seed` so no two entries are alike: the file's name and the entry's conform."""
    features = []
    for r in range(rows):
        lon, lat = -122.0 - ((seed * rows + r) % 9999) / 10000, 37.0 + r / 10000
        properties = {"num": str(r + 1), "street": "MAIN ST", "floors": 1 + r % 3}
        features.append({"type": "Feature", "properties": properties, "geometry": _shape(layer, lon, lat)})
    name = f"{stem}.geojson"
    (folder / name).write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return name, dict(SHAPE_CONFORMS[layer])
