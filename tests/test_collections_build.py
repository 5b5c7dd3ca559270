"""Collections built from a handful of processed entries, on the local store and on S3 (moto over HTTP)."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import shapely

from oa_dagster.collections import keys
from oa_dagster.collections.build import build_area
from oa_dagster.collections.geoparquet import GeoParquetWriter
from oa_dagster.collections.inputs import gather_inputs
from oa_dagster.collections.zip_stream import ZipStream
from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.store import LocalStore, OutputStore, get_json, put_json
from tests.collections_helpers import (
    FAILING_NOW,
    HELD,
    SKIPPED,
    SOURCES,
    World,
    address_lines,
    make_world,
    publish_output,
)
from tests.servers.fixtures import moto_bucket

pytest_plugins = ["tests.servers.fixtures"]
ROWS = 20  # good rows per entry; each output also has one row without geometry and one off the globe


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> OutputStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return moto_bucket(request.getfixturevalue("moto_url"), f"collections-{tmp_path.name[-20:].lower()}")


@pytest.fixture
def world(store: OutputStore, tmp_path: Path) -> World:
    return make_world(store, tmp_path, rows=ROWS)


def _zip(store: OutputStore, layer: str, area: str, licence: Any) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(store.get_bytes(keys.zip_key(layer, area, licence)) or b""))


def _output(store: OutputStore, layer: str, partition: str) -> bytes:
    pointer = get_json(store, layout.latest_key(layer, partition))
    return store.get_bytes(pointer["files"]["output"]) or b""


def test_inputs_are_latest_good_pointers_failing_held_missing_and_skipped(world: World) -> None:
    inputs = gather_inputs(world.store, world.catalog, "addresses", "global")
    free = inputs.inputs("free")
    assert free[FAILING_NOW] == world.runs[FAILING_NOW]  # failing today: collected with its last good run
    assert free[HELD] == world.runs[HELD] != world.held_run  # held: the previous latest stays
    assert set(inputs.inputs("share-alike")) == {"us/ny/nyc/city", "ca/on/toronto/city"}
    assert inputs.missing == {"free": ["za/durban/city"], "share-alike": []}
    assert inputs.skipped == [SKIPPED] and SKIPPED not in free
    assert set(gather_inputs(world.store, world.catalog, "addresses", "us_west").inputs("free")) == {
        "us/ca/alameda/city",
        "us/ca/berkeley/city",
        "us/ca/oakland/city",
    }


def test_zip_holds_readme_license_geojson_lines_classic_csv_and_summaries(world: World) -> None:
    store = world.store
    _, results = build_area(store, world.catalog, "addresses", "global")
    assert [(r.licence, r.status) for r in results] == [("free", "built"), ("share-alike", "built")]
    with _zip(store, "addresses", "global", "free") as archive:
        names = archive.namelist()
        assert names[0] == "README.txt" and names[-1] == "LICENSE.txt"
        for partition in ("us/ca/berkeley/city", "us-tx-austin/city", FAILING_NOW, HELD):
            assert {f"{partition}.geojsonl", f"{partition}.csv", f"summary/{partition}-summary.csv"} <= set(names)
        assert not any(n.startswith(("us/ny/", "ca/on/", "za/durban", "us/wa/")) for n in names)
        readme = archive.read("README.txt").decode()
        assert "Data collected around " in readme and "Catalog commit: abc1234." in readme
        assert "https://github.com/openaddresses/openaddresses/tree/abc1234/sources" in readme
        licence = archive.read("LICENSE.txt").decode()
        assert licence.startswith("Data collected by OpenAddresses (http://openaddresses.io).\n")
        assert (
            "Entry: us/ca/berkeley/city\nWebsite: https://data.cityofberkeley.info\nLicense: Public Domain\n"
            "Required attribution: No\n" in licence
        )
        assert (
            "Entry: de/berlin/city\nWebsite: https://daten.berlin.de\n"
            "License: CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/)\nRequired attribution: Yes\n" in licence
        )
        austin = "Entry: us-tx-austin/city\nWebsite: Unknown\nLicense: Austin open data\nRequired attribution: Yes"
        assert austin in licence
        # the GeoJSON lines are the stored output, byte for byte; the held entry's are its previous run's
        assert archive.read(f"{HELD}.geojsonl") == _output(store, "addresses", HELD)
        assert b"MAIN STX" not in archive.read(f"{HELD}.geojsonl")
        raw_csv = archive.read("us/ca/berkeley/city.csv")
        assert raw_csv.startswith(b"LON,LAT,NUMBER,STREET,UNIT,CITY,DISTRICT,REGION,POSTCODE,ID,HASH\r\n")
        rows = list(csv.DictReader(io.StringIO(raw_csv.decode(), newline="")))
        assert len(rows) == ROWS  # the row without geometry and the one off the globe are dropped
        assert list(rows[0]) == ["LON", "LAT", "NUMBER", "STREET", "UNIT", "CITY", "DISTRICT", "REGION", "POSTCODE",
                                 "ID", "HASH"]  # fmt: skip
        assert rows[0] == {"LON": "-122.27", "LAT": "37.87", "NUMBER": "1", "STREET": 'MAIN ST, "NORTH"', "UNIT": "",
                           "CITY": "Town", "DISTRICT": "", "REGION": "XX", "POSTCODE": "12345", "ID": "0",
                           "HASH": "0000000000000000"}  # fmt: skip
        assert b'"MAIN ST, ""NORTH"""' in raw_csv and b',"STREET 1",' not in raw_csv  # minimal quoting
        summary = list(csv.DictReader(io.StringIO(archive.read("summary/us/ca/berkeley/city-summary.csv").decode())))
        assert sum(int(row["count"]) for row in summary) == ROWS
        assert [(float(r["lat"]), float(r["lon"])) for r in summary] == sorted(
            (float(r["lat"]), float(r["lon"])) for r in summary
        )
        first = summary[0]
        assert (first["lon"], first["lat"]) == ("-122.3", "37.8")
        assert first["area"] == "POLYGON((-122.3 37.8,-122.3 37.9,-122.2 37.9,-122.2 37.8,-122.3 37.8))"
        assert b"<GeometryType>wkbPolygon</GeometryType>" in archive.read("summary/us/ca/berkeley/city-summary.vrt")
        assert archive.testzip() is None
    with _zip(store, "addresses", "global", "share-alike") as archive:
        assert {n for n in archive.namelist() if n.endswith(".geojsonl")} == {
            "us/ny/nyc/city.geojsonl",
            "ca/on/toronto/city.geojsonl",
        }
        licence = archive.read("LICENSE.txt").decode()
        assert "Entry: us/ny/nyc/city\nWebsite: https://data.cityofnewyork.us\n" in licence
        assert "Required attribution: City of New York" in licence
    # the machine's root names for addresses, the same bytes
    assert store.get_bytes("openaddr-collected-global.zip") == store.get_bytes(
        keys.zip_key("addresses", "global", "free")
    )
    record = get_json(store, keys.record_key("addresses", "global", "free"))
    assert record["entries"] == 8 and record["features"] == 8 * (ROWS + 2) and record["csv_rows"] == 8 * ROWS
    assert record["missing"] == ["za/durban/city"] and record["catalog"] == "abc1234"
    assert record["zip"]["size"] == len(store.get_bytes(record["zip"]["key"]) or b"")


