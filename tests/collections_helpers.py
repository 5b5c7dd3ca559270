"""A small world of processed entries for the collections tests: sources in several areas and both licence
classes, with latest pointers published through `platform/publishing.publish_run` from generated outputs,
one entry held by the quality gate, one failing after a good run, one never good and one skipped."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.catalog import build_catalog
from oa_dagster.platform.publishing import publish_run
from oa_dagster.platform.store import OutputStore, put_json

FREE = {"text": "Public Domain", "attribution": False, "share-alike": False}
SA = {
    "text": "ODbL",
    "url": "https://opendatacommons.org/licenses/odbl/",
    "attribution": True,
    "attribution name": "City of New York",
    "share-alike": True,
}
CC_BY = {"text": "CC-BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/", "attribution": True}

# source key -> (lon, lat, licence, extra entry keys)
SOURCES: dict[str, tuple[float, float, Any, dict[str, Any]]] = {
    "us/ca/berkeley": (-122.27, 37.87, FREE, {"website": "https://data.cityofberkeley.info"}),
    "us/ca/oakland": (-122.27, 37.80, FREE, {}),  # held run: its previous good output is collected
    "us/ca/alameda": (-122.24, 37.76, FREE, {}),  # fails now, was good before
    "us/ny/nyc": (-74.0, 40.7, SA, {"website": "https://data.cityofnewyork.us"}),
    "us-tx-austin": (-97.74, 30.27, "Austin open data", {}),  # legacy flat name, licence as a plain string
    "de/berlin": (13.40, 52.52, CC_BY, {"website": "https://daten.berlin.de"}),
    "is/reykjavik": (-21.94, 64.15, FREE, {}),  # Iceland is in Asia, as the machine had it
    "br/sp/sao_paulo": (-46.63, -23.55, FREE, {}),
    "ca/on/toronto": (-79.38, 43.65, {"text": "OGL Toronto", "share-alike": True}, {}),
    "za/cape_town": (18.42, -33.92, FREE, {}),  # outside every list: global only
    "za/durban": (31.03, -29.86, FREE, {}),  # never good: missing
    "us/wa/retired": (-122.33, 47.61, FREE, {"skip": True}),
}
NEVER_GOOD = {"za/durban/city"}
HELD = "us/ca/oakland/city"
FAILING_NOW = "us/ca/alameda/city"
SKIPPED = "us/wa/retired/city"


def address_lines(lon: float, lat: float, rows: int, *, tag: str = "") -> list[str]:
    """GeoJSON lines as the conform writer writes them, plus a comma/quote street and two rows without a good point."""
    lines = []
    for i in range(rows):
        street = f'MAIN ST{tag}, "NORTH"' if i == 0 else f"STREET {i % 7}{tag}"
        props = {
            "hash": f"{i:016x}",
            "number": str(i + 1),
            "street": street,
            "unit": "",
            "city": "Town",
            "district": "",
            "region": "XX",
            "postcode": "12345",
            "id": str(i),
            "accuracy": 2,
        }
        geometry = {"type": "Point", "coordinates": [round(lon + i * 0.011, 7), round(lat + i * 0.003, 7)]}
        lines.append(json.dumps({"type": "Feature", "properties": props, "geometry": geometry}, separators=(",", ":")))
    bad = {
        "hash": "f" * 16,
        "number": "9",
        "street": "NOWHERE",
        "unit": "",
        "city": "",
        "district": "",
        "region": "",
        "postcode": "",
        "id": "",
        "accuracy": 2,
    }
    lines.append(json.dumps({"type": "Feature", "properties": bad, "geometry": None}, separators=(",", ":")))
    lines.append(
        json.dumps(
            {"type": "Feature", "properties": bad, "geometry": {"type": "Point", "coordinates": [200.0, 95.0]}},
            separators=(",", ":"),
        )
    )
    return lines


def parcel_lines(lon: float, lat: float, rows: int) -> list[str]:
    lines = []
    for i in range(rows):
        x, y = lon + i * 0.001, lat
        ring = [[x, y], [x + 0.0005, y], [x + 0.0005, y + 0.0005], [x, y + 0.0005], [x, y]]
        geometry = (
            {"type": "Polygon", "coordinates": [ring]} if i % 2 else {"type": "MultiPolygon", "coordinates": [[ring]]}
        )
        lines.append(
            json.dumps(
                {"type": "Feature", "properties": {"hash": f"{i:016x}", "pid": f"P-{i}"}, "geometry": geometry},
                separators=(",", ":"),
            )
        )
    return lines


@dataclass
class World:
    store: OutputStore
    catalog: dict[str, Any]
    runs: dict[str, str] = field(default_factory=dict)  # partition key -> run id of its latest good pointer
    held_run: str = ""


def write_sources(root: Path) -> Path:
    sources = root / "sources"
    for key, (_, _, licence, extra) in SOURCES.items():
        entry = {
            "name": "city",
            "protocol": "http",
            "data": "https://example.com/data.csv",
            "license": licence,
            "conform": {"format": "csv", "number": "n", "street": "s"},
            **extra,
        }
        layers: dict[str, Any] = {"addresses": [entry]}
        if key == "us/ca/berkeley":
            layers["parcels"] = [{**entry, "name": "county", "conform": {"format": "geojson", "pid": "p"}}]
        path = sources / f"{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"schema": 2, "coverage": {"country": key[:2]}, "layers": layers}))
    return sources


def publish_output(store: OutputStore, layer: str, key: str, lines: list[str], folder: Path) -> str:
    """One run of `key` with these output lines, published like a real run; returns its run id."""
    run_id = uuid.uuid4().hex[:8]
    out = folder / run_id
    out.mkdir(parents=True)
    (out / "out.geojson").write_text("\n".join(lines) + "\n")
    state = {"layer": layer, "feature_count": len(lines), "files": {"output": "out.geojson"}, "skipped": False}
    publish_run(store, state, out, run_id, entry_key=key, entry_version="v1")
    return run_id


def publish_failure(store: OutputStore, layer: str, key: str, folder: Path) -> str:
    run_id = uuid.uuid4().hex[:8]
    out = folder / run_id
    out.mkdir(parents=True)
    state = {"layer": layer, "feature_count": None, "files": {}, "source_problem": "Could not download source data"}
    publish_run(store, state, out, run_id, entry_key=key, entry_version="v1")
    return run_id


def make_world(store: OutputStore, tmp: Path, *, rows: int = 20) -> World:
    sources = write_sources(tmp / "repo")
    catalog = build_catalog(
        sources.parent, "abc1234", ref="main", origin="github:openaddresses/openaddresses@main", keep_source_dir=False
    )
    assert not catalog["invalid"], catalog["invalid"]
    put_json(store, layout.catalog_key(catalog["id"]), catalog)
    put_json(store, layout.CURRENT_CATALOG, catalog)
    world = World(store, catalog)
    outputs = tmp / "outputs"
    for key, (lon, lat, _, extra) in SOURCES.items():
        partition = f"{key}/city"
        if partition in NEVER_GOOD or extra.get("skip"):
            continue
        world.runs[partition] = publish_output(store, "addresses", partition, address_lines(lon, lat, rows), outputs)
    world.runs["us/ca/berkeley/county"] = publish_output(
        store, "parcels", "us/ca/berkeley/county", parcel_lines(-122.27, 37.87, 6), outputs
    )
    # oakland: a new run with far fewer features is held by the quality gate; latest stays on the first run
    world.held_run = publish_output(store, "addresses", HELD, address_lines(-122.27, 37.80, 1, tag="X"), outputs)
    assert store.exists(layout.held_key("addresses", HELD))
    publish_failure(store, "addresses", FAILING_NOW, outputs)
    publish_failure(store, "addresses", "za/durban/city", outputs)
    return world
