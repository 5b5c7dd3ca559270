"""A store with a crafted history for the coverage tests: real sources, outputs and failures published as runs are.

The sources are copies of real OpenAddresses source files (`tests/data/coverage_sources`, licence beside them)
plus one written here (`us/ri/iso_state`: the only kind of coverage no real source uses, an `ISO 3166` US state).
Each run is published through `platform.publishing.publish_run`; its `created` time is then set to the crafted
date (runs published within one second cannot be told apart by the store's clock).
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from oa_dagster.assets.catalog import source_catalog
from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.publishing import publish_run
from oa_dagster.platform.store import LocalStore, OutputStore, get_json, put_json
from oa_dagster.resources.deployments import local_resources, s3_resources
from tests.servers.fixtures import MOTO_CREDS, moto_bucket

FIXTURE_SOURCES = Path(__file__).resolve().parent / "data" / "coverage_sources"
RI_SOURCE = {
    "schema": 2,
    "coverage": {"ISO 3166": {"alpha2": "US-RI"}, "country": "us", "state": "ri"},
    "layers": {
        "addresses": [
            {
                "name": "state",
                "protocol": "http",
                "data": "https://example.com/ri.csv",
                "conform": {"format": "csv", "number": "n", "street": "s", "lon": "x", "lat": "y"},
            }
        ]
    },
}


def copy_sources(root: Path) -> Path:
    """A sources repository under `root`: the fixture copies and the Rhode Island source."""
    repo = root / "repo"
    shutil.copytree(FIXTURE_SOURCES, repo)
    (repo / "sources" / "us" / "ri").mkdir(parents=True)
    (repo / "sources" / "us" / "ri" / "iso_state.json").write_text(json.dumps(RI_SOURCE, indent=1))
    return repo / "sources"


def point_lines(points: list[tuple[float, float]]) -> list[str]:
    """GeoJSON lines as the writer makes them (geometry last)."""
    return [
        json.dumps(
            {
                "type": "Feature",
                "properties": {"number": str(i + 1), "street": "MAIN ST", "hash": f"{i:016x}"},
                "geometry": {"type": "Point", "coordinates": [lon, lat]},
            },
            separators=(",", ":"),
        )
        for i, (lon, lat) in enumerate(points)
    ]


def grid(west: float, south: float, east: float, north: float, n: int = 5) -> list[tuple[float, float]]:
    """n x n points spread over a box, corners included (so the hull is the box)."""
    step_x, step_y = (east - west) / (n - 1), (north - south) / (n - 1)
    return [(round(west + i * step_x, 6), round(south + j * step_y, 6)) for i in range(n) for j in range(n)]


def _set_created(store: OutputStore, layer: str, key: str, prefix: str, created: str) -> None:
    manifest = get_json(store, f"{prefix}/{layout.MANIFEST}")
    put_json(store, f"{prefix}/{layout.MANIFEST}", {**manifest, "created": created})
    pointer = get_json(store, layout.latest_key(layer, key))
    if pointer and pointer["prefix"] == prefix:
        put_json(store, layout.latest_key(layer, key), {**pointer, "created": created})


def publish_output(
    store: OutputStore, layer: str, key: str, points: list[tuple[float, float]], folder: Path, created: str
) -> str:
    run_id = uuid.uuid4().hex[:12]
    out = folder / run_id
    out.mkdir(parents=True)
    lines = point_lines(points)
    (out / "out.geojson").write_text("\n".join(lines) + "\n")
    state = {"layer": layer, "feature_count": len(lines), "files": {"output": "out.geojson"}, "skipped": False}
    published = publish_run(store, state, out, run_id, entry_key=key, entry_version="v1", max_drop=1.0)
    _set_created(store, layer, key, published.prefix, created)
    return run_id


def publish_failure(store: OutputStore, layer: str, key: str, folder: Path, created: str) -> str:
    run_id = uuid.uuid4().hex[:12]
    out = folder / run_id
    out.mkdir(parents=True)
    state = {"layer": layer, "feature_count": None, "files": {}, "source_problem": "Could not download source data"}
    published = publish_run(store, state, out, run_id, entry_key=key, entry_version="v1")
    _set_created(store, layer, key, published.prefix, created)
    return run_id


BRANDENBURG = (13.0, 52.0, 14.0, 53.0)  # de/bb/statewide: placed by its output's hull
RIGA = (24.0, 56.9, 24.3, 57.05)  # lv/city_of_riga: no placeable coverage, placed by its hull


@dataclass
class History:
    """What was published, for the tests to check against."""

    runs: dict[str, list[str]] = field(default_factory=dict)  # "<layer> <key>" -> run ids in order


def publish_history(store: OutputStore, folder: Path) -> History:
    """Good, failing and never-run entries (the catalog must already be in the store)."""
    history = History()

    def good(layer: str, key: str, points: list[tuple[float, float]], created: str) -> None:
        history.runs.setdefault(f"{layer} {key}", []).append(publish_output(store, layer, key, points, folder, created))

    def failed(layer: str, key: str, created: str) -> None:
        history.runs.setdefault(f"{layer} {key}", []).append(publish_failure(store, layer, key, folder, created))

    good("addresses", "us/nh/statewide/state", grid(-72.0, 43.0, -71.0, 44.0, 4), "2024-03-01T00:00:00+00:00")
    good("addresses", "us/sc/florence/county", grid(-79.9, 34.0, -79.6, 34.2, 3), "2024-03-01T00:00:00+00:00")
    good("parcels", "us/sc/florence/county", grid(-79.9, 34.0, -79.6, 34.2, 2), "2024-03-01T00:00:00+00:00")
    harris = grid(-95.6, 29.6, -95.1, 30.0, 20)  # 400 features, then 324, then a failure
    good("addresses", "us/tx/harris/county", harris, "2024-01-01T00:00:00+00:00")
    good("addresses", "us/tx/harris/county", harris[:324], "2024-02-01T00:00:00+00:00")
    failed("addresses", "us/tx/harris/county", "2024-03-01T00:00:00+00:00")
    good("addresses", "dk/countrywide/country", grid(9.0, 55.5, 12.0, 57.0, 6), "2024-03-01T00:00:00+00:00")
    failed("addresses", "cz/countrywide/country", "2024-03-01T00:00:00+00:00")
    good("addresses", "de/bb/statewide/state", grid(*BRANDENBURG, 5), "2024-03-01T00:00:00+00:00")
    good("addresses", "us/ok/acog-counties/county", grid(-97.6, 35.4, -97.2, 35.8, 3), "2024-03-01T00:00:00+00:00")
    good("addresses", "lv/city_of_riga/city", grid(*RIGA, 4), "2024-03-01T00:00:00+00:00")
    good("addresses", "us/ri/iso_state/state", grid(-71.6, 41.5, -71.4, 41.9, 3), "2024-03-01T00:00:00+00:00")
    return history


def store_resources(kind: str, tmp: Path, sources: Path, moto_url: str | None) -> tuple[dict[str, Any], OutputStore]:
    base = local_resources(tmp / "data", sources, preview=False)
    if kind == "local":
        return base, LocalStore(tmp / "data")
    bucket = f"coverage-{tmp.name[-20:].lower().replace('_', '-')}".strip("-")
    store = moto_bucket(str(moto_url), bucket)
    return {
        **base,
        **s3_resources(bucket, prefix="oa", endpoint_url=moto_url, region_name="us-east-1", s3_kwargs=MOTO_CREDS),
    }, store


@pytest.fixture(params=["local", "s3"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[dict[str, Any], OutputStore]:
    """Resources and store (local, then S3 on moto) holding the fixture catalog and `publish_history`."""
    moto_url = request.getfixturevalue("moto_url") if request.param == "s3" else None
    resources, store = store_resources(request.param, tmp_path, copy_sources(tmp_path), moto_url)
    with dg.instance_for_test() as instance:
        assert dg.materialize([source_catalog], instance=instance, resources=resources).success
    publish_history(store, tmp_path / "runs")
    return resources, store