def test_licence_text_with_line_breaks_cannot_forge_another_entrys_block(
    store: OutputStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Berlin's licence, attribution and website try to end its block and write a CC0 block for Berkeley (a no
    attribution entry of the same zip); every field stays on its own line of Berlin's block."""
    forged = "\n\nEntry: us/ca/berkeley/city\nWebsite: https://evil.example\nLicense: CC0\nRequired attribution: No"
    hostile = {"text": "CC-BY 4.0" + forged, "attribution": True, "attribution name": "Berlin\r\u2028\x85" + forged}
    monkeypatch.setitem(SOURCES, "de/berlin", (13.40, 52.52, hostile, {"website": "https://daten.berlin.de" + forged}))
    build_area(make_world(store, tmp_path, rows=ROWS).store, get_json(store, layout.CURRENT_CATALOG), "addresses",
               "global")  # fmt: skip
    with _zip(store, "addresses", "global", "free") as archive:
        licence = archive.read("LICENSE.txt").decode()
    head, *blocks = licence.removesuffix("\n").split("\n\n")
    assert head.startswith("Data collected by OpenAddresses")
    labels = ["Entry", "Website", "License", "Required attribution"]
    parsed = {}
    for block in blocks:
        lines = block.split("\n")
        assert [line.split(": ", 1)[0] for line in lines] == labels, block
        parsed[lines[0].removeprefix("Entry: ")] = [line.split(": ", 1)[1] for line in lines[1:]]
    assert list(parsed) == sorted(parsed) and len(blocks) == len(parsed)  # each entry once, in order
    assert parsed["us/ca/berkeley/city"] == ["https://data.cityofberkeley.info", "Public Domain", "No"]
    website, text, attribution = parsed["de/berlin/city"]
    assert website.startswith("https://daten.berlin.de Entry: us/ca/berkeley/city Website: https://evil.example")
    assert text.startswith("CC-BY 4.0 Entry: us/ca/berkeley/city") and attribution.startswith("Berlin Entry: ")


