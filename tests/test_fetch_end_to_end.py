"""`oa-dagster process` end to end against the local fake ArcGIS and download servers."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

from tests.geofiles import write_source
from tests.servers.arcgis import FakeArcGISServer, FakeLayer, point_features
from tests.servers.downloads import DownloadServer
from tests.servers.helpers import run_process_command


def _process(tmp_path: Path, layer: str, entry: dict[str, Any]) -> tuple[subprocess.CompletedProcess, Path]:
    path = write_source(
        tmp_path / "xx" / "test.json",
        {layer: [{"name": "test", "license": {"text": "public domain"}, **entry}]},
        coverage={"country": "us", "state": "ca"},
    )
    out = tmp_path / "out"
    result = run_process_command(path, layer, out)
    return result, out / layer / "test" / "test"  # <layer>/<source key>/<name>: the file outside a sources tree


def _features(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "out.geojson").read_text().splitlines()]


def test_arcgis_addresses_end_to_end(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    url = arcgis_server.add_layer("addr", FakeLayer(point_features(1200), max_record_count=500))
    result, run_dir = _process(
        tmp_path,
        "addresses",
        {"protocol": "ESRI", "data": url, "conform": {"format": "geojson", "number": "NUMBER", "street": "STREET"}},
    )
    assert result.returncode == 0, result.stderr
    state = json.loads((run_dir / "state.json").read_text())
    assert state["feature_count"] == 1200 and state["files"]["cache"] == "cache.geojsonl"
    assert (run_dir / "cache.geojsonl").exists()
    first = _features(run_dir)[0]
    assert first["properties"]["number"] == "101" and first["geometry"]["type"] == "Point"


def test_arcgis_parcels_polygons_end_to_end(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    features = []
    for i in range(1, 301):
        x, y = -122 + (i % 20) * 0.001, 37 + (i // 20) * 0.001
        ring = [[x, y], [x, y + 0.0009], [x + 0.0009, y + 0.0009], [x + 0.0009, y], [x, y]]
        features.append({"attributes": {"OBJECTID": i, "APN": f"P-{i}"}, "geometry": {"rings": [ring]}})
    url = arcgis_server.add_layer(
        "parcels",
        FakeLayer(features, geometry_type="esriGeometryPolygon", max_record_count=100, supports_geojson=False),
    )
    result, run_dir = _process(
        tmp_path, "parcels", {"protocol": "ESRI", "data": url, "conform": {"format": "geojson", "pid": "APN"}}
    )
    assert result.returncode == 0, result.stderr
    out = _features(run_dir)
    assert len(out) == 300 and out[0]["properties"]["pid"] == "P-1"
    assert out[0]["geometry"]["type"] == "Polygon"


def test_arcgis_centerlines_end_to_end(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    features = [
        {
            "attributes": {"OBJECTID": i, "FULLNAME": f"Road {i}"},
            "geometry": {"paths": [[[-122 + i * 0.001, 37.0], [-122 + i * 0.001, 37.01]]]},
        }
        for i in range(1, 151)
    ]
    url = arcgis_server.add_layer(
        "roads",
        FakeLayer(features, geometry_type="esriGeometryPolyline", max_record_count=50, supports_pagination=False),
    )
    result, run_dir = _process(
        tmp_path, "centerlines", {"protocol": "ESRI", "data": url, "conform": {"format": "geojson", "name": "FULLNAME"}}
    )
    assert result.returncode == 0, result.stderr
    out = _features(run_dir)
    assert len(out) == 150 and out[0]["geometry"]["type"] == "LineString"
    assert out[0]["properties"]["name"] == "Road 1"


def test_arcgis_token_required_end_to_end(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    url = arcgis_server.add_layer("secret", FakeLayer(point_features(5), token_required=True))
    result, run_dir = _process(
        tmp_path,
        "addresses",
        {"protocol": "ESRI", "data": url, "conform": {"format": "geojson", "number": "NUMBER", "street": "STREET"}},
    )
    assert result.returncode == 1
    state = json.loads((run_dir / "state.json").read_text())
    assert state["source_problem"] == "Missing required ESRI token"
    assert "Token Required" in state["problem_detail"]


def test_arcgis_truncated_dump_end_to_end(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    url = arcgis_server.add_layer("short", FakeLayer(point_features(200), max_record_count=100, count_extra=10))
    result, run_dir = _process(
        tmp_path,
        "addresses",
        {"protocol": "ESRI", "data": url, "conform": {"format": "geojson", "number": "NUMBER", "street": "STREET"}},
    )
    assert result.returncode == 1
    state = json.loads((run_dir / "state.json").read_text())
    assert state["source_problem"] == "Could not download source data"
    assert state["problem_detail"].startswith("ArcGIS dump truncated: got 200 of 210")
    assert not (run_dir / "out.geojson").exists() and not (run_dir / "cache.geojsonl").exists()


def test_zip_url_without_compression_end_to_end(download_server: DownloadServer, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("export/points.csv", "NUMBER,STREET,LON,LAT\n1,Main St,-122.1,37.5\n2,Oak Ave,-122.2,37.6\n")
    download_server.route("/addresses.zip", body=buffer.getvalue())
    result, run_dir = _process(
        tmp_path,
        "addresses",
        {
            "protocol": "http",
            "data": download_server.url("/addresses.zip"),
            "conform": {
                "format": "csv",
                "file": "points.csv",
                "number": "NUMBER",
                "street": "STREET",
                "lon": "LON",
                "lat": "LAT",
            },
        },
    )
    assert result.returncode == 0, result.stderr
    assert len(_features(run_dir)) == 2
    assert json.loads((run_dir / "state.json").read_text())["files"]["cache"] == "cache.zip"


def test_zip_slip_end_to_end_is_refused(download_server: DownloadServer, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../escaped.csv", "NUMBER,STREET\n")
    download_server.route("/evil.zip", body=buffer.getvalue())
    result, run_dir = _process(
        tmp_path,
        "addresses",
        {
            "protocol": "http",
            "data": download_server.url("/evil.zip"),
            "compression": "zip",
            "conform": {"format": "csv", "number": "NUMBER", "street": "STREET", "lon": "X", "lat": "Y"},
        },
    )
    assert result.returncode == 1
    state = json.loads((run_dir / "state.json").read_text())
    assert state["source_problem"] == "Could not download source data"
    assert "unsafe archive member path" in state["problem_detail"]
    assert not list(tmp_path.rglob("escaped.csv"))


def test_arcgis_layer_whose_source_says_shapefile_is_read_as_the_geojson_dump(
    arcgis_server: FakeArcGISServer, tmp_path: Path
) -> None:
    # ca/bc/summerland's buildings entry pairs protocol ESRI with format shapefile
    url = arcgis_server.add_layer("odd", FakeLayer(point_features(30), max_record_count=50))
    result, run_dir = _process(
        tmp_path,
        "addresses",
        {"protocol": "ESRI", "data": url, "conform": {"format": "shapefile", "number": "NUMBER", "street": "STREET"}},
    )
    assert result.returncode == 0, result.stderr
    assert len(_features(run_dir)) == 30
