"""The ArcGIS REST dumper against the fake server: paging strategies, formats, faults, truncation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from oa_dagster.errors import DownloadError, EsriTokenRequired
from oa_dagster.fetch import fetch_entry
from tests.servers.arcgis import FakeArcGISServer, FakeLayer, point_features
from tests.servers.helpers import fast_options, make_entry

CONFORM = {"format": "geojson", "number": "number", "street": "STREET"}  # `number` differs in case


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def _dump(
    server: FakeArcGISServer, layer: FakeLayer, tmp_path: Path, conform: dict[str, Any] | None = None, **options: Any
):
    url = server.add_layer("test", layer)
    entry = make_entry(url, protocol="ESRI", conform=conform or dict(CONFORM))
    return fetch_entry(entry, tmp_path, fast_options(**options))


@pytest.mark.parametrize("pagination", [True, False], ids=["offset-pages", "oid-ranges"])
@pytest.mark.parametrize("geojson", [True, False], ids=["f=geojson", "f=json"])
def test_layer_is_dumped_completely_in_order(
    arcgis_server: FakeArcGISServer, tmp_path: Path, pagination: bool, geojson: bool
) -> None:
    layer = FakeLayer(
        point_features(2345), max_record_count=500, supports_pagination=pagination, supports_geojson=geojson
    )
    download = _dump(arcgis_server, layer, tmp_path)
    assert download.path.name == "cache.geojsonl" and download.feature_count == 2345
    features = _lines(download.path)
    assert [f["properties"]["NUMBER"] for f in features] == [str(100 + i) for i in range(1, 2346)]
    assert features[0]["geometry"] == {"type": "Point", "coordinates": [-121.9999, 37.0]}
    # pages of maxRecordCount (a page retried after a slow answer on a loaded machine is the same query again)
    assert len({tuple(sorted(q.items())) for q in layer.queries}) == 5
    assert all(q["outSR"] == "4326" and q["geometryPrecision"] == "7" for q in layer.queries)
    assert all(q["f"] == ("geojson" if geojson else "json") for q in layer.queries)


def test_only_the_fields_the_conform_needs_are_requested(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    layer = FakeLayer(point_features(10))
    download = _dump(arcgis_server, layer, tmp_path)
    assert layer.queries[0]["outFields"] == "NUMBER,STREET"  # the server's spelling
    assert set(_lines(download.path)[0]["properties"]) <= {"NUMBER", "STREET", "OBJECTID"}


def test_all_fields_are_requested_when_the_conform_names_none(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    layer = FakeLayer(point_features(10))
    download = _dump(arcgis_server, layer, tmp_path, conform={"format": "geojson"})
    assert layer.queries[0]["outFields"] == "*"
    assert "UNUSED" in _lines(download.path)[0]["properties"]


def test_page_size_is_capped(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    layer = FakeLayer(point_features(250), max_record_count=100000)
    _dump(arcgis_server, layer, tmp_path, esri_page_size_cap=100)
    # pages are requested concurrently, so they may arrive in any order
    assert sorted(q["resultRecordCount"] for q in layer.queries) == ["100", "100", "50"]


def test_pages_are_fetched_concurrently_and_still_written_in_order(
    arcgis_server: FakeArcGISServer, tmp_path: Path
) -> None:
    import time

    layer = FakeLayer(point_features(1600), max_record_count=100, latency=0.1)
    started = time.monotonic()
    download = _dump(arcgis_server, layer, tmp_path, esri_workers=8)
    elapsed = time.monotonic() - started
    oids = [f["id"] for f in _lines(download.path)]
    assert oids == list(range(1, 1601))
    # one at a time: metadata, count and 16 pages = 1.8 s; with 8 workers about 0.5 s
    assert elapsed < 1.1


def test_token_required_is_reported(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    with pytest.raises(EsriTokenRequired) as caught:
        _dump(arcgis_server, FakeLayer(point_features(5), token_required=True), tmp_path)
    assert caught.value.problem == "Missing required ESRI token"
    assert "Token Required" in caught.value.detail


def test_server_errors_on_pages_are_retried(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    layer = FakeLayer(point_features(300), max_record_count=100, fail_queries=1, error_queries=1)
    download = _dump(arcgis_server, layer, tmp_path)
    assert download.feature_count == 300


def test_dropped_connection_mid_page_is_retried(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    layer = FakeLayer(point_features(300), max_record_count=100, drop_queries=2)
    download = _dump(arcgis_server, layer, tmp_path)
    assert download.feature_count == 300
    assert len({f["id"] for f in _lines(download.path)}) == 300


def test_page_failing_every_retry_fails_the_dump_without_a_cache(
    arcgis_server: FakeArcGISServer, tmp_path: Path
) -> None:
    layer = FakeLayer(point_features(300), max_record_count=100, fail_queries=100)
    with pytest.raises(DownloadError, match="failed after 3 attempts"):
        _dump(arcgis_server, layer, tmp_path)
    assert not list(tmp_path.glob("cache.geojsonl*"))


def test_short_page_is_completed_by_asking_for_the_rest(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    layer = FakeLayer(point_features(300), max_record_count=100, short_queries=1)
    download = _dump(arcgis_server, layer, tmp_path)
    assert [f["id"] for f in _lines(download.path)] == list(range(1, 301))


def test_server_returning_fewer_than_its_limit_is_still_complete(
    arcgis_server: FakeArcGISServer, tmp_path: Path
) -> None:
    layer = FakeLayer(point_features(300), max_record_count=200, real_limit=70)
    download = _dump(arcgis_server, layer, tmp_path)
    assert [f["id"] for f in _lines(download.path)] == list(range(1, 301))


def test_server_serving_fewer_than_it_counted_is_a_truncated_dump(
    arcgis_server: FakeArcGISServer, tmp_path: Path
) -> None:
    layer = FakeLayer(point_features(300), max_record_count=100, count_extra=25)
    with pytest.raises(DownloadError, match="ArcGIS dump truncated: got 300 of 325") as caught:
        _dump(arcgis_server, layer, tmp_path)
    assert caught.value.problem == "Could not download source data"
    assert not list(tmp_path.glob("cache.geojsonl*"))


def test_short_oid_page_that_stays_short_is_a_truncated_dump(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    layer = FakeLayer(point_features(300), max_record_count=100, supports_pagination=False, short_queries=2)
    with pytest.raises(DownloadError, match="truncated: got 250 of 300"):
        _dump(arcgis_server, layer, tmp_path)


def test_extent_is_split_when_neither_pagination_nor_ids_work(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    features = point_features(900)
    for i, feature in enumerate(features):
        feature["geometry"] = {"x": -122 + (i % 30) * 0.01, "y": 37 + (i // 30) * 0.01}
    layer = FakeLayer(features, max_record_count=200, supports_pagination=False, supports_ids=False)
    download = _dump(arcgis_server, layer, tmp_path)
    assert sorted(f["id"] for f in _lines(download.path)) == list(range(1, 901))
    assert any("geometry" in q for q in layer.queries)


def test_features_without_geometry_use_lon_lat_attributes(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    layer = FakeLayer(point_features(20, null_geometry_every=4), supports_geojson=False)
    conform = {**CONFORM, "lon": "lon", "lat": "LAT"}
    features = _lines(_dump(arcgis_server, layer, tmp_path, conform=conform).path)
    assert len(features) == 20
    assert features[3]["geometry"] == {"type": "Point", "coordinates": [-121.9996, 37.0]}


def test_features_without_geometry_and_without_lon_lat_are_written_without_geometry(
    arcgis_server: FakeArcGISServer, tmp_path: Path
) -> None:
    layer = FakeLayer(point_features(20, null_geometry_every=4))
    features = _lines(_dump(arcgis_server, layer, tmp_path).path)
    assert sum(f["geometry"] is None for f in features) == 5


def test_polygons_in_esri_json_become_valid_geojson(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    from shapely.geometry import shape

    ring = [[-122.0, 37.0], [-122.0, 37.1], [-121.9, 37.1], [-121.9, 37.0], [-122.0, 37.0]]
    hole = [[-121.98, 37.02], [-121.95, 37.02], [-121.95, 37.05], [-121.98, 37.05], [-121.98, 37.02]]
    layer = FakeLayer(
        [{"attributes": {"OBJECTID": 1, "PID": "A-1"}, "geometry": {"rings": [ring, hole]}}],
        geometry_type="esriGeometryPolygon",
        supports_geojson=False,
    )
    features = _lines(_dump(arcgis_server, layer, tmp_path, conform={"format": "geojson", "pid": "PID"}).path)
    polygon = shape(features[0]["geometry"])
    assert polygon.is_valid and len(polygon.interiors) == 1


def test_empty_layer_gives_an_empty_dump(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    download = _dump(arcgis_server, FakeLayer([]), tmp_path)
    assert download.feature_count == 0 and download.path.read_text() == ""


def test_progress_reports_features(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    calls: list[tuple[str, int, int | None]] = []
    _dump(
        arcgis_server,
        FakeLayer(point_features(250), max_record_count=100),
        tmp_path,
        progress=lambda *a: calls.append(a),
    )
    assert calls[-1] == ("arcgis", 250, 250)


def test_missing_layer_is_a_download_error(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    url = arcgis_server.add_layer("x", FakeLayer([])).replace("/x/", "/missing/")
    with pytest.raises(DownloadError, match="404"):
        fetch_entry(make_entry(url, protocol="ESRI", conform=dict(CONFORM)), tmp_path, fast_options())


def test_layer_url_with_query_suffix_is_normalised(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    url = arcgis_server.add_layer("q", FakeLayer(point_features(30)))
    entry = make_entry(url + "/query?where=1%3D1&f=json", protocol="esri", conform=dict(CONFORM))
    assert fetch_entry(entry, tmp_path, fast_options()).feature_count == 30