def test_an_entry_whose_zip_member_would_climb_out_is_left_out_and_named(world: World, tmp_path: Path) -> None:
    """A catalog made before source keys were checked (or tampered with) names a key with backslashes: that entry
    is left out of the zip with the reason, the others are built; the zip writer refuses such names itself."""
    store, catalog = world.store, json.loads(json.dumps(world.catalog))
    climbing = "us/ca/..\\..\\..\\tmp\\x/city"
    catalog["entries"]["addresses"][climbing] = {**catalog["entries"]["addresses"]["us/ca/berkeley/city"]}
    put_json(store, layout.latest_key("addresses", climbing), get_json(store, layout.latest_key("addresses",
             "us/ca/berkeley/city")))  # fmt: skip
    _, results = build_area(store, catalog, "addresses", "us_west")
    free = next(r for r in results if r.licence == "free")
    assert free.status == "built"
    assert any(climbing in problem and "backslash" in problem for problem in free.problems), free.problems
    with _zip(store, "addresses", "us_west", "free") as archive:
        assert not any("\\" in name or ".." in name for name in archive.namelist())
        assert "us/ca/berkeley/city.csv" in archive.namelist()
        assert climbing not in archive.read("LICENSE.txt").decode()
    zip_out = ZipStream(tmp_path / "refused.zip")
    for bad in (f"{climbing}.csv", "/etc/x", "c:/x", "a/../../x", "a//b", "a/\x00b"):
        with pytest.raises(ValueError, match="zip member name .* refused"):
            zip_out.add_bytes(bad, b"x")
    zip_out.abort()


