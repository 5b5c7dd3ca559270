"""The coverage asset on a crafted store history, on the local store and on S3 (moto over HTTP).

Real source files (US Census state and county, ISO 3166 countries and subdivisions, a coverage polygon, and one
with no placeable coverage) are catalogued by the real `source_catalog` asset; runs are published as runs are;
`coverage` is materialized with real resources and its stored files are checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from oa_dagster.assets.catalog import source_catalog
from oa_dagster.assets.coverage import COVERAGE_ASSETS, coverage
from oa_dagster.coverage.boundaries import load_boundaries
from oa_dagster.coverage.report import LOST_SOURCES_KEY, RENDER_GEOJSON_KEY, STATS_KEY
from oa_dagster.platform.store import LocalStore, OutputStore, get_json
from tests.coverage_helpers import BRANDENBURG, copy_sources, publish_history, store_resources

pytest_plugins = ["tests.servers.fixtures", "tests.coverage_helpers"]


def _by(rows: list[dict[str, Any]], code: str) -> dict[str, Any]:
    return next(row for row in rows if row["code"] == code)


def test_coverage_counts_places_and_shares_on_each_store(world: tuple[dict[str, Any], OutputStore]) -> None:
    resources, store = world
    with dg.instance_for_test() as instance:
        result = dg.materialize(COVERAGE_ASSETS, instance=instance, resources=resources, selection=[coverage])
    assert result.success
    stats = get_json(store, STATS_KEY)
    boundaries = load_boundaries()

    assert stats["placements"] == {"country": 3, "county": 2, "geometry": 1, "hull": 2, "state": 2}
    assert stats["unplaced"] == []
    assert set(stats["approximate"]) == {"au/vic/statewide"}  # AU-VIC: no boundary, no output: the whole country

    countries, states, counties = stats["countries"], stats["us_states"], stats["us_counties"]
    assert {row["code"] for row in countries} == {"AU", "CZ", "DE", "DK", "LV", "US"}
    dk, cz, de = _by(countries, "DK"), _by(countries, "CZ"), _by(countries, "DE")
    assert (dk["status"], dk["covered_share"], dk["good_share"], dk["features"]) == (
        "good",
        1.0,
        1.0,
        {"addresses": 36},
    )
    assert dk["covered_pop_est"] == dk["pop_est"] > 5_000_000
    assert (cz["status"], cz["covered_share"], cz["good_share"]) == ("bad", 1.0, 0.0)
    assert cz["entries"] == {"addresses": {"good": 0, "failing": 1}}
    # Brandenburg's hull: a 1°x1° box, 111.3 km x 67.8 km at 52.5°N, inside Germany
    assert 7_400 < de["covered_km2"] < 7_700
    assert de["covered_share"] == pytest.approx(de["covered_km2"] / de["area_km2"], abs=1e-4)
    assert de["covered_pop_est"] == pytest.approx(de["pop_est"] * de["covered_km2"] / de["area_km2"], rel=1e-4)

    us = _by(countries, "US")
    assert us["sources"] == 5 and us["sources_good"] == 4
    assert us["entries"] == {"addresses": {"good": 4, "failing": 1}, "parcels": {"good": 1, "failing": 1}}
    assert us["features"] == {"addresses": 16 + 9 + 324 + 9 + 9, "parcels": 4}  # Harris: its last good output
    covered = boundaries.states["33"].area_km2 + boundaries.states["44"].area_km2
    assert us["covered_km2"] > covered  # two whole states, two counties and the ACOG polygon

    nh, ri, sc, tx = (_by(states, code) for code in ("33", "44", "45", "48"))
    assert (nh["covered_share"], nh["status"], nh["usps"]) == (1.0, "good", "NH")
    assert (ri["covered_share"], ri["status"]) == (1.0, "good")  # ISO 3166 US-RI
    assert sc["covered_km2"] == pytest.approx(boundaries.counties["45041"].area_km2, rel=1e-3)
    assert 1_900 < sc["covered_km2"] < 2_250  # Florence County, SC: 2,070 km² of land
    assert (tx["status"], tx["good_share"]) == ("bad", 0.0) and tx["covered_share"] > 0

    florence, harris = _by(counties, "45041"), _by(counties, "48201")
    assert (florence["covered_share"], florence["status"], florence["sources"]) == (1.0, "good", 1)
    assert (harris["status"], harris["good_share"], harris["sources"]) == ("bad", 0.0, 1)
    acog = {row["code"]: row for row in counties if row["state"] == "40"}  # a polygon over four counties and more
    assert all(acog[code]["covered_share"] > 0.95 for code in ("40109", "40083", "40027", "40017"))
    assert sum(row["sources"] for row in acog.values()) == 1  # counted once, where the polygon lies
    assert {row["code"] for row in counties if row["state"] == "44"} == {"44001", "44003", "44005", "44007", "44009"}

    meta = result.asset_materializations_for_node("coverage")[0].metadata
    assert meta["sources"].value == 10 and meta["lost_entries"].value == 6
    table = {r.data["code"]: r.data for r in meta["countries_table"].value.records}
    assert table["CZ"]["entries_failing"] == 1 and table["DK"]["addresses_features"] == 36
    assert meta["lost_sources"].value.records[0].data["entry"] == "us/tx/harris/county"


def test_render_world_geojson_has_one_feature_per_matched_area(world: tuple[dict[str, Any], OutputStore]) -> None:
    resources, store = world
    with dg.instance_for_test() as instance:
        assert dg.materialize(COVERAGE_ASSETS, instance=instance, resources=resources, selection=[coverage]).success
    features = get_json(store, RENDER_GEOJSON_KEY)["features"]
    by_name = {f["properties"]["name"]: f["properties"] for f in features}
    assert len(features) == 10
    assert by_name["Denmark"] | {"features": None} == {
        "name": "Denmark",
        "status": "good",
        "source paths": "sources/dk/countrywide.json",
        "source count": 1,
        "source dates": "2024-03-01T00:00:00",
        "address count": 36,
        "entries good": 1,
        "entries failing": 0,
        "kind": "country",
        "features": None,
        "ISO 3166": "DK",
    }
    assert by_name["Harris"]["status"] == "bad" and by_name["Harris"]["US Census GEOID"] == "48201"
    assert by_name["Harris"]["address count"] == 0  # the machine's rule: bad areas count nothing
    assert (by_name["New Hampshire"]["entries good"], by_name["New Hampshire"]["entries failing"]) == (1, 1)
    assert by_name["Rhode Island"]["US Census GEOID"] == "44" and by_name["Czechia"]["status"] == "bad"
    assert by_name["de/bb/statewide"]["kind"] == "hull" and by_name["de/bb/statewide"]["ISO 3166-2"] == "DE-BB"
    assert by_name["lv/city_of_riga"]["kind"] == "hull" and by_name["us/ok/acog-counties"]["kind"] == "geometry"
    assert "whole country" in by_name["Australia"]["approximate"]
    hull = next(f for f in features if f["properties"]["name"] == "de/bb/statewide")["geometry"]
    west, south, east, north = BRANDENBURG
    assert hull["type"] == "Polygon"
    assert sorted(set(map(tuple, hull["coordinates"][0]))) == [
        (west, south),
        (west, north),
        (east, south),
        (east, north),
    ]
    riga = next(f for f in features if f["properties"]["name"] == "lv/city_of_riga")["geometry"]
    assert all(len(repr(x).split(".")[-1]) <= 4 for x, _ in riga["coordinates"][0])  # 4 decimals, as the machine


def test_lost_sources_give_the_best_count_and_last_good_time(world: tuple[dict[str, Any], OutputStore]) -> None:
    resources, store = world
    with dg.instance_for_test() as instance:
        assert dg.materialize(COVERAGE_ASSETS, instance=instance, resources=resources, selection=[coverage]).success
    lost = get_json(store, LOST_SOURCES_KEY)
    assert lost["headers"] == ["Source", "Layer", "Entry", "Max Features", "Last Good", "Problem"]
    rows = {(r["layer"], r["entry"]): r for r in lost["entries"]}
    harris = rows[("addresses", "us/tx/harris/county")]
    assert (harris["max_features"], harris["last_good"]) == (400, "2024-02-01T00:00:00+00:00")
    assert harris["problem"] == "Could not download source data" and harris["runs_read"] == 3
    cz = rows[("addresses", "cz/countrywide/country")]
    assert (cz["max_features"], cz["last_good"], cz["problem"]) == (0, None, "Could not download source data")
    assert rows[("parcels", "us/nh/statewide/state")]["problem"] == "never run"
    assert {k for k in rows if k[1].startswith("au/")} == {
        ("addresses", "au/vic/statewide/state"),
        ("parcels", "au/vic/statewide/state"),
        ("buildings", "au/vic/statewide/state"),
    }
    assert lost["rows"][0][:5] == ["us/tx/harris", "addresses", "us/tx/harris/county", 400, harris["last_good"]]
    assert len(rows) == 6 and not any(k[1].startswith("us/sc/") for k in rows)


def test_an_entry_failing_today_is_good_again_once_a_newer_run_has_output(tmp_path: Path) -> None:
    """Good-now follows the newest run, whatever the pointer says; a source good in one layer is good."""
    from oa_dagster.coverage.report import compute_coverage
    from tests.coverage_helpers import grid, publish_output

    resources, store = store_resources("local", tmp_path, copy_sources(tmp_path), None)
    with dg.instance_for_test() as instance:
        assert dg.materialize([source_catalog], instance=instance, resources=resources).success
    publish_history(store, tmp_path / "runs")
    before = {s.key: s.good for s in compute_coverage(store).sources}
    assert before["us/tx/harris"] is False and before["us/nh/statewide"] is True  # parcels never ran, addresses good
    publish_output(
        store,
        "addresses",
        "us/tx/harris/county",
        grid(-95.6, 29.6, -95.1, 30.0, 3),
        tmp_path / "r2",
        "2024-04-01T00:00:00+00:00",
    )
    report = compute_coverage(store)
    assert {s.key: s.good for s in report.sources}["us/tx/harris"] is True
    assert ("addresses", "us/tx/harris/county") not in {(r.layer, r.entry) for r in report.lost}


def test_a_broken_coverage_geometry_is_reported_and_the_source_still_placed(tmp_path: Path) -> None:
    from oa_dagster.coverage.report import compute_coverage
    from oa_dagster.platform import store_layout as layout
    from oa_dagster.platform.store import put_json

    store = LocalStore(tmp_path / "data")
    catalog = {
        "id": "c1",
        "sources": {
            "us/ok/broken": {
                "data": {
                    "coverage": {
                        "country": "us",
                        "state": "ok",
                        "county": "X",
                        "geometry": {"type": "Polygon", "coordinates": [[[0, 0]]]},
                    }
                }
            },
            "fr/somewhere": {"data": {"coverage": {"ISO 3166": {"alpha2": "FR"}}}},
        },
        "entries": {"addresses": {}},
    }
    put_json(store, layout.CURRENT_CATALOG, catalog)
    report = compute_coverage(store)
    placed = {s.key: s.placement for s in report.sources}
    assert placed["fr/somewhere"].kind == "country"
    assert placed["us/ok/broken"].kind == "state" and placed["us/ok/broken"].approximate  # no output: its state
    assert any(p.startswith("us/ok/broken: coverage.geometry not used:") for p in report.problems)