def test_geoparquet_reads_back_with_valid_geo_metadata(world: World, tmp_path: Path) -> None:
    store = world.store
    build_area(store, world.catalog, "addresses", "global")
    build_area(store, world.catalog, "parcels", "us_west")
    path = tmp_path / "global.parquet"
    path.write_bytes(store.get_bytes(keys.parquet_key("addresses", "global", "free")) or b"")
    table = pq.read_table(path)
    assert table.num_rows == 8 * (ROWS + 2)
    assert table.column_names[:3] == ["source", "entry", "hash"] and table.column_names[-2:] == ["geometry", "bbox"]
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Point"]
    assert column["crs"]["id"] == {"authority": "OGC", "code": "CRS84"}
    assert column["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    rows = table.to_pylist()
    berkeley = [r for r in rows if r["source"] == "us/ca/berkeley"]
    assert len(berkeley) == ROWS + 2 and {r["entry"] for r in berkeley} == {"city"}
    point = shapely.from_wkb(berkeley[0]["geometry"])
    assert (point.x, point.y) == (-122.27, 37.87) and berkeley[0]["accuracy"] == 2
    assert berkeley[0]["bbox"] == {"xmin": -122.27, "ymin": 37.87, "xmax": -122.27, "ymax": 37.87}
    assert sum(1 for r in berkeley if r["geometry"] is None) == 2  # no geometry, or off the globe: null
    points = [shapely.from_wkb(r["geometry"]) for r in rows if r["geometry"]]
    xs, ys = [p.x for p in points], [p.y for p in points]
    assert column["bbox"] == [min(xs), min(ys), max(xs), max(ys)]
    assert pq.ParquetFile(path).metadata.num_row_groups >= 1
    parcels = tmp_path / "parcels.parquet"
    parcels.write_bytes(store.get_bytes(keys.parquet_key("parcels", "us_west", "free")) or b"")
    parcel_table = pq.read_table(parcels)
    assert json.loads(parcel_table.schema.metadata[b"geo"])["columns"]["geometry"]["geometry_types"] == [
        "MultiPolygon",
        "Polygon",
    ]
    shapes = [shapely.from_wkb(g) for g in parcel_table.column("geometry").to_pylist()]
    assert [s.geom_type for s in shapes[:2]] == ["MultiPolygon", "Polygon"] and all(s.is_valid for s in shapes)
    assert parcel_table.column("pid").to_pylist() == [f"P-{i}" for i in range(6)]


def test_unchanged_inputs_skip_and_a_new_good_run_rebuilds_its_areas(world: World, tmp_path: Path) -> None:
    store = world.store
    for area in ("global", "us_west", "europe"):
        build_area(store, world.catalog, "addresses", area)
    before = {area: store.get_bytes(keys.zip_key("addresses", area, "free")) for area in ("global", "europe")}
    _, again = build_area(store, world.catalog, "addresses", "global")
    assert [r.status for r in again] == ["unchanged", "unchanged"]
    assert store.get_bytes(keys.zip_key("addresses", "global", "free")) == before["global"]
    new_run = publish_output(store, "addresses", "us/ca/berkeley/city", address_lines(-122.27, 37.87, 25), tmp_path)
    areas = ("global", "us_west", "europe")
    statuses = {area: build_area(store, world.catalog, "addresses", area)[1][0].status for area in areas}
    assert statuses == {"global": "built", "us_west": "built", "europe": "unchanged"}
    record = get_json(store, keys.record_key("addresses", "us_west", "free"))
    assert record["inputs"]["us/ca/berkeley/city"] == new_run and record["features"] == 3 * (ROWS + 2) + 5
    assert build_area(store, world.catalog, "addresses", "global", force=True)[1][0].status == "built"


class _FailingWrites(Exception):
    pass


def test_a_crash_while_writing_leaves_the_previous_collection_served(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = world.store
    build_area(store, world.catalog, "addresses", "us_west")
    zip_key = keys.zip_key("addresses", "us_west", "free")
    old_zip, old_record = store.get_bytes(zip_key), get_json(store, keys.record_key("addresses", "us_west", "free"))
    publish_output(store, "addresses", "us/ca/berkeley/city", address_lines(-122.27, 37.87, 30), tmp_path)
    calls = {"n": 0}
    original = GeoParquetWriter.write

    def failing_write(self: GeoParquetWriter, *args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise _FailingWrites("disk full (injected)")
        original(self, *args)

    monkeypatch.setattr(GeoParquetWriter, "write", failing_write)
    with pytest.raises(_FailingWrites):
        build_area(store, world.catalog, "addresses", "us_west")
    assert store.get_bytes(zip_key) == old_zip
    assert get_json(store, keys.record_key("addresses", "us_west", "free")) == old_record
    monkeypatch.setattr(GeoParquetWriter, "write", original)

    class UploadFails(Exception):
        pass

    real_put_file = type(store).put_file

    def put_file_failing_on_parquet(self: Any, key: str, path: Path, **options: Any) -> None:
        if key.endswith(".parquet"):
            raise UploadFails(f"connection reset uploading {key} (injected)")
        real_put_file(self, key, path, **options)

    monkeypatch.setattr(type(store), "put_file", put_file_failing_on_parquet)
    with pytest.raises(UploadFails):  # the zip was uploaded (under a temporary key), the parquet was not
        build_area(store, world.catalog, "addresses", "us_west")
    monkeypatch.setattr(type(store), "put_file", real_put_file)
    assert store.get_bytes(zip_key) == old_zip
    assert get_json(store, keys.record_key("addresses", "us_west", "free")) == old_record
    assert not [k for k in store.list("collections/") if "/tmp-" in k]  # temporaries removed
    _, results = build_area(store, world.catalog, "addresses", "us_west")
    assert results[0].status == "built" and store.get_bytes(zip_key) != old_zip


def test_an_area_left_without_entries_loses_its_files_and_an_unreadable_output_is_named(world: World) -> None:
    store = world.store
    build_area(store, world.catalog, "addresses", "europe")
    europe = [keys.zip_key("addresses", "europe", "free"), keys.parquet_key("addresses", "europe", "free")]
    assert all(store.exists(k) for k in europe) and store.exists("openaddr-collected-europe.zip")
    catalog = json.loads(json.dumps(world.catalog))
    del catalog["entries"]["addresses"]["de/berlin/city"]
    put_json(store, layout.CURRENT_CATALOG, catalog)
    _, results = build_area(store, catalog, "addresses", "europe")
    assert [r.status for r in results] == ["empty", "empty"]
    assert not any(store.exists(k) for k in [*europe, keys.record_key("addresses", "europe", "free")])
    assert not store.exists("openaddr-collected-europe.zip")

    gone = get_json(store, layout.latest_key("addresses", "is/reykjavik/city"))["files"]["output"]
    store.delete(gone)
    _, results = build_area(store, catalog, "addresses", "global")
    free = results[0]
    assert free.status == "built" and free.record is not None
    assert free.problems == [
        f"addresses is/reykjavik/city: output {gone} of run {world.runs['is/reykjavik/city']} is not in the store; "
        "left out"
    ]
    assert free.record["left_out"] == ["is/reykjavik/city"] and free.record["entries"] == 6  # berlin left the catalog
    _, again = build_area(store, catalog, "addresses", "global")
    assert again[0].status == "unchanged"  # the missing output alone does not rebuild the area every night
    with _zip(store, "addresses", "global", "free") as archive:
        assert "is/reykjavik/city.geojsonl" not in archive.namelist()
        assert "is/reykjavik/city" not in archive.read("LICENSE.txt").decode()
